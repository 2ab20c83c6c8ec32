"""The run folder: what `edgetl train` writes and `edgetl export` reads.

    RUN/
      model.keras      fused tf_keras model (nested 'base' and 'head')
      labels.txt       one class per line, index order
      config.yaml      the resolved TrainConfig
      run.json         edgetl version, base, preprocessing, output kind, feature shape
      splits.json      the exact train / val files (root + relative paths + label index)
      metrics.json     val_accuracy, train_seconds, num_train, num_val, classes, skipped, ...
      history.csv      per-epoch loss / accuracy (head, then fine-tuning)
      curves.png       train vs val accuracy and loss
      confusion.png    validation confusion matrix

A run folder is complete when run.json exists: it is written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.errors import RunFolderError

MODEL_FILE = "model.keras"
REQUIRED = ("model.keras", "labels.txt", "config.yaml", "splits.json", "run.json")


@dataclass
class RunFolder:
    root: Path
    info: dict[str, Any]
    splits: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def input_size(self) -> int:
        return int(self.info["input_size"])

    @property
    def scale(self) -> float:
        return float(self.info["preprocessing"]["scale"])

    @property
    def offset(self) -> float:
        return float(self.info["preprocessing"]["offset"])

    def files(self, split: str) -> list[tuple[Path, int]]:
        """(absolute path, label index) of the train or val split."""
        root = Path(self.splits["root"])
        return [(root / rel, int(label)) for rel, label in self.splits.get(split, [])]

    def config(self):
        from edgetl.config import load_config

        return load_config(self.root / "config.yaml")

    def load_model(self):
        from edgetl._tf import keras

        try:
            return keras.models.load_model(self.root / MODEL_FILE, compile=False)
        except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
            raise RunFolderError(f"cannot load {self.root / MODEL_FILE}: {str(exc).splitlines()[0][:200]}") from None


def open_run(run_dir: str | Path) -> RunFolder:
    root = Path(run_dir)
    if not root.is_dir():
        raise RunFolderError(f"run folder not found: {root}")
    missing = [name for name in REQUIRED if not (root / name).exists()]
    if missing:
        raise RunFolderError(f"run folder {root} is incomplete (missing {', '.join(missing)}); re-run `edgetl train`")
    try:
        info = json.loads((root / "run.json").read_text())
        splits = json.loads((root / "splits.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"run folder {root} has an unreadable run.json/splits.json: {exc}") from None
    major = lambda v: str(v).split(".")[:2]  # noqa: E731
    if major(info.get("edgetl_version", "")) != major(__version__):
        raise RunFolderError(
            f"run folder {root} was written by edgetl {info.get('edgetl_version')}, this is {__version__}; retrain or use that version")
    return RunFolder(root, info, splits)
