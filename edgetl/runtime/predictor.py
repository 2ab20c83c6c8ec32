"""A bundle ready to classify one image: which model runs, with which head, and what it concludes.

image/frame -> Bundle.pixels (decode, resize, colour order) -> model input (preprocess, quantize)
            -> fused model ------------------------------------------------> probabilities
            -> base model -> NumpyHead (a device head from `update-head`, or the
               exported head when its open-world statistics need base features) -> probabilities
probabilities (+ base features) -> Verdict: calibrated probabilities, unknown or not, its score
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from edgetl.errors import BundleError
from edgetl.runtime import formats, headstore, interpreter
from edgetl.runtime.bundle import Bundle, load_bundle
from edgetl.runtime.calibration import calibrated_probabilities
from edgetl.runtime.openworld import OpenWorld


def is_base(fmt: str, entry: dict) -> bool:
    return entry.get("role") == "base" or formats.is_base(fmt)


def fused_formats(bundle: Bundle) -> list[str]:
    return [f for f, e in bundle.models.items() if not is_base(f, e) and f != "keras"]


def _pick(bundle: Bundle, candidates: Iterable[str], what: str) -> str:
    for fmt in candidates:
        if fmt in bundle.models and _runs_here(bundle, fmt):
            return fmt
    have = ", ".join(bundle.models) or "none"
    raise BundleError(
        f"no {what} model in {bundle.root} can run here (bundle has: {have}); "
        "install a runtime with `pip install ai-edge-litert` or `pip install onnxruntime`"
    )


def choose_format(bundle: Bundle, fmt: str | None) -> str:
    """--format, checked against the bundle; default: best available fused format."""
    if fmt is None:
        return _pick(bundle, formats.RUN_PREFERENCE, "fused")
    if fmt not in bundle.models or is_base(fmt, bundle.models[fmt]):
        raise BundleError(
            f"--format {fmt} is not in this bundle; choose one of: {', '.join(fused_formats(bundle)) or 'none'}"
        )
    return fmt


def choose_base_format(bundle: Bundle, fmt: str | None, trained_on: str | None = None) -> str:
    """The base model for base + numpy head: base-<fmt>, else the one the head was trained on, else the best."""
    if fmt is not None:
        if formats.BASE_PREFIX + fmt not in bundle.models:
            bases = [formats.fused_name(f) for f in bundle.models if formats.is_base(f)]
            raise BundleError(
                f"the device head needs base-{fmt}, which this bundle lacks; use --format "
                f"{' or '.join(bases) or '(none)'} or `edgetl rollback-head`"
            )
        return formats.BASE_PREFIX + fmt
    if not any(is_base(f, e) for f, e in bundle.models.items()):
        raise BundleError(
            f"{bundle.root} has no base model (base-<format>) to run a device head with; "
            "re-export the bundle with its split form"
        )
    order = ([trained_on] if trained_on else []) + [formats.BASE_PREFIX + f for f in formats.RUN_PREFERENCE]
    return _pick(bundle, order, "base")


def default_threads() -> int:
    """Interpreter threads when --threads is not given: every usable core but one, at least 1.

    LiteRT's own default runs like a single thread (measured), which leaves three of a Pi 5's
    four cores idle. The core kept back decodes the next image (edgetl.runtime.prefetch) or
    reads the camera: on this 2-core machine a folder run takes 1.0 ms per image with one
    interpreter thread and 1.5 ms with two, whose threads fight the decoder for the cores.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # honours taskset / cpusets, unlike os.cpu_count()
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


@dataclass(frozen=True)
class Verdict:
    """One image's result. probabilities are calibrated when the head has open-world statistics;
    unknown is None when there is no unknown detection (none fitted, or --unknown off)."""

    probabilities: np.ndarray  # (num_classes,)
    unknown: bool | None = None
    unknown_score: float | None = None


@dataclass
class Predictor:
    """A bundle ready to classify: `judge(model_input(source))` for one image.

    With a head (base model + numpy head: a device head, or the exported head when the bundle
    has open-world statistics), the unknown score is the open-world detector's (base features +
    logits); with a fused model alone, it is the calibrated top probability against the
    threshold fitted for it.
    """

    bundle: Bundle
    fmt: str
    model: interpreter.Model
    head: headstore.NumpyHead | None = None
    head_description: str = "fused model"
    classes: list[str] = field(default_factory=list)
    openworld: OpenWorld | None = None
    unknown_threshold: float | None = None  # overrides the fitted one (score units of the method in use)

    @property
    def size(self) -> int:
        return self.bundle.input_size

    def model_input(self, source) -> np.ndarray:
        """Path / file / PIL image -> what the interpreter takes: the (1, H, W, 3) tensor training
        computes (load_rgb + preprocess with the manifest's scale/offset), quantized or cast."""
        return self.model.from_pixels(self.bundle.pixels(source)[None], self.bundle.scale, self.bundle.offset)

    def judge(self, model_input: np.ndarray) -> Verdict:
        out = self.model.outputs(model_input)
        world = self.openworld
        if self.head is not None and world is not None:
            verdict = world.judge(self.head, out)
            score, threshold = float(verdict.unknown_score[0]), world.detector.threshold
            return Verdict(verdict.probabilities[0], score > self._threshold(threshold), score)
        probs = self.head.predict(out)[0] if self.head is not None else out[0]
        if world is None:
            return Verdict(probs)
        calibrated = calibrate(probs, world.temperature)
        score = -float(calibrated.max())  # higher: more unknown, like the detector's score
        return Verdict(calibrated, score > self._threshold(-world.msp_threshold), score)

    def _threshold(self, fitted: float) -> float:
        return fitted if self.unknown_threshold is None else self.unknown_threshold

    def probabilities(self, model_input: np.ndarray) -> np.ndarray:
        return self.judge(model_input).probabilities

    def classify(self, source) -> np.ndarray:
        return self.probabilities(self.model_input(source))


def calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of a fused model -> the same at `temperature` (softmax of log p / T is exact)."""
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))
    return calibrated_probabilities(logits[None], temperature)[0].astype(np.float32)


def open_predictor(
    bundle_dir,
    fmt: str | None = None,
    threads: int | None = None,
    unknown: bool = True,
    unknown_threshold: float | None = None,
) -> Predictor:
    """Fused model, or base + head: a device head from `update-head`, or the exported head when its
    open-world statistics ask for base features (and the bundle has the split form)."""
    threads = default_threads() if threads is None else threads
    bundle = load_bundle(bundle_dir)
    if fmt is not None and fmt not in bundle.models:
        raise BundleError(
            f"--format {fmt} is not in this bundle; choose one of: {', '.join(fused_formats(bundle)) or 'none'}"
        )
    has_pointer = headstore.read_pointer(bundle) is not None
    wants_world = unknown and "openworld" in bundle.manifest
    active = headstore.active_head(bundle) if has_pointer or (wants_world and "head" in bundle.manifest) else None
    world = active.openworld if active is not None and unknown else None
    if wants_world and "head" not in bundle.manifest:  # fused models only: the top-probability test
        world = OpenWorld.load(bundle.path_of(bundle.manifest["openworld"]))
    if active is not None and active.is_device_head:
        chosen = choose_base_format(bundle, fmt, active.record.get("base"))
        model = _open(bundle, chosen, threads, "base")
        return Predictor(
            bundle, chosen, model, active.head, active.description, list(active.head.classes), world, unknown_threshold
        )
    chosen = choose_format(bundle, fmt)
    base = formats.BASE_PREFIX + chosen
    if world is not None and base in bundle.models and _runs_here(bundle, base):  # features for the detector
        model = _open(bundle, base, threads, "base")
        return Predictor(
            bundle, base, model, active.head, "exported head.npz", bundle.classes, world, unknown_threshold
        )
    model = _open(bundle, chosen, threads, "fused")
    return Predictor(bundle, chosen, model, None, "fused model", bundle.classes, world, unknown_threshold)


def _runs_here(bundle: Bundle, fmt: str) -> bool:
    return interpreter.runtime_available(interpreter.runtime_of(fmt, bundle.models[fmt]))


def _open(bundle: Bundle, fmt: str, threads: int, role: str) -> interpreter.Model:
    entry = bundle.models[fmt]
    return interpreter.open_model(bundle.model_path(fmt), interpreter.runtime_of(fmt, entry), threads, role)
