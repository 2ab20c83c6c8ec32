"""What a run report shows: one small function per section, applied in RUN_SECTIONS order.

Every section reads only the files of the run / bundle contracts (edgetl/run.py,
edgetl/runtime/bundle.py, validation.json in notes) and adds blocks to a Doc. A missing
file becomes a one-line note in the report, never an exception: a report of an unfinished
run is still useful. A file that exists but is not valid JSON is an error.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgetl.report.data_report import run_data_health
from edgetl.report.document import Doc, affine, kv_table, num, pct, read_json
from edgetl.report.figures import confusion_png, curves_png, search_png

MAX_TABLE_ROWS = 50


def is_run(root: Path) -> bool:
    return any((root / n).exists() for n in ("run.json", "config.yaml", "metrics.json", "history.csv"))


# --------------------------------------------------------------------------------------- run


def run_summary(doc: Doc, root: Path) -> None:
    doc.h2("Run")
    info = read_json(root / "run.json")
    if info is None:
        doc.note("run.json is missing: the run is incomplete or still training.")
        return
    pre = info.get("preprocessing", {})
    kv_table(
        doc,
        [
            ("folder", str(root.resolve())),
            ("base", info.get("base")),
            ("cut layer", info.get("cut_layer")),
            ("taps (multi-level features)", ", ".join(info.get("taps") or []) or "none"),
            ("input size", info.get("input_size")),
            ("preprocessing", affine(pre.get("scale"), pre.get("offset"))),
            ("output", info.get("output")),
            ("classes", ", ".join(map(str, info.get("classes", [])))),
            ("edgetl", info.get("edgetl_version")),
        ],
    )


def run_metrics(doc: Doc, root: Path) -> None:
    metrics = read_json(root / "metrics.json")
    doc.h2("Data and metrics")
    if metrics is None:
        doc.note("metrics.json is missing.")
        return
    scalars = [
        (k, pct(v) if "accuracy" in k else num(v, 3) if isinstance(v, float) else str(v))
        for k, v in metrics.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    ]
    kv_table(doc, scalars)
    counts = class_count_rows(metrics)
    if counts:
        doc.p("Images per class")
        doc.table(counts[0], counts[1:])
    if "class_weights" in (metrics.get("head") or {}):
        weighting = "balanced (classes are imbalanced)" if metrics["head"]["class_weights"] else "equal"
        doc.note(f"Class weights of the head's loss: {weighting}.")
    skipped = skipped_rows(metrics.get("skipped"))
    if skipped:
        doc.p(f"Skipped files ({len(skipped)})")
        doc.table(("file", "reason"), skipped[:MAX_TABLE_ROWS])
        if len(skipped) > MAX_TABLE_ROWS:
            doc.note(f"... and {len(skipped) - MAX_TABLE_ROWS} more (see metrics.json).")
    elif "skipped" in metrics:
        doc.note("No files were skipped.")


def class_count_rows(metrics: dict) -> list[tuple]:
    """Per-class counts: `<split>_counts: {cls: n}` keys (what train writes), or one of
    class_counts / counts as {split: {cls: n}}, {cls: {split: n}} or {cls: n};
    plus a validation-accuracy column from per_class_accuracy when present."""
    table: dict[str, dict[str, Any]] = {}  # column -> {cls: value}
    for key, value in metrics.items():
        if key.endswith("_counts") and key != "class_counts" and isinstance(value, dict):
            table[key[: -len("_counts")]] = value
    counts = next((metrics[k] for k in ("class_counts", "counts") if isinstance(metrics.get(k), dict)), None)
    if counts and not table:
        values = list(counts.values())
        if all(isinstance(v, dict) for v in values) and set(counts) <= {"train", "val", "test"}:
            table = dict(counts)
        elif all(isinstance(v, dict) for v in values):
            for cls, per_split in counts.items():
                for split, n in per_split.items():
                    table.setdefault(split, {})[cls] = n
        else:
            table = {"images": counts}
    if not table:
        return []
    if isinstance(metrics.get("per_class_accuracy"), dict):
        table["val accuracy"] = {c: pct(v) for c, v in metrics["per_class_accuracy"].items()}
    names, weights = metrics.get("classes") or [], (metrics.get("head") or {}).get("class_weights")
    if isinstance(weights, list) and len(names) == len(weights):
        table["loss weight"] = dict(zip(names, weights))
    classes = list(dict.fromkeys([*(metrics.get("classes") or []), *(c for col in table.values() for c in col)]))
    return [("class", *table)] + [(c, *(col.get(c, 0) for col in table.values())) for c in classes]


def skipped_rows(skipped: Any) -> list[tuple[str, str]]:
    """Skipped files as (path, reason) from a list of dicts, pairs or "path: reason" strings, or a dict."""
    if isinstance(skipped, dict):
        return [(str(k), str(v)) for k, v in skipped.items()]
    if not isinstance(skipped, list):
        return []
    rows = []
    for item in skipped:
        if isinstance(item, dict):
            rows.append((str(item.get("path", item.get("file", "?"))), str(item.get("reason", item.get("error", "")))))
        elif isinstance(item, (list, tuple)) and item:
            rows.append((str(item[0]), str(item[1]) if len(item) > 1 else ""))
        else:
            path, _, reason = str(item).partition(": ")
            rows.append((path, reason))
    return rows


def run_curves(doc: Doc, root: Path) -> None:
    doc.h2("Training curves")
    history = root / "history.csv"
    if history.is_file():
        with open(history, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            doc.image("curves", curves_png(rows), "training curves: accuracy and loss per epoch")
            return
    if (root / "curves.png").is_file():
        doc.image("curves", (root / "curves.png").read_bytes(), "training curves")
        return
    doc.note("No history.csv or curves.png.")


def run_search(doc: Doc, root: Path) -> None:
    """`--search`: the leaderboard's chart and top rows (search.csv); nothing when the run did not search."""
    path = root / "search.csv"
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    doc.h2("Hyperparameter search")
    if not rows:
        doc.note("search.csv has no trials.")
        return
    doc.p(f"{len(rows)} trials, k-fold cross-validation on the train split; the best settings are in config.yaml.")
    doc.image("search", search_png(rows), "cross-validated accuracy per trial")
    columns = [c for c in rows[0] if c != "trial"]
    doc.table(columns, [tuple(r[c] for c in columns) for r in rows[:10]])


def run_confusion(doc: Doc, root: Path) -> None:
    doc.h2("Validation confusion matrix")
    metrics = read_json(root / "metrics.json") or {}
    info = read_json(root / "run.json") or {}
    classes = metrics.get("classes") or info.get("classes")
    if isinstance(metrics.get("confusion"), list) and classes:
        doc.image("confusion", confusion_png([("validation", metrics["confusion"])], classes), "confusion matrix")
    elif (root / "confusion.png").is_file():
        doc.image("confusion", (root / "confusion.png").read_bytes(), "confusion matrix")
    else:
        doc.note("No confusion matrix (metrics.json 'confusion' or confusion.png).")


def run_config(doc: Doc, root: Path) -> None:
    doc.h2("Configuration")
    path = root / "config.yaml"
    if path.is_file():
        doc.pre(path.read_text(encoding="utf-8", errors="replace").rstrip())
    else:
        doc.note("config.yaml is missing.")


RUN_SECTIONS: tuple[Callable[[Doc, Path], None], ...] = (
    run_summary,
    run_metrics,
    run_curves,
    run_search,
    run_confusion,
    run_data_health,
    run_config,
)


def build_run_doc(root: Path) -> Doc:
    doc = Doc(f"edgetl run report: {root.resolve().name}")
    for section in RUN_SECTIONS:
        section(doc, root)
    return doc
