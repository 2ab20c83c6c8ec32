"""What a bundle report shows: the models, how much each export lost, and where.

Reads manifest.json (edgetl/runtime/bundle.py) and validation.json (written by `edgetl
validate`). The "reference" is the float model the exports were compared with ("keras"
when validation measured it); quantized formats are those the format table marks quantized (edgetl.runtime.formats).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgetl.errors import ImageError
from edgetl.report.document import Doc, affine, kv_table, num, pct, read_json, size
from edgetl.report.figures import confusion_png, thumbnail_grid_png
from edgetl.report.open_world_report import open_world_section
from edgetl.runtime import formats as model_formats
from edgetl.runtime.bundle import load_bundle
from edgetl.runtime.image import load_rgb

MAX_THUMBNAILS = 24
THUMB_SIZE = 96
REFERENCE_FORMATS = ("keras", *model_formats.FLOAT_REFERENCES)


def ordered(formats: dict[str, Any]) -> list[str]:
    """The Keras reference first, then the format table's order (each base-* form after its fused one)."""
    return ["keras"] * ("keras" in formats) + model_formats.order(f for f in formats if f != "keras")


def reference_of(validation: dict) -> str | None:
    """The format validate compared against (its "reference" key; older files: the first float format)."""
    formats = validation.get("formats", {})
    named = validation.get("reference")
    return named if named in formats else next((f for f in REFERENCE_FORMATS if f in formats), None)


def quantized_of(formats: dict[str, Any]) -> list[str]:
    return [f for f in ordered(formats) if model_formats.is_quantized(f)]


def bundle_summary(doc: Doc, root: Path, manifest: dict, validation: dict | None) -> None:
    doc.h2("Bundle")
    inp, base = manifest.get("input", {}), manifest.get("base") or {}
    shape = f"{inp.get('size')} x {inp.get('size')} {inp.get('color', 'RGB')}"
    kv_table(
        doc,
        [
            ("folder", str(root.resolve())),
            ("created", manifest.get("created")),
            ("source run", (manifest.get("source_run") or {}).get("path")),
            ("base", base.get("name")),
            ("input", f"{shape}, {affine(inp.get('scale'), inp.get('offset'))}"),
            ("output", manifest.get("output")),
            ("classes", ", ".join(map(str, manifest.get("classes", [])))),
            ("edgetl", manifest.get("edgetl_version")),
        ],
    )
    models = manifest.get("models", {})
    rows = [
        (
            fmt,
            e.get("file", "?"),
            e.get("runtime", "-"),
            e.get("role", "-"),
            size(e.get("size_bytes")),
            (e.get("input") or {}).get("dtype", "-"),
        )
        for fmt, e in ((f, models[f]) for f in ordered(models))
    ]
    if rows:
        doc.table(("format", "file", "runtime", "role", "size", "input dtype"), rows)


def formats_table(doc: Doc, root: Path, manifest: dict, validation: dict | None) -> None:
    doc.h2("Accuracy per format")
    if validation is None:
        doc.note(f"No validation.json in this bundle: run `edgetl validate {root}` to measure accuracy and latency.")
        return
    verdict = "PASSED" if validation.get("passed") else "FAILED"
    limit = validation.get("max_drop_pp")
    doc.p(
        f"{validation.get('num_images', '?')} validation images; gate: "
        + (f"max drop {limit} percentage points" if limit is not None else "none")
        + f"; result: {verdict}."
    )
    formats = validation.get("formats", {})
    rows, classes = [], []
    for fmt in ordered(formats):
        r = formats[fmt]
        lat = r.get("latency_ms") or {}
        rows.append(
            (
                fmt,
                pct(r.get("accuracy")),
                num(r.get("drop_pp")),
                pct(r.get("agreement")),
                size(r.get("size_bytes")),
                f"{num(lat.get('mean'))} / {num(lat.get('p95'))}",
                "yes" if r.get("gated") else "no",
                {True: "pass", False: "FAIL"}.get(r.get("passed"), "-"),
            )
        )
        classes.append("bad" if r.get("passed") is False else "good" if r.get("gated") else "")
    doc.table(
        ("format", "accuracy", "drop (pp)", "agreement", "size", "latency ms mean / p95", "gated", "result"),
        rows,
        classes,
    )
    doc.note(
        f"reference: {reference_of(validation) or '-'}. drop: reference accuracy minus this format's, in "
        "percentage points; agreement: share of images where this format predicts the same class as the reference."
    )
    skipped = validation.get("skipped_images") or []
    if skipped:
        doc.p(f"Validation images that could not be decoded ({len(skipped)})")
        doc.table(("file", "reason"), [tuple((str(s).split(": ", 1) + [""])[:2]) for s in skipped[:50]])


def per_class_table(doc: Doc, root: Path, manifest: dict, validation: dict | None) -> None:
    formats = (validation or {}).get("formats", {})
    with_classes = [f for f in ordered(formats) if formats[f].get("per_class")]
    if not with_classes:
        return
    doc.h2("Accuracy per class")
    classes = list(dict.fromkeys(c for f in with_classes for c in formats[f]["per_class"]))
    rows = []
    for cls in classes:
        cells = []
        for f in with_classes:
            entry = formats[f]["per_class"].get(cls) or {}
            cells.append(f"{pct(entry.get('accuracy'))} ({num(entry.get('drop_pp'), 1)})")
        rows.append((cls, *cells))
    doc.table(("class", *with_classes), rows)
    doc.note("accuracy (drop in percentage points vs the reference) per true class.")


def confusion_pairs(doc: Doc, root: Path, manifest: dict, validation: dict | None) -> None:
    formats = (validation or {}).get("formats", {})
    classes = (validation or {}).get("classes") or manifest.get("classes", [])
    ref = reference_of(validation or {})
    has = lambda f: isinstance(formats.get(f, {}).get("confusion"), list)  # noqa: E731
    others = [f for f in (quantized_of(formats) or [f for f in ordered(formats) if f != ref]) if has(f)]
    if not classes or not (others or (ref and has(ref))):
        return
    doc.h2("Confusion matrices")
    for fmt in others or [None]:
        pair = [(f, formats[f]["confusion"]) for f in (ref, fmt) if f and has(f)]
        doc.image(
            f"confusion_{fmt or ref}",
            confusion_png(pair, classes),
            " vs ".join(name for name, _ in pair) + " confusion matrices",
        )


def _find_image(root: Path, path: str) -> Path | None:
    """validate writes absolute paths; relative ones are tried against the bundle, then the cwd."""
    candidates = [Path(path)] if Path(path).is_absolute() else [root / path, Path.cwd() / path]
    return next((p for p in candidates if p.is_file()), None)


def regressions(validation: dict, fmt: str) -> list[dict]:
    """Disagreements where the reference is right and `fmt` is wrong."""
    ref_key = reference_of(validation) or "keras"
    return [
        d
        for d in (validation.get("disagreements") or {}).get(fmt, [])
        if isinstance(d, dict) and d.get(ref_key) == d.get("label") and d.get(fmt) != d.get("label")
    ]


def regression_grids(doc: Doc, root: Path, manifest: dict, validation: dict | None) -> None:
    if not validation:
        return
    for fmt in quantized_of(validation.get("formats", {})):
        lost = regressions(validation, fmt)
        if not lost:
            continue
        doc.h2(f"Images {fmt} gets wrong and {reference_of(validation)} gets right ({len(lost)})")
        items, missing = [], []
        for d in lost[:MAX_THUMBNAILS]:
            found = _find_image(root, str(d.get("path", "")))
            try:
                if found is None:
                    raise ImageError("file not found")
                name = Path(str(d["path"])).name
                name = name if len(name) <= 20 else name[:9] + "..." + name[-8:]
                items.append((load_rgb(found, THUMB_SIZE), f"{name}\ntrue: {d.get('label')}\n{fmt}: {d.get(fmt)}"))
            except ImageError as exc:
                missing.append((str(d.get("path")), str(exc).removeprefix(f"{found}: ")))
        if items:
            doc.image(f"wrong_{fmt}", thumbnail_grid_png(items), f"validation images {fmt} misclassifies")
        if missing:
            doc.p("Images that could not be shown")
            doc.table(("file", "reason"), missing)
        if len(lost) > MAX_THUMBNAILS:
            doc.note(f"Showing {MAX_THUMBNAILS} of {len(lost)}; all are listed in validation.json.")


def architectures_table(doc: Doc, root: Path, manifest: dict, validation: dict | None) -> None:
    """Accuracy per format on each architecture `edgetl validate` ran on (x86 workstation, arm64 device)."""
    sections = (validation or {}).get("architectures") or {}
    if len(sections) < 2:
        return
    archs = sorted(sections, key=lambda a: (a != (validation.get("machine") or {}).get("arch"), a))
    doc.h2("Accuracy per architecture")
    formats = ordered({f: None for a in archs for f in sections[a]["formats"]})
    first = archs[0]
    rows = []
    for fmt in formats:
        acc = [sections[a]["formats"].get(fmt, {}).get("accuracy") for a in archs]
        diffs = [num((x - acc[0]) * 100) if x is not None and acc[0] is not None else "-" for x in acc[1:]]
        rows.append((fmt, *map(pct, acc), *diffs))
    doc.table(("format", *archs, *(f"{a} - {first} (pp)" for a in archs[1:])), rows)
    machines = "; ".join(
        f"{a}: Python {sections[a]['machine'].get('python')}, "
        + ", ".join(f"{k} {v}" for k, v in sections[a]["machine"].get("packages", {}).items())
        + f", {sections[a]['num_images']} images"
        for a in archs
    )
    same = len({sections[a]["images_id"] for a in archs}) == 1
    doc.note(machines + ("" if same else ". WARNING: not the same images on every architecture."))


BUNDLE_SECTIONS: tuple[Callable[[Doc, Path, dict, Any], None], ...] = (
    bundle_summary,
    formats_table,
    architectures_table,
    open_world_section,
    per_class_table,
    confusion_pairs,
    regression_grids,
)


def build_bundle_doc(root: Path) -> Doc:
    bundle = load_bundle(root)
    validation = read_json(root / "validation.json")
    doc = Doc(f"edgetl bundle report: {root.resolve().name}")
    for section in BUNDLE_SECTIONS:
        section(doc, root, bundle.manifest, validation)
    return doc
