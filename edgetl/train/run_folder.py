"""The run folder: what `edgetl train` writes and `edgetl export` reads.

    RUN/
      model.keras      fused tf_keras model (nested 'base' and 'head')
      labels.txt       one class per line, index order
      config.yaml      the resolved TrainConfig
      run.json         edgetl version, base, preprocessing, output kind, feature shape
      splits.json      the exact train / val files (root + relative paths + label index)
      metrics.json     val_accuracy, train_seconds, num_train, num_val, classes, skipped, ...
      data_health.json duplicates across train/val, likely mislabelled images, imbalance (edgetl.train.data_health)
      history.csv      per-epoch loss / accuracy (head, then fine-tuning)
      curves.png       train vs val accuracy and loss
      confusion.png    validation confusion matrix

`write_run_folder` writes each file atomically and run.json last, so a folder is complete
when run.json exists and a crash at any point leaves a folder that `open_run` refuses.
run.json's "files" map, {name: {"sha256", "size_bytes"}} for the files in VERIFIED, taken
from the files as written, is checked by `open_run`, so a
tampered, truncated or half-copied folder is refused with the name of the bad file (run
folders written before the map existed have no "files" key and are not checked).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl import __version__
from edgetl.errors import RunFolderError
from edgetl.models.classifier import config_taps, output_kind
from edgetl.report.figures import confusion_png, curves_png
from edgetl.runtime import atomic
from edgetl.train.config import dump_config

MODEL_FILE = "model.keras"
REQUIRED = ("model.keras", "labels.txt", "config.yaml", "splits.json", "run.json")
VERIFIED = ("model.keras", "labels.txt", "config.yaml", "splits.json")  # listed with their sha256 in run.json
OPENWORLD = "openworld.npz"  # the head's calibration and unknown statistics (listed too, when written)


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

    def openworld(self):
        """The head's calibration and unknown statistics (openworld.npz), or None when the run has none."""
        from edgetl.runtime.openworld import OpenWorld

        path = self.root / OPENWORLD
        return OpenWorld.load(path) if path.is_file() else None

    def config(self):
        from edgetl.train.config import load_config

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
    info = _read_json(root, "run.json")
    major = lambda v: str(v).split(".")[:2]  # noqa: E731
    if major(info.get("edgetl_version", "")) != major(__version__):
        raise RunFolderError(
            f"run folder {root} was written by edgetl {info.get('edgetl_version')}, this is {__version__}; "
            "retrain or use that version"
        )
    verify_files(root, info)  # before parsing splits.json, so a damaged file is named as such
    splits = _read_json(root, "splits.json")
    return RunFolder(root, info, splits)


def _read_json(root: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((root / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"run folder {root} has an unreadable {name}: {exc}; re-run `edgetl train`") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"run folder {root}: {name} must hold a JSON object; re-run `edgetl train`")
    return data


def verify_files(root: Path, info: dict[str, Any]) -> None:
    """Check every file of run.json's "files" map against its size and sha256."""
    files = info.get("files")
    if files is None:
        return
    if not isinstance(files, dict):
        raise RunFolderError(f"run folder {root}: 'files' in run.json must be an object; re-run `edgetl train`")
    for name, entry in files.items():
        if name not in (*VERIFIED, OPENWORLD) or not isinstance(entry, dict):
            raise RunFolderError(
                f"run folder {root}: run.json lists an unexpected file {name!r}; re-run `edgetl train`"
            )
        path = root / name
        try:
            size, digest = path.stat().st_size, atomic.sha256_file(path)
        except OSError as exc:
            raise RunFolderError(
                f"run folder file {name} cannot be read ({exc.strerror}); re-run `edgetl train`"
            ) from None
        if size != entry.get("size_bytes") or digest != entry.get("sha256"):
            raise RunFolderError(
                f"run folder file {name} does not match its sha256 in run.json "
                f"(tampered, truncated or half-copied); copy the folder again or re-run `edgetl train`"
            )


HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy")


def history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_COLUMNS})
    return buf.getvalue()


def run_info(config, spec, base, classes: list[str]) -> dict:
    return {
        "edgetl_version": __version__,
        "base": spec.name,
        "cut_layer": config.cut_layer,
        "taps": list(config_taps(config)),
        "input_size": config.input_size,
        "preprocessing": {"scale": spec.scale, "offset": spec.offset, "color": "RGB"},
        "output": output_kind(len(classes))[0],
        "feature_shape": [int(d) for d in base.output.shape[1:]],
        "classes": list(classes),
        "pooling": config.pooling,
        "dense_activation": config.dense_activation,
        "weights": config.weights,
    }


def file_digests(out: Path, names=VERIFIED) -> dict[str, dict]:
    """{name: {"sha256", "size_bytes"}} of files already in the run folder."""
    return {
        name: {"sha256": atomic.sha256_file(out / name), "size_bytes": (out / name).stat().st_size} for name in names
    }


def write_run_folder(
    out: Path,
    config,
    spec,
    fused,
    base,
    dataset,
    splits: dict,
    history: list[dict],
    confusion,
    metrics: dict,
    health: dict | None = None,
    world=None,
) -> None:
    """Every file of the run folder, run.json last; `world`: the head's open-world statistics (openworld.npz)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out / "model.keras", suffix=".keras") as tmp:
        fused.save(tmp)
    atomic.write_text(out / "labels.txt", "".join(f"{c}\n" for c in dataset.classes))
    atomic.write_text(out / "config.yaml", dump_config(config))
    atomic.write_text(out / "splits.json", json.dumps(splits, indent=1))
    atomic.write_text(out / "history.csv", history_csv(history))
    atomic.write_bytes(out / "curves.png", curves_png(history))
    correct = f"{int(np.trace(confusion))}/{int(np.sum(confusion))} correct"
    atomic.write_bytes(out / "confusion.png", confusion_png([(f"validation ({correct})", confusion)], dataset.classes))
    atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    if health is not None:
        atomic.write_text(out / "data_health.json", json.dumps(health, indent=1))
    names = VERIFIED
    if world is not None:
        world.save(out / OPENWORLD)
        names = (*VERIFIED, OPENWORLD)
    else:
        (out / OPENWORLD).unlink(missing_ok=True)
    info = {**run_info(config, spec, base, dataset.classes), "files": file_digests(out, names)}
    atomic.write_text(out / "run.json", json.dumps(info, indent=2))
