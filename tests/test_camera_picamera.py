"""The Picamera2 adapter (`--camera picamera`, and `--camera N` without OpenCV).

Picamera2 needs libcamera and a CSI camera, so it cannot be installed here. The stand-in below
implements the calls edgetl makes with the behaviour Picamera2 documents: `Picamera2(n)` raises
IndexError for a camera that is not there, and an "RGB888" array is laid out [B, G, R] per pixel.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.runtime import cameras, frames

BGR = {"red": (0, 0, 255), "blue": (255, 0, 0)}  # Picamera2's "RGB888": B, G, R in memory


class FakePicamera2:
    cameras = 1
    instances: list[FakePicamera2] = []

    def __init__(self, camera_num=0):
        if camera_num >= self.cameras:
            raise IndexError("list index out of range")  # what Picamera2 raises for a missing camera
        self.num, self.config, self.started, self.closed, self.calls = camera_num, None, False, False, 0
        self.colours = ["red", "red", "fail", "blue"]
        FakePicamera2.instances.append(self)

    def create_preview_configuration(self, main=None):
        return {"main": dict(main or {})}

    def configure(self, config):
        self.config = config

    def start(self):
        self.started = True

    def capture_array(self, name="main"):
        assert self.started and name == "main" and self.config["main"]["format"] == "RGB888"
        colour = self.colours[self.calls % len(self.colours)]
        self.calls += 1
        if colour == "fail":
            raise RuntimeError("Camera frontend has timed out!")
        width, height = self.config["main"]["size"]
        return np.full((height, width, 3), BGR[colour], np.uint8)

    def close(self):
        self.closed = True


@pytest.fixture
def picamera2(monkeypatch):
    module = types.ModuleType("picamera2")
    module.__spec__ = importlib.machinery.ModuleSpec("picamera2", None)
    module.Picamera2 = FakePicamera2
    FakePicamera2.instances = []
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_picamera_frames_are_classified_as_rgb(bundle, picamera2):
    res = cli("run", bundle, "--camera", "picamera", "--json", "--max-frames", 4)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["red", "red", "blue", "red"]  # fails without the B,G,R -> R,G,B flip
    assert [r["frame"] for r in rows] == [1, 2, 3, 4]
    # a frame that times out is a warning and the run goes on
    assert "frame read failed (1 in a row): Camera frontend has timed out!" in res.stderr
    (cam,) = picamera2.instances
    assert cam.num == 0 and cam.config["main"]["size"] == (640, 480) and cam.closed


def test_camera_index_falls_back_to_picamera2_without_opencv(bundle, picamera2, monkeypatch):
    monkeypatch.setattr(cameras, "_has", lambda name: name == "picamera2")
    res = cli("run", bundle, "--camera", "0", "--json", "--max-frames", 2)
    assert res.exit_code == 0, res.output
    assert "note: OpenCV is not installed; using Picamera2 camera 0" in res.stderr
    assert [json.loads(line)["label"] for line in res.stdout.splitlines()] == ["red", "red"]


def test_missing_picamera2_camera_is_one_line(bundle, picamera2, monkeypatch):
    monkeypatch.setattr(cameras, "_has", lambda name: name == "picamera2")
    res = cli("run", bundle, "--camera", "1")
    assert res.exit_code == 2, res.output
    assert (
        res.stderr.strip().splitlines()[-1]
        == "error: no Picamera2 camera 1; list them with `rpicam-hello --list-cameras`"
    )
    assert "Traceback" not in res.output and picamera2.instances == []


def test_picamera_that_fails_to_start_is_closed_and_one_line(bundle, picamera2, monkeypatch):
    def busy(self):
        raise RuntimeError("Failed to acquire camera: Device or resource busy")

    monkeypatch.setattr(picamera2, "start", busy)
    res = cli("run", bundle, "--camera", "picamera")
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines()[-1] == (
        "error: cannot start Picamera2 camera 0: Failed to acquire camera: Device or resource busy"
    )
    (cam,) = picamera2.instances
    assert cam.closed  # the camera is handed back, so a retry (or systemd's restart) can get it


def test_a_stalled_picamera_ends_the_run_instead_of_freezing_it(bundle, picamera2, monkeypatch):
    """Picamera2's capture_array() can block forever when the camera stalls (picamera2 issues
    #794, #1004). Each read now gives up after the frame timeout, the retries run out, and the
    run ends with a CameraError (exit 2), so systemd restarts the service instead of it freezing."""
    import io
    import threading
    import time

    from edgetl.runtime import predictor as predict
    from edgetl.runtime import runner

    released = threading.Event()
    real_capture = picamera2.capture_array

    def stalls_after_two(self, name="main"):
        if self.calls >= 2:
            released.wait()  # what a stalled camera does: never returns
        return real_capture(self, name)

    monkeypatch.setattr(picamera2, "capture_array", stalls_after_two)
    monkeypatch.setattr(frames, "FRAME_TIMEOUT_S", 0.3)
    cam = cameras.open_camera("picamera")
    assert isinstance(cam, frames.ThreadedCamera) and not cam.newest_only
    cam._join_timeout = 0.2
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        with pytest.raises(
            frames.CameraError, match=r"picamera 0 delivered no frame 2 times in a row \(no frame within 0.3 s"
        ):
            runner.run_camera(
                predict.open_predictor(bundle),
                cam,
                out,
                err,
                as_json=True,
                retry=frames.Retry(max_failures=2, first_wait=0.0),
            )
        seconds = time.monotonic() - start
    finally:
        released.set()
    assert [json.loads(line)["label"] for line in out.getvalue().splitlines()] == ["red", "red"]
    assert "frame read failed (1 in a row): no frame within 0.3 s (the camera read is stuck)" in err.getvalue()
    assert "summary: 2 frames" in err.getvalue() and seconds < 5, seconds


def apt_site(tmp_path, numpy_version, error, module="picamera2"):
    """A dist-packages folder like Raspberry Pi OS's: `module` whose import raises `error`, and
    (if numpy_version) the system NumPy's egg-info beside it, as Debian installs it."""
    site = tmp_path / "dist-packages"
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nraise {error}\n")
    if numpy_version:
        info = site / f"numpy-{numpy_version}.egg-info"
        info.mkdir()
        (info / "PKG-INFO").write_text(f"Metadata-Version: 1.2\nName: numpy\nVersion: {numpy_version}\n")
    return site


def test_picamera2_built_for_another_numpy_is_one_line_with_the_fix(bundle, tmp_path, monkeypatch):
    """Bookworm's Picamera2 is built for NumPy 1.24; opencv-python-headless pulls NumPy 2 into the
    venv. The mismatch is caught before importing (which would print NumPy's own traceback)."""
    system = "1.24.2" if np.__version__.startswith("2") else "2.2.4"
    monkeypatch.syspath_prepend(str(apt_site(tmp_path, system, "ValueError('numpy.dtype size changed')")))
    res = cli("run", bundle, "--camera", "picamera")
    assert res.exit_code == 2, res.output
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(
        f"error: Picamera2 in {tmp_path / 'dist-packages'} is built for NumPy {system}, "
        f"but NumPy {np.__version__} is loaded"
    ), line
    assert f"pip install 'numpy=={system[0]}.*'" in line and "Traceback" not in res.output
    assert not (tmp_path / "imported").exists()  # never imported


def test_picamera2_that_fails_to_import_is_one_line(bundle, tmp_path, monkeypatch):
    error = "ValueError('numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header')"
    monkeypatch.syspath_prepend(str(apt_site(tmp_path, None, error)))
    res = cli("run", bundle, "--camera", "picamera")
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines()[-1] == (
        "error: cannot import Picamera2 (numpy.dtype size changed, may indicate binary incompatibility. "
        "Expected 96 from C header); check it works with `python3 -c 'import picamera2'`"
    )
    assert (tmp_path / "imported").exists() and "Traceback" not in res.output


def test_apt_opencv_built_for_another_numpy_is_one_line(bundle, tmp_path, monkeypatch):
    """JetPack's and Raspberry Pi OS's OpenCV (python3-opencv) is built for the system NumPy too."""
    system = "1.21.5" if np.__version__.startswith("2") else "2.2.4"
    monkeypatch.syspath_prepend(
        str(apt_site(tmp_path, system, "ImportError('numpy.core.multiarray failed to import')", module="cv2"))
    )
    monkeypatch.delitem(sys.modules, "cv2", raising=False)  # the real one, imported by other tests
    res = cli("run", bundle, "--camera", "0")
    assert res.exit_code == 2, res.output
    line = res.stderr.strip().splitlines()[-1]
    assert line == (
        f"error: OpenCV in {tmp_path / 'dist-packages'} is built for NumPy {system}, but NumPy "
        f"{np.__version__} is loaded (pip put it in the venv): run `pip install 'numpy=={system[0]}.*'` "
        "in the venv"
    ), line
    assert not (tmp_path / "imported").exists()
