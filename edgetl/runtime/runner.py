"""`edgetl run`: classify files or camera frames with a bundle, numpy + an interpreter only.

    image/frame -> load_rgb(size) -> model input (preprocess(scale, offset), as in training;
                                     for a quantized input, the same values from a 256-entry table)
                -> fused model ------------------------------------> probabilities
                -> base model -> NumpyHead (after `update-head`) ---> probabilities

Nothing here keeps per-item results: each prediction is written out and dropped, so memory
stays flat over days of camera frames.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import numpy as np
from PIL import Image

from edgetl.errors import BundleError, ImageError
from edgetl.runtime import formats, headstore, interpreter
from edgetl.runtime.bundle import Bundle, load_bundle
from edgetl.runtime.prefetch import prefetched
from edgetl.runtime.results import format_result

if TYPE_CHECKING:
    from edgetl.runtime.headwatch import HeadWatch
from edgetl.runtime.frames import CameraError, FrameSource, Retry, frames
from edgetl.runtime.paths import PathItem


def is_base(fmt: str, entry: dict) -> bool:
    return entry.get("role") == "base" or formats.is_base(fmt)


def fused_formats(bundle: Bundle) -> list[str]:
    return [f for f, e in bundle.models.items() if not is_base(f, e) and f != "keras"]


def _pick(bundle: Bundle, candidates: Iterable[str], what: str) -> str:
    for fmt in candidates:
        if fmt in bundle.models and interpreter.runtime_available(interpreter.runtime_of(fmt, bundle.models[fmt])):
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


@dataclass
class Predictor:
    """A bundle ready to classify: `probabilities(model_input(source))` for one image."""

    bundle: Bundle
    fmt: str
    model: interpreter.Model
    head: headstore.NumpyHead | None = None
    head_description: str = "fused model"
    classes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.bundle.input_size

    def model_input(self, source) -> np.ndarray:
        """Path / file / PIL image -> what the interpreter takes: the (1, H, W, 3) tensor training
        computes (load_rgb + preprocess with the manifest's scale/offset), quantized or cast."""
        return self.model.from_pixels(self.bundle.pixels(source)[None], self.bundle.scale, self.bundle.offset)

    def probabilities(self, model_input: np.ndarray) -> np.ndarray:
        out = self.model.outputs(model_input)
        if self.head is not None:
            out = self.head.predict(out)
        return out[0]

    def classify(self, source) -> np.ndarray:
        return self.probabilities(self.model_input(source))


def open_predictor(bundle_dir, fmt: str | None = None, threads: int | None = None) -> Predictor:
    """Fused model, or base + device head when `update-head` swapped one in."""
    threads = default_threads() if threads is None else threads
    bundle = load_bundle(bundle_dir)
    if fmt is not None and fmt not in bundle.models:
        raise BundleError(
            f"--format {fmt} is not in this bundle; choose one of: {', '.join(fused_formats(bundle)) or 'none'}"
        )
    active = headstore.active_head(bundle) if headstore.read_pointer(bundle) is not None else None
    if active is not None and active.is_device_head:
        chosen = choose_base_format(bundle, fmt, active.record.get("base"))
        entry = bundle.models[chosen]
        model = interpreter.open_model(
            bundle.model_path(chosen), interpreter.runtime_of(chosen, entry), threads, "base"
        )
        return Predictor(bundle, chosen, model, active.head, active.description, list(active.head.classes))
    chosen = choose_format(bundle, fmt)
    entry = bundle.models[chosen]
    model = interpreter.open_model(bundle.model_path(chosen), interpreter.runtime_of(chosen, entry), threads, "fused")
    return Predictor(bundle, chosen, model, None, "fused model", bundle.classes)


@dataclass
class Summary:
    ok: int = 0
    failed: int = 0
    failed_reads: int = 0
    skipped: int = 0  # camera frames replaced by a newer one while the last was classified
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def camera_line(self) -> str:
        rate = self.ok / self.seconds if self.seconds > 0 else 0.0
        return (
            f"summary: {self.ok} frames in {self.seconds:.1f} s ({rate:.1f} fps), "
            f"{self.failed} failed, {self.failed_reads} failed reads{_skipped(self.skipped)}"
        )


def run_paths(
    predictor: Predictor,
    items: Iterable[PathItem],
    out: TextIO,
    err: TextIO,
    k: int = 1,
    as_json: bool = False,
    prefetch: int = 2,
) -> Summary:
    """Classify each path; a bad one gets `error: <path>: <reason>` on `err` and the run goes on.

    The next `prefetch` images are decoded on a background thread while the current one is on
    the interpreter (edgetl.runtime.prefetch; 0: decode inline). latency_ms is this image's
    own decode + inference time, without time spent waiting in the queue.
    """
    summary = Summary()
    start = time.perf_counter()
    for got in prefetched(
        items, lambda item: predictor.model_input(item.path), prefetch, lambda item: item.error is not None
    ):
        item = got.item
        if item.error is not None:
            summary.failed += 1
            print(f"error: {item.path}: {item.error}", file=err, flush=True)
            continue
        if got.error is not None:
            if not isinstance(got.error, ImageError):
                raise got.error
            summary.failed += 1
            reason = str(got.error)
            reason = reason[len(item.path) + 2 :] if reason.startswith(f"{item.path}: ") else reason
            print(f"error: {item.path}: {reason}", file=err, flush=True)
            continue
        t0 = time.perf_counter()
        probs = predictor.probabilities(got.value)
        latency = got.decode_ms + (time.perf_counter() - t0) * 1000.0
        summary.ok += 1
        print(format_result("path", item.path, probs, predictor.classes, k, latency, as_json), file=out, flush=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _skipped(count: int) -> str:
    return f", {count} older frames skipped" if count else ""


def run_camera(
    predictor: Predictor,
    source: FrameSource,
    out: TextIO,
    err: TextIO,
    k: int = 1,
    as_json: bool = False,
    max_frames: int | None = None,
    fps_every: float = 10.0,
    retry: Retry = Retry(),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
    head_watch: HeadWatch | None = None,
) -> Summary:
    """Classify frames until max_frames, Ctrl-C (a clean stop) or a camera gone for good (CameraError).

    With `head_watch`, a head swapped in meanwhile (update-head, rollback-head) is used from the next frame.
    """
    summary = Summary()
    start = clock()

    def on_failure(in_a_row: int, reason: str) -> None:
        summary.failed_reads += 1
        print(f"warning: {source.name}: frame read failed ({in_a_row} in a row): {reason}", file=err, flush=True)

    gone: CameraError | None = None
    fps = FpsReport(clock, fps_every, err, start)
    try:
        for number, frame in frames(source, max_frames, retry, sleep, on_failure):
            t0 = clock()
            try:
                probs = predictor.classify(Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)))
            except (ImageError, ValueError, TypeError) as exc:
                summary.failed += 1
                print(f"error: frame {number}: {exc}", file=err, flush=True)
                continue
            summary.ok += 1
            latency = (clock() - t0) * 1000.0
            print(format_result("frame", number, probs, predictor.classes, k, latency, as_json), file=out, flush=True)
            if head_watch is not None:
                predictor = head_watch.check(predictor, err)
            fps.frame(summary, getattr(source, "skipped", 0))
    except KeyboardInterrupt:
        print("stopped (Ctrl-C)", file=err, flush=True)
    except CameraError as exc:
        gone = exc
    finally:
        source.close()
        summary.seconds = clock() - start
        summary.skipped = getattr(source, "skipped", 0)
    print(summary.camera_line(), file=err, flush=True)
    if gone is not None:
        raise gone
    return summary


class FpsReport:
    """An `fps:` line on stderr every `every` seconds of a camera run (0: never)."""

    def __init__(self, clock: Callable[[], float], every: float, err: TextIO, start: float):
        self.clock, self.every, self.err = clock, every, err
        self.last, self.frames = start, 0

    def frame(self, summary: Summary, skipped: int) -> None:
        self.frames += 1
        now = self.clock()
        if self.every and now - self.last >= self.every:
            print(
                f"fps: {self.frames / (now - self.last):.1f} ({summary.ok} frames, {summary.failed_reads} "
                f"failed reads{_skipped(skipped)})",
                file=self.err,
                flush=True,
            )
            self.last, self.frames = now, 0
