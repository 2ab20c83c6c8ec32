"""`edgetl run --self-test`: does this device see the golden images the way the workstation did?

Export writes a few golden images into the bundle (BUNDLE/golden/) and, in manifest.json's
"self_test", what the workstation computed from them with these same runtime adapters: an 8x8
grid of per-channel means of the decoded, resized pixels (in the model's colour order), and
every model's probabilities. On the device:

    golden image --Bundle.pixels (Pillow decode, draft, resize, colour order)--> grid ~ recorded grid?
                 --each model (quantize, invoke, dequantize; base + exported head.npz)--> probabilities ~ recorded?

A different Pillow or libjpeg moves the grid by a level or so; a swapped colour order, a flipped
or rotated image, or a wrong resize moves it by tens. Int8 kernels differ slightly between CPUs
(x86 vs ARM, docs/arm64.md), so model outputs are compared within a per-precision tolerance,
and the top-1 class must agree wherever the recorded margin is wider than twice that tolerance.
The device head of update-head is not used: this tests the input path and the models, not the
head the device trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetl.errors import BundleError
from edgetl.runtime import interpreter
from edgetl.runtime.bundle import Bundle
from edgetl.runtime.head import NumpyHead

GRID = 8  # the decoded image is summarised as GRID x GRID cells of per-channel means
GRID_TOLERANCE = 4.0  # levels (0-255): decoders differ by 1-3; a channel swap or a flip by tens
TOLERANCES = {"float32": 1e-3, "float16": 2e-2, "dynamic": 5e-2, "int8": 0.12}  # max |probability difference|


def pixel_grid(pixels: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 -> (GRID, GRID, 3) float means of each cell."""
    size = pixels.shape[0] - pixels.shape[0] % GRID
    cells = pixels[:size, :size].astype(np.float64).reshape(GRID, size // GRID, GRID, size // GRID, 3)
    return cells.mean(axis=(1, 3))


def tolerance_of(entry: dict[str, Any]) -> float:
    """By the model's precision: weights of its quantization spec (int8 / float16 / dynamic / float32)."""
    return TOLERANCES.get((entry.get("quantization") or {}).get("weights", "float32"), TOLERANCES["int8"])


def golden_outputs(bundle: Bundle, fmt: str, images: list[np.ndarray], head: NumpyHead | None) -> np.ndarray:
    """Probabilities of one model on the golden pixels: a fused model, or a base model + `head`."""
    entry = bundle.models[fmt]
    role = "base" if entry.get("role") == "base" else "fused"
    model = interpreter.open_model(bundle.model_path(fmt), interpreter.runtime_of(fmt, entry), 1, role)
    out = np.concatenate([model.outputs(model.from_pixels(p[None], bundle.scale, bundle.offset)) for p in images])
    if role == "base":
        if head is None:
            raise BundleError(f"{bundle.root} has base model {fmt} but no head.npz")
        out = head.predict(out)
    return out


@dataclass
class SelfTest:
    """Per golden image: grid difference; per format: largest probability difference, top-1 agreement."""

    grid_diff: dict[str, float] = field(default_factory=dict)
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # format -> why (its runtime is not installed)

    @property
    def passed(self) -> bool:
        return all(d <= GRID_TOLERANCE for d in self.grid_diff.values()) and all(
            f["passed"] for f in self.formats.values()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "grid_diff": self.grid_diff,
            "grid_tolerance": GRID_TOLERANCE,
            "formats": self.formats,
            "skipped": self.skipped,
        }

    def lines(self) -> list[str]:
        out = [
            f"decode {name}: grid differs by {d:.1f} levels (tolerance {GRID_TOLERANCE}) -> "
            f"{'ok' if d <= GRID_TOLERANCE else 'FAIL'}"
            for name, d in self.grid_diff.items()
        ]
        for fmt, r in self.formats.items():
            out.append(
                f"{fmt}: max probability difference {r['max_diff']:.4f} (tolerance {r['tolerance']}), "
                f"top-1 {'agrees' if r['top1_agrees'] else 'DIFFERS'} -> {'ok' if r['passed'] else 'FAIL'}"
            )
        out += [f"{fmt}: skipped ({why})" for fmt, why in self.skipped.items()]
        return out + [f"self-test {'passed' if self.passed else 'FAILED'}"]


def run_self_test(bundle: Bundle, formats: list[str] | None = None) -> SelfTest:
    """Check decoding and every model (or `formats`) against the golden record in the manifest."""
    record = bundle.manifest.get("self_test")
    if not record:
        raise BundleError(f"{bundle.root} has no golden images (exported before edgetl 0.2); re-export it")
    result = SelfTest()
    images = []
    for item in record["images"]:
        pixels = bundle.pixels(bundle.path_of(item))
        images.append(pixels)
        result.grid_diff[item["file"]] = float(np.abs(pixel_grid(pixels) - np.asarray(item["grid"])).max())
    head = NumpyHead.load(bundle.path_of(bundle.manifest["head"])) if "head" in bundle.manifest else None
    for fmt, expected in record["outputs"].items():
        if formats and fmt not in formats:
            continue
        if not interpreter.runtime_available(interpreter.runtime_of(fmt, bundle.models[fmt])):
            result.skipped[fmt] = "its runtime is not installed"
            continue
        got, want = golden_outputs(bundle, fmt, images, head), np.asarray(expected)
        tol = tolerance_of(bundle.models[fmt])
        ranked = np.sort(want, axis=1)
        clear = ranked[:, -1] - ranked[:, -2] > 2 * tol  # a near-tie may flip within the tolerance
        diff, agrees = float(np.abs(got - want).max()), bool((got.argmax(1) == want.argmax(1))[clear].all())
        result.formats[fmt] = {
            "max_diff": round(diff, 6),
            "tolerance": tol,
            "top1_agrees": agrees,
            "passed": agrees and diff <= tol,
        }
    return result
