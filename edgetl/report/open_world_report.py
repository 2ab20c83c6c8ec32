"""The bundle report's open-world section: calibration before and after the temperature, unknown rates."""

from __future__ import annotations

from pathlib import Path

from edgetl.report.document import Doc, num, pct
from edgetl.report.figures import reliability_png
from edgetl.runtime import formats as model_formats


def open_world_section(doc: Doc, root: Path, manifest: dict, validation: dict | None) -> None:
    world = manifest.get("openworld")
    if not world:
        return
    doc.h2("Calibration and unknown detection")
    doc.p(
        f"Temperature {num(world.get('temperature'), 3)} (fitted on held-out training images); an image is "
        f"unknown when its score exceeds {num(world.get('threshold'), 3)} ({pct(world.get('accept'))} of held-out "
        "training images accepted). Split formats use base features + logits, fused formats the top probability."
    )
    formats = {f: e for f, e in ((validation or {}).get("formats") or {}).items() if "ece" in e}
    if not formats:
        doc.note("Run `edgetl validate` to measure calibration and the unknown rate on the val images.")
        return
    order = [f for f in ["keras", *model_formats.order(f for f in formats if f != "keras")] if f in formats]
    doc.table(
        ("format", "ECE before", "ECE after", "unknown rate on val"),
        [
            (f, num(formats[f]["ece"], 3), num(formats[f]["ece_calibrated"], 3), pct(formats[f]["unknown_rate"]))
            for f in order
        ],
    )
    shown = [f for f in order if model_formats.is_quantized(f) or f == "keras"][:3] or order[:2]
    doc.image(
        "reliability",
        reliability_png([(f, formats[f]["reliability"]) for f in shown]),
        "reliability diagram after temperature scaling",
    )
