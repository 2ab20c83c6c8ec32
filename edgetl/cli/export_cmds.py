"""CLI commands of the export stage (filled in by the export work)."""

COMMANDS: list = []
