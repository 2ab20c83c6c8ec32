"""Reading frames from a camera: the newest-frame thread and the retry loop.

A FrameSource (edgetl.runtime.cameras: OpenCV, Picamera2; tests: fakes) gives one RGB frame
per `read()`. ThreadedCamera reads a live source on its own thread and hands the classifier
its newest frame; `frames()` retries failing reads with backoff and ends the run when the
camera is gone for good. Neither keeps history, so memory stays flat however long it runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgetl.errors import EdgetlError

# A camera read that has not returned a frame after this long counts as a failed read (and is
# retried): longer than a stream's reopen (open + read timeouts), so it only fires on a stuck read.
FRAME_TIMEOUT_S = 20.0


class CameraError(EdgetlError):
    """A camera cannot be opened, or stopped delivering frames for good."""


class FrameError(Exception):
    """One frame could not be read (the loop retries; not user-facing on its own)."""


class EndOfStream(Exception):
    """The source has no more frames, as when a video file ends: the loop stops cleanly."""


class FrameSource(Protocol):
    name: str

    def read(self) -> np.ndarray:
        """The next frame as RGB uint8 (H, W, 3); raise FrameError if this one failed, EndOfStream after the last."""

    def close(self) -> None: ...


class ThreadedCamera:
    """A camera read on its own thread, so that a read can neither lag behind nor hang the run.

    With `newest_only` (OpenCV's live sources), the thread reads continuously and `read()` gets
    the newest frame. A camera keeps producing frames whether or not the classifier keeps up;
    read in order, a stream falls further behind with every frame (at 5 classifications a
    second, a 25 fps RTSP camera is a minute behind after 75 s) and a V4L2 queue holds frames
    several classifications old. Frames that arrive while one is being classified replace each
    other (`skipped` counts them). Without it (Picamera2, which hands out its newest frame
    itself), the thread reads one frame per `read()`.

    Either way `read()` waits at most `frame_timeout` seconds, then raises FrameError: a
    Picamera2 capture can block forever when the camera stalls, which would freeze a service
    without a word; now the retries run out and the run ends with a CameraError (systemd
    restarts it). After a failed read the thread waits for the next `read()`, so the retries
    and their backoff stay in `frames()`.
    """

    def __init__(
        self,
        source: FrameSource,
        newest_only: bool = True,
        frame_timeout: float | None = None,
        join_timeout: float = 6.0,
    ):
        self.source = source
        self.name = source.name
        self.newest_only = newest_only
        self.skipped = 0  # frames replaced by a newer one before they were handed out
        self.frame_timeout = FRAME_TIMEOUT_S if frame_timeout is None else frame_timeout
        self._join_timeout = join_timeout  # longer than a stream read may block (STREAM_READ_TIMEOUT_MS)
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._error: BaseException | None = None
        self._paused = (
            False  # the thread waits for the next read() (after an error; after each frame without newest_only)
        )
        self._stop = False
        self._done = False  # the thread has ended (the source ended, or close())
        self._thread = threading.Thread(target=self._read_forever, name=f"edgetl {self.name}", daemon=True)
        self._thread.start()

    def _read_forever(self) -> None:
        try:
            self._read_until_stopped()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _read_until_stopped(self) -> None:
        while True:
            frame, error = None, None
            try:
                frame = self.source.read()
            except BaseException as exc:  # FrameError, EndOfStream, or a bug: all go to read()
                error = exc
            with self._cond:
                if self._stop:
                    return
                if error is None:
                    if self._frame is not None:
                        self.skipped += 1
                    self._frame = frame
                    self._paused = not self.newest_only
                else:
                    self._error, self._paused = error, True
                self._cond.notify_all()
                while self._paused and not self._stop:
                    self._cond.wait()
                if self._stop or isinstance(error, EndOfStream):
                    return

    def read(self) -> np.ndarray:
        deadline = time.monotonic() + self.frame_timeout
        with self._cond:
            while True:
                if self._frame is not None:
                    frame, self._frame = self._frame, None
                    return frame
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                if self._paused:  # ask the thread for the next frame
                    self._paused = False
                    self._cond.notify_all()
                if self._done:
                    raise EndOfStream(self.name)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FrameError(f"no frame within {self.frame_timeout:g} s (the camera read is stuck)")
                self._cond.wait(left)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(self._join_timeout)
        if not self._thread.is_alive():  # else it is stuck in a read: releasing under it could crash or hang,
            self.source.close()  # and the process exit frees the camera anyway


@dataclass(frozen=True)
class Retry:
    """Backoff for failing frames: wait first, doubling up to max_wait; give up after max_failures in a row."""

    max_failures: int = 8
    first_wait: float = 0.1
    max_wait: float = 2.0


def frames(
    source: FrameSource,
    max_frames: int | None = None,
    retry: Retry = Retry(),
    sleep: Callable[[float], None] = time.sleep,
    on_failure: Callable[[int, str], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB frame) forever (or max_frames); retries failing reads with backoff.

    Ends when the source raises EndOfStream (a video file played to the end). Raises
    CameraError once `retry.max_failures` reads in a row have failed. Holds no history, so
    memory stays flat however long it runs.
    """
    count = failures = 0
    while max_frames is None or count < max_frames:
        try:
            frame = source.read()
        except EndOfStream:
            return
        except FrameError as exc:
            failures += 1
            if on_failure is not None:
                on_failure(failures, str(exc))
            if failures >= retry.max_failures:
                raise CameraError(
                    f"{source.name} delivered no frame {failures} times in a row ({exc}); "
                    "is it unplugged or used by another process?"
                ) from None
            sleep(min(retry.max_wait, retry.first_wait * 2 ** (failures - 1)))
            continue
        failures = 0
        count += 1
        yield count, frame
