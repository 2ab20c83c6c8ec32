"""Where images come from: paths (files, folders, globs, `-` = paths on stdin) or a camera.

Paths are expanded lazily, so `find ... | edgetl run BUNDLE -` streams and a folder of a
million images is never listed twice in memory. A SOURCE that matches nothing becomes a
per-item error (reported, run continues), like a corrupt image.

Cameras sit behind one small FrameSource interface (`read() -> RGB uint8 HxWx3`, `close()`),
so the camera loop is tested with a fake source and OpenCV / Picamera2 stay optional.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol, TextIO

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.image import list_images

GLOB_CHARS = set("*?[")


class CameraError(EdgetlError):
    """A camera cannot be opened, or stopped delivering frames for good."""


class FrameError(Exception):
    """One frame could not be read (the loop retries; not user-facing on its own)."""


@dataclass(frozen=True)
class PathItem:
    """One SOURCE entry: a path to classify, or the reason it cannot be (reported per item)."""

    path: str
    error: str | None = None


def _expand_one(source: str) -> Iterator[PathItem]:
    if os.path.isdir(source):
        found = list_images(source)
        if not found:
            yield PathItem(source, "a folder with no image files")
        for path in found:
            yield PathItem(str(path))
    elif os.path.exists(source) or os.path.islink(source):
        yield PathItem(source)  # an explicit file is always tried, whatever its suffix
    elif GLOB_CHARS & set(source):
        matches = sorted(glob.iglob(source, recursive=True))
        if not matches:
            yield PathItem(source, "no files match this pattern")
        for match in matches:
            if os.path.isdir(match):
                yield from _expand_one(match)
            elif not os.path.basename(match).startswith("."):
                yield PathItem(match)
    else:
        yield PathItem(source, "no such file or folder")


def iter_paths(sources: Iterable[str], stdin: TextIO | None = None) -> Iterator[PathItem]:
    """SOURCE arguments -> PathItems in order; `-` reads one path per line from stdin."""
    for source in sources:
        if source == "-":
            for line in stdin if stdin is not None else sys.stdin:
                line = line.rstrip("\r\n")
                if line.strip():
                    yield from _expand_one(line)
        else:
            yield from _expand_one(source)


# ------------------------------------------------------------------------------- cameras
class FrameSource(Protocol):
    name: str

    def read(self) -> np.ndarray:
        """The next frame as RGB uint8 (H, W, 3); raise FrameError if this one failed."""

    def close(self) -> None: ...


class OpenCVCamera:
    def __init__(self, index: int):
        import cv2

        self._cv2 = cv2
        self.name = f"camera {index}"
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            self.cap.release()
            raise CameraError(f"no camera at index {index} (OpenCV could not open it); list cameras with `v4l2-ctl --list-devices`")

    def read(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok or frame is None:
            raise FrameError("OpenCV returned no frame")
        return frame[:, :, ::-1]  # OpenCV delivers BGR

    def close(self) -> None:
        self.cap.release()


class PiCamera:
    def __init__(self, index: int = 0, size: tuple[int, int] = (640, 480)):
        from picamera2 import Picamera2  # type: ignore[import-not-found]

        self.name = f"picamera {index}"
        try:
            self.cam = Picamera2(index)
            self.cam.configure(self.cam.create_preview_configuration(main={"format": "RGB888", "size": size}))
            self.cam.start()
        except (IndexError, RuntimeError) as exc:
            raise CameraError(f"cannot open Picamera2 camera {index}: {str(exc).splitlines()[0][:100]}") from None

    def read(self) -> np.ndarray:
        try:
            frame = self.cam.capture_array("main")
        except RuntimeError as exc:
            raise FrameError(str(exc)) from None
        return frame[:, :, ::-1]  # Picamera2's "RGB888" is laid out B, G, R in memory

    def close(self) -> None:
        self.cam.close()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def open_camera(spec: str) -> FrameSource:
    """`--camera N` -> OpenCV device N (or Picamera2 camera N without OpenCV); `picamera` -> Picamera2."""
    if spec == "picamera":
        if not _has("picamera2"):
            raise CameraError("--camera picamera needs Picamera2: `sudo apt install python3-picamera2` "
                              "and a venv made with --system-site-packages")
        return PiCamera(0)
    try:
        index = int(spec)
    except ValueError:
        raise CameraError(f"--camera must be a device index (0, 1, ...) or 'picamera', got {spec!r}") from None
    if _has("cv2"):
        return OpenCVCamera(index)
    if _has("picamera2"):
        print(f"note: OpenCV is not installed; using Picamera2 camera {index}", file=sys.stderr)
        return PiCamera(index)
    raise CameraError("no camera library installed: `pip install opencv-python-headless` "
                      "or `sudo apt install python3-picamera2`")


@dataclass(frozen=True)
class Retry:
    """Backoff for failing frames: wait first, doubling up to max_wait; give up after max_failures in a row."""

    max_failures: int = 8
    first_wait: float = 0.1
    max_wait: float = 2.0


def frames(source: FrameSource, max_frames: int | None = None, retry: Retry = Retry(),
           sleep: Callable[[float], None] = time.sleep,
           on_failure: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB frame) forever (or max_frames); retries failing reads with backoff.

    Raises CameraError once `retry.max_failures` reads in a row have failed. Holds no history,
    so memory stays flat however long it runs.
    """
    count = failures = 0
    while max_frames is None or count < max_frames:
        try:
            frame = source.read()
        except FrameError as exc:
            failures += 1
            if on_failure is not None:
                on_failure(failures, str(exc))
            if failures >= retry.max_failures:
                raise CameraError(f"{source.name} delivered no frame {failures} times in a row ({exc}); "
                                  "is it unplugged or used by another process?") from None
            sleep(min(retry.max_wait, retry.first_wait * 2 ** (failures - 1)))
            continue
        failures = 0
        count += 1
        yield count, frame

