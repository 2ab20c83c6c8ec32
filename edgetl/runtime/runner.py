"""`edgetl run`: classify files or camera frames with a bundle, numpy + an interpreter only.

Each image goes through a Predictor (edgetl.runtime.predictor) and its Verdict is printed
(edgetl.runtime.results). Nothing here keeps per-item results: each prediction is written out and dropped, so memory
stays flat over days of camera frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import numpy as np
from PIL import Image

from edgetl.errors import ImageError
from edgetl.runtime.predictor import Predictor
from edgetl.runtime.prefetch import prefetched
from edgetl.runtime.results import format_result

if TYPE_CHECKING:
    from edgetl.runtime.headwatch import HeadWatch
    from edgetl.runtime.monitor import RunMonitor
from edgetl.runtime.frames import CameraError, FrameSource, Retry, frames
from edgetl.runtime.paths import PathItem


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
    monitor: RunMonitor | None = None,
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
        verdict = predictor.judge(got.value)
        latency = got.decode_ms + (time.perf_counter() - t0) * 1000.0
        summary.ok += 1
        print(format_result("path", item.path, verdict, predictor.classes, k, latency, as_json), file=out, flush=True)
        if monitor is not None:
            monitor.observe(verdict, item.path, item.path)
    summary.seconds = time.perf_counter() - start
    return summary


def _skipped(count: int) -> str:
    return f", {count} older frames skipped" if count else ""


def _after_frame(predictor, verdict, name, frame, monitor, head_watch, err) -> Predictor:
    """Keep the frame if uncertain, watch drift; -> the predictor for the next frame (a swapped-in head)."""
    if monitor is not None:
        monitor.observe(verdict, name, frame, camera=True)
    if head_watch is not None:
        changed = head_watch.check(predictor, err)
        if changed is not predictor and monitor is not None:
            monitor.head_changed(changed)
        predictor = changed
    return predictor


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
    monitor: RunMonitor | None = None,
) -> Summary:
    """Classify frames until max_frames, Ctrl-C (a clean stop) or a camera gone for good (CameraError).

    With `head_watch`, a head swapped in meanwhile (update-head, rollback-head) is used from the next frame;
    with `monitor`, uncertain frames are kept and drift is watched (edgetl.runtime.monitor).
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
                image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
                verdict = predictor.judge(predictor.model_input(image))
            except (ImageError, ValueError, TypeError) as exc:
                summary.failed += 1
                print(f"error: frame {number}: {exc}", file=err, flush=True)
                continue
            summary.ok += 1
            latency = (clock() - t0) * 1000.0
            print(format_result("frame", number, verdict, predictor.classes, k, latency, as_json), file=out, flush=True)
            predictor = _after_frame(predictor, verdict, f"frame {number}", frame, monitor, head_watch, err)
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
