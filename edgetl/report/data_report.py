"""The data health section (edgetl.train.data_health): in a run's report and in `edgetl check-data`'s own.

Duplicates and likely mislabelled images are shown as thumbnails, so a person can decide in
a glance; every finding is also listed in data_health.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ImageError
from edgetl.report.document import Doc, read_json
from edgetl.report.figures import thumbnail_grid_png
from edgetl.runtime.image import load_rgb

THUMBS = 18
THUMB_SIZE = 96
HEALTH_FILE = "data_health.json"


def _thumbs(pairs: list[tuple[str, str]]) -> tuple[list[tuple[np.ndarray, str]], list[tuple[str, str]]]:
    """(thumbnails with captions, (path, reason) of files that could not be shown)."""
    items, missing = [], []
    for path, caption in pairs[:THUMBS]:
        try:
            items.append((load_rgb(path, THUMB_SIZE), caption))
        except ImageError as exc:
            missing.append((path, str(exc).removeprefix(f"{path}: ")))
    return items, missing


def _grid(doc: Doc, name: str, pairs: list[tuple[str, str]], alt: str) -> None:
    items, missing = _thumbs(pairs)
    if items:
        doc.image(name, thumbnail_grid_png(items), alt)
    if missing:
        doc.table(("file", "could not be shown"), missing)


def data_health_section(doc: Doc, health: dict[str, Any] | None) -> None:
    doc.h2("Data health")
    if health is None:
        doc.note(f"{HEALTH_FILE} is missing (a run from an older edgetl, or still training).")
        return
    imb = health["imbalance"]
    doc.table(
        ("check", "found"),
        [
            ("exact duplicates across train and val (same bytes)", health["num_exact_across_splits"]),
            ("exact duplicates within a split", health["num_exact_duplicates"] - health["num_exact_across_splits"]),
            (
                f"near duplicates across train and val (feature cosine >= {health['near_duplicate_cosine']})",
                health["num_near_duplicates"],
            ),
            ("likely mislabelled (confident learning on out-of-fold predictions)", health["num_label_issues"]),
            ("largest / smallest class", f"{imb['ratio']:.2f}" + (" (imbalanced)" if imb["imbalanced"] else "")),
            ("undecodable files", len(health["undecodable"])),
        ],
    )
    leaks = [(d["a"], "train") for d in health["exact_duplicates"] if d["where"] == "train-val"]
    leaks += [
        (p, f"{side} {d['cosine']:.3f}")
        for d in health["near_duplicates"]
        for p, side in ((d["train"], "train"), (d["val"], "val"))
    ]
    if leaks:
        doc.p("Duplicates across train and val (the val split then measures memory, not generalisation)")
        _grid(doc, "duplicates", leaks, "train and val images that are (nearly) the same")
    if health["label_issues"]:
        doc.p("Likely mislabelled: the label, then what the other images say (with its confidence)")
        pairs = [(d["path"], f"{d['label']} -> {d['predicted']} {d['confidence']:.2f}") for d in health["label_issues"]]
        _grid(doc, "label_issues", pairs, "images whose label the rest of the data contradicts")
    if health["undecodable"]:
        doc.table(("undecodable file", "reason"), [(d["path"], d["reason"]) for d in health["undecodable"]])


def build_data_doc(root: Path) -> Doc:
    """The report of `edgetl check-data --out FOLDER`."""
    health = read_json(root / HEALTH_FILE)
    doc = Doc(f"edgetl data report: {Path(health.get('data', root)).name}")
    doc.p(
        f"data: {health.get('data')}; classes: {', '.join(health.get('classes', []))}; images: {health['num_images']}"
    )
    data_health_section(doc, health)
    return doc


def run_data_health(doc: Doc, root: Path) -> None:
    """The run report's section, from RUN/data_health.json."""
    data_health_section(doc, read_json(root / HEALTH_FILE))
