"""What every benchmark script ends with: the load average beside its timings, and the JSON out."""

from __future__ import annotations

import json
import os
from pathlib import Path


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages: timings on a shared machine move with them."""
    return [round(v, 2) for v in os.getloadavg()]


def emit(result: dict, out: str | os.PathLike | None, indent: int = 2) -> None:
    """Print the result as JSON and, with --out, also write it there (folders created)."""
    text = json.dumps(result, indent=indent)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
