"""CLI commands of the train stage (filled in by the train work)."""

COMMANDS: list = []
