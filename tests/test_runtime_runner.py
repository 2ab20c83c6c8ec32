"""`edgetl run`: sources, output schema, formats, preprocessing parity, bad inputs, camera loop."""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from edgetl.errors import ModelError
from edgetl.runtime import cameras, interpreter, runner
from edgetl.runtime import predictor as predict
from edgetl.runtime.frames import CameraError, EndOfStream, FrameError, Retry, ThreadedCamera

from bundle_fixture import OFFSET, SCALE, SIZE, colour_image, make_dataset


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data", {"blue": 4, "red": 4}, seed=7)


def cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ---------------------------------------------------------------------------- sources
def test_files_folder_glob_and_stdin_sources(bundle, data):
    files = sorted((data / "red").iterdir())
    res = cli("run", bundle, files[0], files[1], "--json")
    assert res.exit_code == 0, res.output
    assert [r["path"] for r in json_lines(res.stdout)] == [str(files[0]), str(files[1])]

    (data / "red" / ".hidden.png").write_bytes(files[0].read_bytes())  # hidden: skipped in folders
    os.symlink(data, data / "red" / "loop")  # a symlink loop must not recurse forever
    res = cli("run", bundle, data, "--json")
    rows = json_lines(res.stdout)
    assert res.exit_code == 0 and len(rows) == 8
    assert all(r["label"] == ("red" if "/red/" in r["path"] else "blue") for r in rows)

    res = cli("run", bundle, f"{data}/*/*.png", "--json")
    assert res.exit_code == 0 and len(json_lines(res.stdout)) == sum(
        1 for p in data.rglob("*.png") if not p.name.startswith(".")
    )

    res = cli("run", bundle, "-", "--json", input=f"{files[0]}\n\n{data / 'blue'}\n")
    assert res.exit_code == 0
    assert len(json_lines(res.stdout)) == 1 + 4


def test_output_schema_text_and_json(bundle, data):
    path = sorted((data / "blue").iterdir())[0]
    res = cli("run", bundle, path, "--json", "--top-k", "2")
    (row,) = json_lines(res.stdout)
    assert set(row) == {"path", "label", "score", "top_k", "latency_ms"}
    assert row["label"] == "blue" == row["top_k"][0]["label"]
    assert [t["label"] for t in row["top_k"]] == ["blue", "red"]
    assert sum(t["score"] for t in row["top_k"]) == pytest.approx(1.0, abs=1e-3)
    assert row["score"] > 0.5 and row["latency_ms"] > 0
    text = cli("run", bundle, path).stdout.strip()
    name, label, score, latency = text.split("  ")
    assert (name, label) == (str(path), "blue") and 0.5 < float(score) <= 1 and latency.endswith(" ms)")


def test_formats_agree_and_default_is_int8(bundle, data):
    paths = sorted(data.rglob("*.png"))
    probs = {}
    for fmt in ("tflite-float32", "tflite-int8", "onnx"):
        pred = predict.open_predictor(bundle, fmt, threads=1)
        probs[fmt] = np.stack([pred.classify(p) for p in paths])
        assert probs[fmt].shape == (len(paths), 2)  # sigmoid -> [1 - p, p]
        np.testing.assert_allclose(probs[fmt].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs["onnx"], probs["tflite-float32"], atol=1e-4)
    assert np.abs(probs["tflite-int8"] - probs["tflite-float32"]).max() < 0.05
    assert predict.open_predictor(bundle).fmt == "tflite-int8"


def test_preprocessing_parity_comes_from_manifest(bundle, tmp_path):
    from edgetl._tf import tf  # the training side's decoder, resize-free (image is already SIZE px)

    path = tmp_path / "x.png"
    colour_image("red", np.random.default_rng(1), SIZE).save(path)
    pred = predict.open_predictor(bundle, "tflite-float32")
    reference = tf.cast(tf.io.decode_png(tf.io.read_file(str(path)), channels=3), tf.float32) * SCALE + OFFSET
    np.testing.assert_allclose(pred.model_input(path)[0], reference.numpy(), atol=1e-6)

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["input"].update(scale=1 / 255, offset=0.25)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    pred = predict.open_predictor(bundle, "tflite-float32")
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    np.testing.assert_allclose(pred.model_input(path)[0], pixels / 255 + 0.25, atol=1e-6)


# ---------------------------------------------------------------------------- bad inputs
def _bomb_png(path):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_bad_items_are_reported_and_the_run_continues(bundle, data, tmp_path):
    good = sorted((data / "red").iterdir())[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    jpeg = io.BytesIO()
    colour_image("red", np.random.default_rng(0), 64).save(jpeg, "JPEG")
    (bad / "truncated.jpg").write_bytes(jpeg.getvalue()[:200])
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("not an image")
    _bomb_png(bad / "bomb.png")
    os.symlink(tmp_path / "nowhere.jpg", bad / "dangling.jpg")
    items = sorted(bad.iterdir())
    res = cli("run", bundle, items[0], good, *items[1:], tmp_path / "missing.jpg", "--json")
    assert res.exit_code == 1
    assert [r["path"] for r in json_lines(res.stdout)] == [str(good)]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(items) + 1
    for item in items:
        assert any(line.startswith(f"error: {item}: ") for line in errors)
    assert "decompression bomb" in next(line for line in errors if "bomb.png" in line)
    assert "0 bytes" in next(line for line in errors if "empty.jpg" in line)


def test_unusual_modes_classify_like_plain_rgb(bundle, tmp_path):
    rng = np.random.default_rng(2)
    rgb = colour_image("red", rng, 48)
    pred = predict.open_predictor(bundle, "tflite-float32")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).save(tmp_path / "gray16.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(tmp_path / "rgba.png")
    rgb.convert("P", palette=Image.ADAPTIVE).save(tmp_path / "palette.png")
    rotated = rgb.rotate(90, expand=True)  # stored sideways, EXIF says "rotate 270 CW to display"
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "exif.jpg", exif=exif.tobytes(), quality=95)
    rgb.save(tmp_path / "plain.jpg", quality=95)
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    for name in ("cmyk.jpg", "rgba.png", "palette.png", "exif.jpg"):
        probs = pred.classify(tmp_path / name)
        assert pred.classes[int(np.argmax(probs))] == "red", name
    assert pred.model_input(tmp_path / "gray16.png").shape == (1, SIZE, SIZE, 3)
    # EXIF rotation applied: the sideways file gives the same tensor as the upright one
    np.testing.assert_allclose(
        pred.model_input(tmp_path / "exif.jpg"), pred.model_input(tmp_path / "plain.jpg"), atol=0.15
    )


def test_bundle_level_errors_are_one_line(bundle, data):
    img = sorted((data / "red").iterdir())[0]
    res = cli("run", bundle, img, "--format", "tflite-fp64")
    assert res.exit_code == 2 and "tflite-fp64 is not in this bundle" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    with open(bundle / "tflite_int8.tflite", "ab") as fh:
        fh.write(b"\0")
    res = cli("run", bundle, img)
    assert res.exit_code == 2 and "does not match its sha256" in res.stderr
    (bundle / "tflite_float32.tflite").unlink()
    res = cli("run", bundle, img, "--format", "tflite-float32")
    assert res.exit_code == 2 and "bundle file missing" in res.stderr
    res = cli("run", bundle.parent / "nope", img)
    assert res.exit_code == 2 and "bundle folder not found" in res.stderr
    res = cli("run", bundle)
    assert res.exit_code == 2


# ---------------------------------------------------------------------------- interpreter adapters
def test_quant_formula_and_int64_dequantize():
    q = interpreter.Quant(scale=0.5, zero_point=128)
    x = np.array([-100.0, -1.0, 0.0, 1.0, 100.0], dtype=np.float32)
    assert q.quantize(x, np.uint8).tolist() == [0, 126, 128, 130, 255]
    assert q.dequantize(np.array([0, 10, 255], dtype=np.uint8)).tolist() == [-64.0, -59.0, 63.5]
    assert interpreter.Quant(1.0, -128).dequantize(np.array([127], dtype=np.int8)).tolist() == [255.0]


def test_input_calibrated_on_minus_one_to_one_gets_every_pixel_level():
    # What the converter writes for inputs calibrated on [-1, 1]: scale float32(2/255), zero point
    # 127 (uint8) or -1 (int8). Each pixel is exactly half a step from two levels; ties round up,
    # so all 256 levels stay distinct and uint8 gets the raw pixels, as MediaPipe feeds them.
    pixels = np.arange(256, dtype=np.uint8)
    x = interpreter.preprocess(pixels, SCALE, OFFSET)
    scale = float(np.float32(2 / 255))
    assert interpreter.Quant(scale, 127).quantize(x, np.uint8).tolist() == pixels.tolist()
    assert interpreter.Quant(scale, -1).quantize(x, np.int8).tolist() == (pixels.astype(int) - 128).tolist()
    q = interpreter.Quant(0.5, 0).quantize(np.array([0.24, 0.2501, 0.7, -0.25, -0.26], np.float32), np.int8)
    assert q.tolist() == [0, 1, 1, 0, -1]  # nearest level; ties (and float noise around them) go up


@pytest.mark.parametrize("scale, offset", [(SCALE, OFFSET), (1 / 255, 0.25), (1.0, 0.0)])
def test_pixel_table_is_bit_identical_to_the_float_path(bundle, scale, offset):
    # The runner feeds uint8 pixels through a 256-entry table; validation and the float API go
    # through preprocess + quantize. Both must give the same input tensor, for any normalization.
    pred = predict.open_predictor(bundle, "tflite-int8")
    pixels = np.random.default_rng(3).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    pixels[0, 0, :4, 0] = [0, 127, 128, 255]
    by_table = pred.model.from_pixels(pixels, scale, offset)
    by_float = pred.model.prepare(interpreter.preprocess(pixels, scale, offset))
    assert by_table.dtype == by_float.dtype == np.uint8
    np.testing.assert_array_equal(by_table, by_float)
    np.testing.assert_array_equal(
        pred.model.outputs(by_table), pred.model.run(interpreter.preprocess(pixels, scale, offset))
    )
    float_model = predict.open_predictor(bundle, "tflite-float32").model
    np.testing.assert_array_equal(
        float_model.from_pixels(pixels, scale, offset), interpreter.preprocess(pixels, scale, offset)
    )
    # The tiny bundle's calibration does not span [-1, 1]; with the input quantization that real
    # photos give, the table is the identity and the pixels go in as they are.
    pred.model.in_quant = interpreter.Quant(float(np.float32(2 / 255)), 127)
    pred.model._tables.clear()
    np.testing.assert_array_equal(pred.model.from_pixels(pixels, SCALE, OFFSET), pixels)
    np.testing.assert_array_equal(pred.model.prepare(interpreter.preprocess(pixels, SCALE, OFFSET)), pixels)


class _FakeInterpreter:
    dtype = np.int32

    def __init__(self, model_path, num_threads):
        pass

    def allocate_tensors(self):
        pass

    def get_input_details(self):
        return [{"index": 0, "dtype": self.dtype, "shape": np.array([1, 4, 4, 3]), "quantization": (0.0, 0)}]

    def get_output_details(self):
        return [{"index": 1, "dtype": np.float32, "shape": np.array([1, 1]), "quantization": (0.0, 0)}]


def test_unsupported_dtype_and_missing_runtime(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(interpreter, "_tflite_interpreter_class", lambda: (_FakeInterpreter, "fake"))
    with pytest.raises(ModelError, match="unsupported input dtype int32"):
        interpreter.open_model(tmp_path / "m.tflite", "tflite")
    monkeypatch.undo()
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(ModelError, match="pip install ai-edge-litert"):
        interpreter.open_model(tmp_path / "m.tflite", "tflite")


def _only_tflite_runtime(monkeypatch, numpy_version: str) -> None:
    """ai_edge_litert hidden, a tflite_runtime that is LiteRT's interpreter, and numpy claiming `numpy_version`.

    tests/test_device_install.py runs the real tflite-runtime wheel; this is the fast check."""
    import importlib.machinery
    import sys
    import types

    from ai_edge_litert.interpreter import Interpreter

    package = types.ModuleType("tflite_runtime")
    package.__spec__ = importlib.machinery.ModuleSpec("tflite_runtime", None)
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = Interpreter
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    monkeypatch.setattr(np, "__version__", numpy_version)


def test_tflite_runtime_fallback_names_itself(monkeypatch, bundle, capsys):
    _only_tflite_runtime(monkeypatch, "1.26.4")
    model = interpreter.open_model(bundle / "tflite_int8.tflite", "tflite", threads=2)
    assert model.backend == "tflite_runtime"
    assert "using tflite_runtime" in capsys.readouterr().err


def test_tflite_runtime_with_numpy2_is_one_clear_error(monkeypatch, bundle):
    """pip pairs tflite-runtime 2.14 (built for NumPy 1) with NumPy 2, which ends in a SystemError at load."""
    _only_tflite_runtime(monkeypatch, "2.4.6")
    with pytest.raises(ModelError, match=r"NumPy 2\.4\.6: pip install ai-edge-litert .*'numpy<2'"):
        interpreter.open_model(bundle / "tflite_int8.tflite", "tflite", threads=2)


# ---------------------------------------------------------------------------- camera
class FakeCamera:
    """Frames of one colour; reads number `fail` (a set) raise FrameError; `interrupt_at` raises Ctrl-C."""

    def __init__(self, fail=(), interrupt_at=None, colour="red"):
        self.name, self.reads, self.closed = "fake", 0, False
        self.fail, self.interrupt_at = set(fail), interrupt_at
        self.rng, self.colour = np.random.default_rng(0), colour

    def read(self):
        self.reads += 1
        if self.reads == self.interrupt_at:
            raise KeyboardInterrupt
        if self.reads in self.fail:
            raise FrameError("timeout")
        return np.asarray(colour_image(self.colour, self.rng, 64))[:, :, ::-1][:, :, ::-1]  # non-contiguous view

    def close(self):
        self.closed = True


def test_camera_survives_failing_frames_and_reports(bundle):
    pred = predict.open_predictor(bundle, "tflite-int8")
    out, err, waits = io.StringIO(), io.StringIO(), []
    cam = FakeCamera(fail={3, 4, 5})
    ticks = iter(np.arange(0, 1000, 0.5))
    summary = runner.run_camera(
        pred,
        cam,
        out,
        err,
        as_json=True,
        max_frames=6,
        fps_every=1.0,
        retry=Retry(max_failures=4, first_wait=0.1),
        sleep=waits.append,
        clock=lambda: float(next(ticks)),
    )
    rows = json_lines(out.getvalue())
    assert [r["frame"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["label"] == "red" for r in rows)
    assert (summary.ok, summary.failed_reads, summary.exit_code) == (6, 3, 0)
    assert waits == [0.1, 0.2, 0.4] and cam.closed
    assert "fps:" in err.getvalue() and "summary: 6 frames" in err.getvalue()


def test_camera_gone_for_good_and_ctrl_c(bundle):
    pred = predict.open_predictor(bundle)
    err = io.StringIO()
    with pytest.raises(CameraError, match="no frame 4 times in a row"):
        runner.run_camera(
            pred,
            FakeCamera(fail=set(range(3, 100))),
            io.StringIO(),
            err,
            retry=Retry(max_failures=4),
            sleep=lambda s: None,
        )
    assert "summary: 2 frames" in err.getvalue()
    cam = FakeCamera(interrupt_at=4)
    summary = runner.run_camera(pred, cam, io.StringIO(), io.StringIO())
    assert summary.ok == 3 and summary.exit_code == 0 and cam.closed


def test_camera_cli_and_missing_camera(bundle, monkeypatch):
    monkeypatch.setattr(cameras, "open_camera", lambda spec: FakeCamera(colour="blue"))
    res = cli("run", bundle, "--camera", "0", "--max-frames", "3", "--json")
    assert res.exit_code == 0, res.output
    assert [r["frame"] for r in json_lines(res.stdout)] == [1, 2, 3]
    monkeypatch.undo()

    class ClosedCapture:
        def __init__(self, index):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    fake_cv2 = type("cv2", (), {"VideoCapture": ClosedCapture})
    monkeypatch.setitem(__import__("sys").modules, "cv2", fake_cv2)
    monkeypatch.setattr(cameras, "_has", lambda name: name == "cv2")
    res = cli("run", bundle, "--camera", "9")
    assert res.exit_code == 2 and "no camera at index 9" in res.stderr
    monkeypatch.setattr(cameras, "_has", lambda name: False)
    res = cli("run", bundle, "--camera", "0")
    assert res.exit_code == 2 and "no camera library installed" in res.stderr
    assert "Picamera2" in cli("run", bundle, "--camera", "picamera").stderr


class NumberedCamera:
    """Frame n is filled with n. Each read waits for a permit, or runs free (1 ms a frame) once `free` is set."""

    def __init__(self, fail=(), end_at=None):
        self.name, self.reads, self.closed, self.free = "numbered", 0, False, False
        self.fail, self.end_at = set(fail), end_at
        self.permits = threading.Semaphore(0)

    def read(self):
        if self.free:
            time.sleep(0.001)
        else:
            self.permits.acquire()
        self.reads += 1
        if self.reads == self.end_at:
            raise EndOfStream(self.name)
        if self.reads in self.fail:
            raise FrameError(f"read {self.reads} failed")
        return np.full((64, 64, 3), (self.reads % 256, 0, 0), np.uint8)

    def close(self):
        self.closed = True


def wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_threaded_camera_hands_out_only_the_newest_frame():
    """Frames that arrive while one is being classified replace each other, none twice."""
    cam = NumberedCamera()
    threaded = ThreadedCamera(cam)
    cam.permits.release(5)
    wait_until(lambda: threaded.skipped == 4)  # frames 1-4 replaced, 5 waiting
    assert threaded.read()[0, 0, 0] == 5
    cam.permits.release(1)
    assert threaded.read()[0, 0, 0] == 6  # waits for a new frame: never frame 5 again
    assert (cam.reads, threaded.skipped) == (6, 4)
    cam.free = True
    cam.permits.release(1)
    threaded.close()
    assert cam.closed and not threaded._thread.is_alive()


def test_threaded_camera_retries_only_when_asked():
    """A failed read reaches read() in order, after the frame before it; the thread reads again only
    when read() is next called, so frames()'s backoff still spaces the retries."""
    cam = NumberedCamera(fail={2}, end_at=4)
    threaded = ThreadedCamera(cam)
    cam.permits.release(2)
    wait_until(lambda: cam.reads == 2)
    assert threaded.read()[0, 0, 0] == 1
    with pytest.raises(FrameError, match="read 2 failed"):
        threaded.read()
    cam.permits.release(2)
    time.sleep(0.2)
    assert cam.reads == 2  # paused after the failure until the next read()
    assert threaded.read()[0, 0, 0] == 3
    wait_until(lambda: cam.reads == 4)
    for _ in range(2):  # the end of a stream stays the end
        with pytest.raises(EndOfStream):
            threaded.read()
    threaded.close()
    assert cam.closed


def test_camera_run_reports_the_frames_it_skipped(bundle):
    cam = NumberedCamera()
    threaded = ThreadedCamera(cam)
    cam.permits.release(10)
    wait_until(lambda: threaded.skipped == 9)  # the camera ran ahead of the classifier
    cam.free = True
    cam.permits.release(1)
    out, err = io.StringIO(), io.StringIO()
    summary = runner.run_camera(predict.open_predictor(bundle, "tflite-int8"), threaded, out, err, max_frames=5)
    assert summary.ok == 5 and cam.closed
    assert summary.skipped >= 9 and cam.reads >= 5 + summary.skipped
    assert f"0 failed reads, {summary.skipped} older frames skipped" in err.getvalue()


@pytest.mark.parametrize("newest_only", [True, False])
def test_threaded_camera_keeps_frames_and_failures_in_order_under_random_timing(newest_only):
    """A camera that fails 1 read in 8 and a consumer, both at random speeds: frames come out in
    camera order, a failure between two frames comes out between them, nothing is handed out
    twice, and every frame read is handed out or counted as skipped (none without newest_only)."""
    rng = np.random.default_rng(0)
    waits = rng.uniform(0, 0.002, 1000)

    class RandomCamera:
        name, reads, closed = "random", 0, False

        def read(self):
            self.reads += 1
            time.sleep(waits[self.reads % 1000] / 2)
            if self.reads % 8 == 5:
                raise FrameError(str(self.reads))
            return self.reads  # a frame that says which read it came from

        def close(self):
            self.closed = True

    cam = RandomCamera()
    threaded = ThreadedCamera(cam, newest_only=newest_only, frame_timeout=5.0)
    seen = []  # read numbers of the frames handed out, and -n for failed read n
    for i in range(300):
        try:
            seen.append(threaded.read())
        except FrameError as exc:
            seen.append(-int(str(exc)))
        time.sleep(waits[i])
    threaded.close()
    assert cam.closed
    order = [abs(n) for n in seen]
    assert order == sorted(order) and len(set(order)) == len(order)  # camera order, nothing twice
    failures = [n for n in seen if n < 0]
    assert failures == [-n for n in range(5, abs(failures[-1]) + 1, 8)]  # every failure reaches read(), in order
    frames = len(seen) - len(failures)
    good_reads = sum(1 for n in range(1, cam.reads + 1) if n % 8 != 5)
    # at most two frames were neither: the one waiting at close, and the one read as it closed
    assert good_reads - 2 <= frames + threaded.skipped <= good_reads
    if not newest_only:
        assert threaded.skipped == 0 and order == list(range(1, 301))  # one read per read(), none skipped
    else:
        assert threaded.skipped > 0


def test_bench_reports_every_number(bundle, data):
    from edgetl.runtime import bench

    result = bench.bench_bundle(bundle, str(data), threads=1, runs=3, formats=["tflite-int8"])
    row = result["formats"]["tflite-int8"]
    assert row["accuracy"] == 1.0 and row["num_images"] == 8
    assert 0 < row["bare_ms"]["p50"] <= row["bare_ms"]["p95"]
    assert row["path_ms"]["p50"] > row["bare_ms"]["p50"] * 0.5
    assert 0 < row["cold_start_s"] < 30 and row["peak_rss_mb"] > 10
    assert row["size_bytes"] == (bundle / "tflite_int8.tflite").stat().st_size
    assert "tflite-int8" in bench.table(result)


def test_default_threads_leave_one_core_for_the_decoder(monkeypatch, bundle):
    monkeypatch.setattr(predict.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert predict.default_threads() == 3  # a Pi: three interpreter threads, one decoder / camera core
    monkeypatch.setattr(predict.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert predict.default_threads() == 1
    seen = []
    real_open = interpreter.open_model
    monkeypatch.setattr(
        interpreter,
        "open_model",
        lambda path, rt, threads=None, role="fused": seen.append(threads) or real_open(path, rt, threads, role),
    )
    monkeypatch.setattr(predict.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    predict.open_predictor(bundle, "tflite-int8")
    predict.open_predictor(bundle, "tflite-int8", threads=2)
    assert seen == [5, 2]
