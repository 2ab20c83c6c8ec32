"""Writing the run folder of `edgetl train` (the contract is in edgetl.run).

Each file is written atomically; run.json goes last, so a folder with run.json is complete
and a crash at any point leaves a folder that `open_run` refuses. run.json's "files" map holds
the sha256 and size of the files export depends on (edgetl.run.VERIFIED), taken from the
files as written, so `open_run` can tell a tampered or half-copied folder from a good one.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgetl import __version__
from edgetl.config import dump_config
from edgetl.model import output_kind
from edgetl.plots import plot_confusion, plot_curves
from edgetl.run import VERIFIED
from edgetl.runtime import atomic

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
    return {name: {"sha256": atomic.sha256_file(out / name), "size_bytes": (out / name).stat().st_size}
            for name in names}


def write_run_folder(out: Path, config, spec, fused, base, dataset, splits: dict, history: list[dict],
                     confusion, metrics: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out / "model.keras", suffix=".keras") as tmp:
        fused.save(tmp)
    atomic.write_text(out / "labels.txt", "".join(f"{c}\n" for c in dataset.classes))
    atomic.write_text(out / "config.yaml", dump_config(config))
    atomic.write_text(out / "splits.json", json.dumps(splits, indent=1))
    atomic.write_text(out / "history.csv", history_csv(history))
    plot_curves(history, out / "curves.png")
    plot_confusion(confusion, dataset.classes, out / "confusion.png")
    atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    info = {**run_info(config, spec, base, dataset.classes), "files": file_digests(out)}
    atomic.write_text(out / "run.json", json.dumps(info, indent=2))
