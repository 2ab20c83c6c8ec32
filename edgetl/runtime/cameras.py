"""Camera frames to classify: OpenCV (device index, /dev/video*, video file, stream URL) or Picamera2.

Cameras sit behind one small FrameSource interface (`read() -> RGB uint8 HxWx3`, `close()`),
so the camera loop is tested with a fake source and OpenCV / Picamera2 stay optional.
OpenCV also opens device paths, video files and stream URLs, which is how the real wrapper
is tested end to end (a short video file as the camera). Live sources are read on their own
thread (ThreadedCamera), so the classifier always gets the newest frame.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator

import numpy as np

from edgetl.doctor import numpy_in  # metadata only: no import of anything heavy
from edgetl.runtime.frames import CameraError, EndOfStream, FrameError, FrameSource, ThreadedCamera

# Stream URLs (rtsp://, http://) give up opening after 10 s and reading a frame after 5 s. FFmpeg's
# defaults, 30 s each, would leave a live classifier silent for minutes behind a stalled Wi-Fi camera.
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 5_000


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
                raise CameraError(
                    f"no camera at index {spec} (OpenCV could not open it); list cameras with `v4l2-ctl --list-devices`"
                )
            what = (
                "is it a video file OpenCV can decode?"
                if self.is_file
                else "is the stream up and the URL right?"
                if "://" in spec
                else "is it a video capture device? list them with `v4l2-ctl --list-devices`"
            )
            raise CameraError(f"cannot open {self.name} (OpenCV could not open it); {what}")

    def _open(self):
        cv2 = self._cv2
        with _quiet_opencv(cv2):  # its own WARN lines would follow our one-line error
            if self.is_stream and _ffmpeg_backend(cv2):  # FFmpeg takes the timeouts (other backends refuse them)
                return cv2.VideoCapture(
                    self._spec,
                    cv2.CAP_ANY,
                    [
                        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                        STREAM_OPEN_TIMEOUT_MS,
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                        STREAM_READ_TIMEOUT_MS,
                    ],
                )
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


def _ffmpeg_backend(cv2) -> bool:
    registry = getattr(cv2, "videoio_registry", None)
    return (
        hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC")
        and registry is not None
        and bool(registry.hasBackend(cv2.CAP_FFMPEG))
    )


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
            raise CameraError(
                f"{what} in {site} is built for NumPy {system}, but NumPy {np.__version__} "
                f"is loaded (pip put it in the venv): run `pip install 'numpy=={major}.*'` in the venv"
            )
    try:
        return importlib.import_module(name)
    except Exception as exc:  # compiled dependencies fail in many ways (ValueError, ImportError, RuntimeError)
        text = str(exc).strip().splitlines()
        raise CameraError(
            f"cannot import {what} ({text[0][:160] if text else type(exc).__name__}); "
            f"check it works with `python3 -c 'import {name}'`"
        ) from None


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


CAMERA_SPECS = (
    "a device index (0, 1, ...), 'picamera', a device path (/dev/video0), a video file or a stream URL (rtsp://...)"
)


def open_camera(spec: str) -> FrameSource:
    """`--camera SPEC` -> a FrameSource.

    N -> OpenCV device N (or Picamera2 camera N without OpenCV); `picamera` -> Picamera2;
    a device path, a video file or a URL with '://' -> OpenCV (needs opencv-python-headless).
    Cameras and streams are read on a ThreadedCamera (OpenCV's: newest frame only); a video file
    is read frame by frame.
    """
    if spec == "picamera":
        if not _has("picamera2"):
            raise CameraError(
                "--camera picamera needs Picamera2: `sudo apt install python3-picamera2` "
                "and a venv made with --system-site-packages"
            )
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
    raise CameraError(
        "no camera library installed: `pip install opencv-python-headless` or `sudo apt install python3-picamera2`"
    )


def _open_by_name(spec: str) -> FrameSource:
    """A device path, video file or stream URL: checked here so a typo is one clear line."""
    shown = _redact(spec)
    if "://" not in spec:
        if not os.path.exists(spec):
            kind = "no such device" if spec.startswith("/dev/") else "no such file"
            raise CameraError(f"--camera {shown!r}: {kind}; give {CAMERA_SPECS}")
        if os.path.isdir(spec):
            raise CameraError(
                f"--camera {shown!r} is a folder; to classify its images give it as a SOURCE, not --camera"
            )
    if not _has("cv2"):
        raise CameraError(f"--camera {shown!r} needs OpenCV: `pip install opencv-python-headless` (the `camera` extra)")
    camera = OpenCVCamera(spec)
    return camera if camera.is_file else ThreadedCamera(camera)  # a file's every frame, a live source's newest
