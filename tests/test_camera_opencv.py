"""The real OpenCV camera wrapper, end to end, with a short MJPG video file as the capture device.

cv2.VideoCapture opens a video file exactly like a device index, a /dev/video path or an
rtsp:// URL, so the BGR -> RGB flip, the end of the stream and `edgetl run --camera`
are exercised for real here (test_runtime_runner.py covers the loop with a fake source).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

cv2 = pytest.importorskip("cv2")

from edgetl.cli import main  # noqa: E402
from edgetl.runtime import cameras, runner  # noqa: E402
from edgetl.runtime import predictor as predict  # noqa: E402
from edgetl.runtime.cameras import OpenCVCamera, open_camera  # noqa: E402
from edgetl.runtime.frames import CameraError, Retry, ThreadedCamera, frames  # noqa: E402

from http_stream import send_mjpeg, send_video, serve  # noqa: E402

RED, BLUE = 5, 3  # frames of each colour in the clip, red first
SIDE = 64


def write_clip(path, red=RED, blue=BLUE):
    """An MJPG .avi of solid pure-red then pure-blue frames (written in OpenCV's BGR order)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (SIDE, SIDE))
    assert writer.isOpened()
    for i in range(red + blue):
        frame = np.zeros((SIDE, SIDE, 3), np.uint8)
        frame[:, :, 2 if i < red else 0] = 255  # BGR: channel 2 is red, channel 0 is blue
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "clip.avi")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def read_all(path):
    cam = OpenCVCamera(str(path))
    try:
        return [np.ascontiguousarray(f) for _, f in frames(cam, RED + BLUE)]
    finally:
        cam.close()


def test_frames_come_out_rgb(clip):
    got = read_all(clip)
    assert len(got) == RED + BLUE
    for i, frame in enumerate(got):
        assert frame.shape == (SIDE, SIDE, 3) and frame.dtype == np.uint8
        hi, lo = (0, (1, 2)) if i < RED else (2, (0, 1))  # RGB: red is channel 0, blue channel 2
        assert frame[:, :, hi].min() > 200, i
        assert frame[:, :, list(lo)].max() < 60, i


def test_end_of_file_ends_the_frames_cleanly(clip):
    cam = open_camera(str(clip))
    assert isinstance(cam, OpenCVCamera) and cam.name == f"camera '{clip}'"
    waits = []
    seen = [number for number, _ in frames(cam, retry=Retry(max_failures=3, first_wait=0.0), sleep=waits.append)]
    cam.close()
    assert (
        seen == list(range(1, RED + BLUE + 1)) and waits == []
    )  # no retries: a file that ended is not a failing camera


def test_cli_camera_file_json_lines(bundle, clip):
    res = cli("run", bundle, "--camera", clip, "--json", "--max-frames", RED + BLUE)
    assert res.exit_code == 0, res.output
    rows = json_lines(res.stdout)
    assert [r["frame"] for r in rows] == list(range(1, RED + BLUE + 1))
    for row in rows:
        assert set(row) == {"frame", "label", "score", "top_k", "latency_ms"}
        assert row["top_k"][0] == {"label": row["label"], "score": row["score"]}
        assert 0.5 <= row["score"] <= 1 and row["latency_ms"] > 0
    assert [r["label"] for r in rows] == ["red"] * RED + ["blue"] * BLUE
    assert f"summary: {RED + BLUE} frames" in res.stderr


def test_cli_camera_frames_match_the_same_frames_as_png_files(bundle, clip, tmp_path):
    """Camera path and file path give the same tensor, hence the same scores (RGB both ways)."""
    pngs = []
    for i, frame in enumerate(read_all(clip)):
        pngs.append(tmp_path / f"frame_{i:02d}.png")
        Image.fromarray(frame).save(pngs[-1])
    args = ("--json", "--format", "tflite-float32", "--top-k", "2")
    by_camera = json_lines(cli("run", bundle, "--camera", clip, "--max-frames", len(pngs), *args).stdout)
    by_file = json_lines(cli("run", bundle, *pngs, *args).stdout)
    assert len(by_camera) == len(by_file) == RED + BLUE
    for cam_row, file_row in zip(by_camera, by_file):
        assert cam_row["label"] == file_row["label"]
        for a, b in zip(cam_row["top_k"], file_row["top_k"]):
            assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-6)
    pred = predict.open_predictor(bundle, "tflite-int8")
    cam = open_camera(str(clip))
    try:
        for png in pngs:
            frame = np.ascontiguousarray(cam.read())
            np.testing.assert_array_equal(pred.model_input(Image.fromarray(frame)), pred.model_input(png))
    finally:
        cam.close()


def test_cli_video_file_played_to_the_end_exits_0(bundle, tmp_path):
    clip = write_clip(tmp_path / "short.avi", red=2, blue=0)
    res = cli("run", bundle, "--camera", clip, "--json")
    assert res.exit_code == 0, res.output
    assert [r["label"] for r in json_lines(res.stdout)] == ["red", "red"]
    assert "summary: 2 frames" in res.stderr and "error" not in res.stderr and "warning" not in res.stderr


@pytest.mark.parametrize(
    "spec, message",
    [
        ("97", "no camera at index 97 (OpenCV could not open it)"),  # the real VideoCapture on a missing index
        ("/dev/video97", "--camera '/dev/video97': no such device"),
        ("abc", "--camera 'abc': no such file"),
        ("{tmp}/missing.mp4", "--camera '{tmp}/missing.mp4': no such file"),
        ("{tmp}", "is a folder"),
        ("{tmp}/notes.avi", "cannot open camera '{tmp}/notes.avi' (OpenCV could not open it)"),
    ],
)
def test_cli_bad_camera_specs_are_one_line(bundle, tmp_path, spec, message):
    (tmp_path / "notes.avi").write_text("not a video")
    spec, message = spec.format(tmp=tmp_path), message.format(tmp=tmp_path)
    res = cli("run", bundle, "--camera", spec)
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and message in res.stderr
    assert "Traceback" not in res.output


def test_urls_go_to_opencv_with_the_password_hidden(monkeypatch):
    opened = []

    class Capture:
        def __init__(self, spec, *backend_and_params):
            opened.append(spec)

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Capture)
    with pytest.raises(CameraError) as exc:
        open_camera("rtsp://admin:hunter2@10.0.0.5/stream")
    assert opened == ["rtsp://admin:hunter2@10.0.0.5/stream"]
    assert "cannot open camera 'rtsp://admin:***@10.0.0.5/stream'" in str(exc.value)
    assert "hunter2" not in str(exc.value)
    monkeypatch.setattr(cameras, "_has", lambda name: False)
    with pytest.raises(CameraError, match="needs OpenCV"):
        open_camera("rtsp://host/stream")


def test_opencv_stays_a_lazy_import():
    import subprocess
    import sys

    code = (
        "import sys, edgetl.runtime.cameras as s, edgetl.runtime.runner, edgetl.cli.device_cmds, edgetl.cli.run_cmds\n"
        "try:\n    s.open_camera('/dev/video97')\nexcept s.CameraError:\n    pass\n"
        "print('cv2' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


@contextlib.contextmanager
def serve_flaky_stream(tmp_path, stall_s: float = 0.0):
    """An HTTP video stream that drops: the first connection breaks off halfway through a red
    clip (after stalling `stall_s` seconds with the socket open, like a Wi-Fi camera gone
    quiet), the second serves a whole blue clip, later ones are refused (503), like a camera
    that went away for good. Yields (url, request numbers so far)."""
    import time

    red = write_clip(tmp_path / "red.avi", red=40, blue=0).read_bytes()
    blue = write_clip(tmp_path / "blue.avi", red=0, blue=BLUE).read_bytes()
    requests = []

    def respond(n, handler):
        requests.append(n)
        if n == 1:
            send_video(handler, red, upto=len(red) // 2)
            time.sleep(stall_s)
        elif n == 2:
            send_video(handler, blue)
        else:
            handler.send_error(503)

    with serve(respond) as url:
        yield url, requests


def run_flaky_stream(bundle, url) -> tuple[list[str], str]:
    """`run_camera` on the stream until it is gone for good -> (labels, stderr)."""
    import io

    out, err = io.StringIO(), io.StringIO()
    cam = open_camera(url)
    assert isinstance(cam, ThreadedCamera) and cam.source.is_stream and not cam.source.is_file
    with pytest.raises(CameraError, match="delivered no frame 3 times in a row"):
        runner.run_camera(
            predict.open_predictor(bundle, "tflite-int8"),
            cam,
            out,
            err,
            as_json=True,
            retry=Retry(max_failures=3, first_wait=0.0),
        )
    return [row["label"] for row in json_lines(out.getvalue())], err.getvalue()


def assert_red_then_blue(labels: list[str]) -> None:
    """Red frames from the connection that broke off, then blue ones from the reopened one (frames
    the classifier was too slow for are skipped: the camera hands out its newest)."""
    reds, blues = labels.count("red"), labels.count("blue")
    assert 0 < reds < 40 and 0 < blues <= BLUE and labels == ["red"] * reds + ["blue"] * blues, labels


def test_a_dropped_stream_is_reopened_and_frames_go_on(bundle, tmp_path):
    """cv2.VideoCapture never delivers again after its stream drops; the camera reopens it."""
    with serve_flaky_stream(tmp_path) as (url, connections):
        labels, err = run_flaky_stream(bundle, url)
    assert_red_then_blue(labels)
    assert len(connections) == 4  # the drop, the reopen that worked, two refused reopens
    # the drop (the counter restarts once the reopened stream delivers), the end of the blue clip, two failed reopens
    failures = [line.split("failed (", 1)[1] for line in err.splitlines() if line.startswith("warning:")]
    assert failures == [
        "1 in a row): OpenCV returned no frame",
        "1 in a row): OpenCV returned no frame",
        "2 in a row): reopening it failed",
        "3 in a row): reopening it failed",
    ], err


def test_a_stalled_stream_times_out_and_is_reopened(bundle, tmp_path, monkeypatch, capfd):
    """A stream that goes quiet with its socket open: the read gives up after the stream read
    timeout (1 s here), not FFmpeg's default 30 s, and the camera reopens it."""
    import time

    monkeypatch.setattr(cameras, "STREAM_READ_TIMEOUT_MS", 1000)
    with serve_flaky_stream(tmp_path, stall_s=60) as (url, connections):
        start = time.monotonic()
        labels, err = run_flaky_stream(bundle, url)
        seconds = time.monotonic() - start
    assert_red_then_blue(labels)
    assert seconds < 20, seconds  # 30+ without the timeout
    assert "1 in a row): OpenCV returned no frame" in err
    assert "Stream timeout" not in capfd.readouterr().err  # OpenCV's own warning (on fd 2) is kept quiet; ours says it


def numbered_jpeg(n: int) -> bytes:
    """A flat frame whose red and green levels spell n (0-255) in base 16, robust to JPEG loss."""
    import io

    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = (n // 16) * 16 + 8, (n % 16) * 16 + 8
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def frame_number(rgb: np.ndarray) -> int:
    return int(rgb[..., 0].mean()) // 16 * 16 + int(rgb[..., 1].mean()) // 16


def test_a_slow_classifier_gets_the_newest_frame_of_a_live_stream():
    """An MJPEG camera at 25 fps, classified at 5 fps. Read in order, the frames fall further behind
    with every read (frame 14 when the camera is at 72); through ThreadedCamera each is the newest."""
    import time

    sent = [0]
    with serve(lambda n, handler: send_mjpeg(handler, [numbered_jpeg(i) for i in range(256)], 25, sent)) as url:
        cam = open_camera(url.replace("live.avi", "cam.mjpg"))
        assert isinstance(cam, ThreadedCamera) and cam.source.is_stream
        behind = []
        try:
            for _ in range(12):
                number = frame_number(cam.read())
                behind.append(sent[0] - 1 - number)
                time.sleep(0.2)  # classifying
        finally:
            cam.close()
    assert max(behind[2:]) <= 3, behind  # in order it grows by 4 frames a read
    assert cam.skipped >= 30 and not cam._thread.is_alive()


def test_ctrl_c_stops_a_live_stream_cleanly(bundle):
    """A real SIGINT to `edgetl run --camera URL` while its reader thread is busy with the stream:
    a clean stop (exit 0, the summary line), promptly."""
    import select
    import signal
    import subprocess
    import sys
    import time

    jpegs = [numbered_jpeg(i % 256) for i in range(750)]  # 30 s at 25 fps
    with serve(lambda n, handler: send_mjpeg(handler, jpegs, 25, [0])) as url:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from edgetl.cli import main; main()",
                "run",
                str(bundle),
                "--camera",
                url.replace("live.avi", "cam.mjpg"),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no frame classified within 60 s"
            assert json.loads(proc.stdout.readline())["frame"] == 1
            proc.send_signal(signal.SIGINT)
            start = time.monotonic()
            _, err = proc.communicate(timeout=30)
            seconds = time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "stopped (Ctrl-C)" in err and "summary:" in err and "Traceback" not in err, err
    assert seconds < 5, seconds
