"""CLI commands of the device stage (filled in by the device work)."""

COMMANDS: list = []
