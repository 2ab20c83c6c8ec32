"""The int8 fallback ladder: when a quantized model drops too much accuracy, try the next rung.

A rung is data: a name and the changes it makes to the requested QuantSpec. Rungs are tried
in order and the first whose model passes the gate is kept. A rung that would repeat a
spec already tried (e.g. "more calibration" when the training split has no more images)
is skipped. The attempts are recorded in the manifest and validation.json; when no rung
passes, the caller keeps the requested (rung 0) model, reports it as failing and exits 3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgetl.errors import ExportError
from edgetl.export.options import METHODS
from edgetl.export.quantize import QuantSpec


@dataclass(frozen=True)
class Rung:
    name: str
    changes: tuple[tuple[str, Any], ...] = ()
    calibration_factor: int = 1

    def apply(self, spec: QuantSpec, available: int) -> QuantSpec:
        spec = spec.replace(**dict(self.changes))
        return spec.replace(calibration=max(1, min(spec.calibration * self.calibration_factor, available)))


MORE = 4
TFLITE_LADDER: tuple[Rung, ...] = (
    Rung("int8"),
    Rung("more-calibration", calibration_factor=MORE),
    Rung("float-first-last", (("float_ends", True),), MORE),
    Rung("int16-activations", (("activations", "int16"), ("io", "float32")), MORE),
    Rung("float16", (("weights", "float16"), ("io", "float32"))),
)
ONNX_LADDER: tuple[Rung, ...] = (
    Rung("int8"),  # requested as U8U8 (edgetl.export.converters): the same outputs on x86 and ARM
    Rung("more-calibration", calibration_factor=MORE),
    *(Rung(f"{method}-calibration", (("method", method),), MORE) for method in METHODS),
    Rung("per-channel", (("per_channel", True),), MORE),
    Rung("float-first-last", (("float_ends", True),), MORE),
    Rung("int16-activations", (("activations", "int16"), ("unsigned", False)), MORE),
)


@dataclass
class Attempt:
    rung: str
    spec: QuantSpec
    status: str  # passed | failed | error | skipped
    drop_pp: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "rung": self.rung,
            "status": self.status,
            "drop_pp": self.drop_pp,
            "detail": self.detail,
            "spec": {k: v for k, v in vars(self.spec).items()},
        }


@dataclass
class LadderResult:
    chosen: str | None  # name of the passing rung, None when none passed
    artifact: Any  # the passing artifact, else the first one that built
    spec: QuantSpec | None
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"passed_rung": self.chosen, "attempts": [a.to_json() for a in self.attempts]}


def climb(
    rungs: tuple[Rung, ...],
    spec: QuantSpec,
    available: int,
    build: Callable[[QuantSpec], Any],
    gate: Callable[[Any], tuple[bool, float]],
) -> LadderResult:
    """Build and gate each rung in turn; stop at the first that passes."""
    attempts: list[Attempt] = []
    tried: set[QuantSpec] = set()
    fallback: tuple[Any, QuantSpec] | None = None
    for rung in rungs:
        rung_spec = rung.apply(spec, available)
        if rung_spec in tried:
            attempts.append(Attempt(rung.name, rung_spec, "skipped", detail="same as an earlier rung"))
            continue
        tried.add(rung_spec)
        try:
            artifact = build(rung_spec)
        except ExportError as exc:
            attempts.append(Attempt(rung.name, rung_spec, "error", detail=str(exc)))
            continue
        if fallback is None:
            fallback = (artifact, rung_spec)
        passed, drop = gate(artifact)
        attempts.append(Attempt(rung.name, rung_spec, "passed" if passed else "failed", round(float(drop), 3)))
        if passed:
            return LadderResult(rung.name, artifact, rung_spec, attempts)
    if fallback is None:
        raise ExportError(
            f"every rung of the quantization ladder failed to convert: {attempts[0].detail if attempts else ''}"
        )
    return LadderResult(None, fallback[0], fallback[1], attempts)
