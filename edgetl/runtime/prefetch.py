"""Decode the next images on a background thread while the current one is on the interpreter.

Why: on a fast CPU the JPEG decode + resize of a 500x375 photo costs about as much as the
int8 MobileNetV2 call itself. Pillow and the TFLite / onnxruntime calls release the GIL, so
one decoder thread overlaps the two and a folder run costs ~max(decode, infer) per image
instead of their sum. Single-image latency is unchanged; order and per-item errors are kept.
Memory stays flat: at most `depth` decoded tensors wait in the queue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_END = object()


@dataclass
class Decoded:
    """One item and what decoding it gave: a value, or the exception it raised (re-raised or reported by the caller)."""

    item: Any
    value: Any = None
    error: BaseException | None = None
    decode_ms: float = 0.0


def prefetched(
    items: Iterable[Any], decode: Callable[[Any], Any], depth: int = 2, skip: Callable[[Any], bool] = lambda item: False
) -> Iterator[Decoded]:
    """Yield Decoded(item, decode(item)) in order, decoding up to `depth` items ahead on a thread.

    Items for which `skip(item)` is true are passed through undecoded. An exception raised by
    the `items` iterator itself is re-raised here, at its position in the sequence.
    """
    if depth < 1:
        for item in items:
            yield _decode(item, decode, skip)
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if stop.is_set() or not put(_decode(item, decode, skip)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put((_END, exc))
            return
        put((_END, None))

    worker = threading.Thread(target=work, name="edgetl-decode", daemon=True)
    worker.start()
    try:
        while True:
            entry = slots.get()
            if isinstance(entry, tuple) and entry and entry[0] is _END:
                if entry[1] is not None:
                    raise entry[1]
                return
            yield entry
    finally:
        stop.set()
        deadline = time.monotonic() + 2.0  # a worker blocked in `items` (e.g. stdin) is a daemon: left behind
        while worker.is_alive() and time.monotonic() < deadline:
            try:
                slots.get_nowait()  # unblock a worker waiting on a full queue
            except queue.Empty:
                worker.join(0.05)


def _decode(item: Any, decode: Callable[[Any], Any], skip: Callable[[Any], bool]) -> Decoded:
    if skip(item):
        return Decoded(item)
    t0 = time.perf_counter()
    try:
        value = decode(item)
    except Exception as exc:  # noqa: BLE001 - the caller decides which errors are per-item
        return Decoded(item, None, exc, (time.perf_counter() - t0) * 1000.0)
    return Decoded(item, value, None, (time.perf_counter() - t0) * 1000.0)
