"""Where images come from: paths (files, folders, globs, `-` = paths on stdin) or a camera.

Paths are expanded lazily, so `find ... | edgetl run BUNDLE -` streams and a folder of a
million images is never listed twice in memory. A SOURCE that matches nothing becomes a
per-item error (reported, run continues), like a corrupt image.

Cameras sit behind one small FrameSource interface (`read() -> RGB uint8 HxWx3`, `close()`),
so the camera loop is tested with a fake source and OpenCV / Picamera2 stay optional.
OpenCV also opens device paths, video files and stream URLs, which is how the real wrapper
is tested end to end (a short video file as the camera).
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.util
import os
import re
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol, TextIO

import numpy as np

from edgetl.doctor import numpy_in  # metadata only: no import of anything heavy
from edgetl.errors import EdgetlError
from edgetl.runtime.image import list_images

GLOB_CHARS = set("*?[")
# Stream URLs (rtsp://, http://) give up opening after 10 s and reading a frame after 5 s. FFmpeg's
# defaults, 30 s each, would leave a live classifier silent for minutes behind a stalled Wi-Fi camera.
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 5_000
# A camera read that has not returned a frame after this long counts as a failed read (and is
# retried): longer than a stream's reopen (open + read timeouts), so it only fires on a stuck read.
FRAME_TIMEOUT_S = 20.0


class CameraError(EdgetlError):
    """A camera cannot be opened, or stopped delivering frames for good."""


class FrameError(Exception):
    """One frame could not be read (the loop retries; not user-facing on its own)."""


class EndOfStream(Exception):
    """The source has no more frames, as when a video file ends: the loop stops cleanly."""


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
        """The next frame as RGB uint8 (H, W, 3); raise FrameError if this one failed, EndOfStream after the last."""

    def close(self) -> None: ...


class OpenCVCamera:
    """cv2.VideoCapture on a device index, a device path, a video file or a stream URL.

    OpenCV takes all four the same way, so a video file stands in for a camera in tests and
    for replaying a recording on the device. After a failed read, a live source is reopened
    before the next one.
    """

    def __init__(self, spec: int | str):
        cv2 = _import_camera_module("cv2", "OpenCV")
        self._cv2 = cv2
        self._spec = spec
        self._failed = False  # the last read failed: reopen before the next
        self.is_file = isinstance(spec, str) and "://" not in spec and not spec.startswith("/dev/")
        self.is_stream = isinstance(spec, str) and bool(re.match(r"[a-z][a-z0-9+.-]*://", spec, re.IGNORECASE))
        self.name = f"camera {spec}" if isinstance(spec, int) else f"camera {_redact(spec)!r}"
        self.cap = self._open()
        if not self.cap.isOpened():
            self.cap.release()
            if isinstance(spec, int):
                raise CameraError(f"no camera at index {spec} (OpenCV could not open it); "
                                  "list cameras with `v4l2-ctl --list-devices`")
            what = ("is it a video file OpenCV can decode?" if self.is_file else
                    "is the stream up and the URL right?" if "://" in spec else
                    "is it a video capture device? list them with `v4l2-ctl --list-devices`")
            raise CameraError(f"cannot open {self.name} (OpenCV could not open it); {what}")

    def _open(self):
        cv2 = self._cv2
        with _quiet_opencv(cv2):  # its own WARN lines would follow our one-line error
            if self.is_stream and _ffmpeg_backend(cv2):  # FFmpeg takes the timeouts (other backends refuse them)
                return cv2.VideoCapture(self._spec, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS,
                                                                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_READ_TIMEOUT_MS])
            return cv2.VideoCapture(self._spec)

    def read(self) -> np.ndarray:
        reopened = ""
        if self._failed:
            # A capture whose stream dropped or whose device was unplugged never delivers again
            # (cap.read() fails forever); a new one picks up the stream or the re-plugged device.
            self.cap.release()
            self.cap = self._open()
            if not self.cap.isOpened():
                raise FrameError("reopening it failed")
            reopened = " (after reopening it)"
        with _quiet_opencv(self._cv2):  # "Stream timeout triggered": our warning line says it
            ok, frame = self.cap.read()
        if not ok or frame is None:
            if self.is_file:  # a file does not come back like an unplugged camera: it has ended
                raise EndOfStream(self.name)
            self._failed = True
            raise FrameError(f"OpenCV returned no frame{reopened}")
        self._failed = False
        return frame[:, :, ::-1]  # OpenCV delivers BGR

    def close(self) -> None:
        self.cap.release()


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

    def __init__(self, source: FrameSource, newest_only: bool = True, frame_timeout: float | None = None,
                 join_timeout: float = 6.0):
        self.source = source
        self.name = source.name
        self.newest_only = newest_only
        self.skipped = 0  # frames replaced by a newer one before they were handed out
        self.frame_timeout = FRAME_TIMEOUT_S if frame_timeout is None else frame_timeout
        self._join_timeout = join_timeout  # longer than a stream read may block (STREAM_READ_TIMEOUT_MS)
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._error: BaseException | None = None
        self._paused = False  # the thread waits for the next read() (after an error; after each frame without newest_only)
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
            self.source.close()          # and the process exit frees the camera anyway


def _ffmpeg_backend(cv2) -> bool:
    registry = getattr(cv2, "videoio_registry", None)
    return (hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC") and registry is not None
            and bool(registry.hasBackend(cv2.CAP_FFMPEG)))


@contextlib.contextmanager
def _quiet_opencv(cv2) -> Iterator[None]:
    """Silence OpenCV's warnings around an open or a read (restored afterwards); a no-op on OpenCVs without it."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None or not hasattr(log, "getLogLevel"):
        yield
        return
    previous = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        log.setLogLevel(previous)


def _redact(spec: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://user:***@host/x, so passwords stay out of logs."""
    if "://" not in spec:
        return spec
    parts = urllib.parse.urlsplit(spec)
    if parts.password is None:
        return spec
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _import_camera_module(name: str, what: str):
    """Import Picamera2 or OpenCV, or raise a one-line CameraError saying why it cannot be.

    On a Pi or a Jetson these often come from apt (python3-picamera2, JetPack's OpenCV), with
    compiled parts built for the system's NumPy. A --system-site-packages venv into which pip
    put another NumPy major (ml_dtypes and opencv-python-headless require NumPy 2; Bookworm
    ships 1.24) cannot import them: NumPy prints its own traceback, or simplejpeg raises
    "numpy.dtype size changed". So the NumPy installed beside the module is compared with the
    loaded one before importing, and the user gets the fix.
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a stand-in without a spec (tests)
        spec = None
    site = os.path.dirname(os.path.dirname(spec.origin)) if spec is not None and spec.origin else None
    if site is not None:
        system = numpy_in(site)
        major = system.split(".")[0] if system else None
        if major is not None and major != np.__version__.split(".")[0]:
            raise CameraError(f"{what} in {site} is built for NumPy {system}, but NumPy {np.__version__} "
                              f"is loaded (pip put it in the venv): run `pip install 'numpy=={major}.*'` in the venv")
    try:
        return importlib.import_module(name)
    except Exception as exc:  # compiled dependencies fail in many ways (ValueError, ImportError, RuntimeError)
        text = str(exc).strip().splitlines()
        raise CameraError(f"cannot import {what} ({text[0][:160] if text else type(exc).__name__}); "
                          f"check it works with `python3 -c 'import {name}'`") from None


class PiCamera:
    def __init__(self, index: int = 0, size: tuple[int, int] = (640, 480)):
        Picamera2 = _import_camera_module("picamera2", "Picamera2").Picamera2

        self.name = f"picamera {index}"
        try:
            self.cam = Picamera2(index)
        except IndexError:  # Picamera2 indexes its list of cameras
            raise CameraError(f"no Picamera2 camera {index}; list them with `rpicam-hello --list-cameras`") from None
        except RuntimeError as exc:
            raise CameraError(f"cannot open Picamera2 camera {index}: {str(exc).splitlines()[0][:100]}") from None
        try:
            self.cam.configure(self.cam.create_preview_configuration(main={"format": "RGB888", "size": size}))
            self.cam.start()
        except RuntimeError as exc:
            self.cam.close()
            raise CameraError(f"cannot start Picamera2 camera {index}: {str(exc).splitlines()[0][:100]}") from None

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


CAMERA_SPECS = ("a device index (0, 1, ...), 'picamera', a device path (/dev/video0), "
                "a video file or a stream URL (rtsp://...)")


def open_camera(spec: str) -> FrameSource:
    """`--camera SPEC` -> a FrameSource.

    N -> OpenCV device N (or Picamera2 camera N without OpenCV); `picamera` -> Picamera2;
    a device path, a video file or a URL with '://' -> OpenCV (needs opencv-python-headless).
    Cameras and streams are read on a ThreadedCamera (OpenCV's: newest frame only); a video file
    is read frame by frame.
    """
    if spec == "picamera":
        if not _has("picamera2"):
            raise CameraError("--camera picamera needs Picamera2: `sudo apt install python3-picamera2` "
                              "and a venv made with --system-site-packages")
        return ThreadedCamera(PiCamera(0), newest_only=False)  # Picamera2 keeps only its newest frame
    try:
        index = int(spec)
    except ValueError:
        return _open_by_name(spec)
    if _has("cv2"):
        return ThreadedCamera(OpenCVCamera(index))
    if _has("picamera2"):
        print(f"note: OpenCV is not installed; using Picamera2 camera {index}", file=sys.stderr)
        return ThreadedCamera(PiCamera(index), newest_only=False)
    raise CameraError("no camera library installed: `pip install opencv-python-headless` "
                      "or `sudo apt install python3-picamera2`")


def _open_by_name(spec: str) -> FrameSource:
    """A device path, video file or stream URL: checked here so a typo is one clear line."""
    shown = _redact(spec)
    if "://" not in spec:
        if not os.path.exists(spec):
            kind = "no such device" if spec.startswith("/dev/") else "no such file"
            raise CameraError(f"--camera {shown!r}: {kind}; give {CAMERA_SPECS}")
        if os.path.isdir(spec):
            raise CameraError(f"--camera {shown!r} is a folder; to classify its images give it as a SOURCE, "
                              "not --camera")
    if not _has("cv2"):
        raise CameraError(f"--camera {shown!r} needs OpenCV: `pip install opencv-python-headless` "
                          "(the `camera` extra)")
    camera = OpenCVCamera(spec)
    return camera if camera.is_file else ThreadedCamera(camera)  # a file's every frame, a live source's newest


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
                raise CameraError(f"{source.name} delivered no frame {failures} times in a row ({exc}); "
                                  "is it unplugged or used by another process?") from None
            sleep(min(retry.max_wait, retry.first_wait * 2 ** (failures - 1)))
            continue
        failures = 0
        count += 1
        yield count, frame

