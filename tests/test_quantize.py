"""Calibration sampling, the fallback ladder (stops at the first passing rung), QAT export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgetl.errors import ExportError, GateError
from edgetl.export.ladder import ONNX_LADDER, TFLITE_LADDER, Rung, climb
from edgetl.export.quantize import QuantSpec
from edgetl.export.representative import Calibration, stratified
from edgetl.runtime.interpreter import Quant

INT8 = QuantSpec(weights="int8", io="uint8", calibration=10)


def _ladder(rungs, available, passes, fails_to_build=lambda s: False):
    built = []

    def build(spec):
        if fails_to_build(spec):
            raise ExportError("converter said no")
        built.append(spec)
        return f"model{len(built)}"

    result = climb(
        rungs, INT8, available, build, lambda artifact: (passes(built[-1]), 0.0 if passes(built[-1]) else 5.0)
    )
    return result, built


def test_ladder_stops_at_first_passing_rung():
    result, built = _ladder(TFLITE_LADDER, 1000, passes=lambda s: s.float_ends)
    assert result.chosen == "float-first-last" and result.artifact == "model3"
    assert [a.status for a in result.attempts] == ["failed", "failed", "passed"]
    assert [s.calibration for s in built] == [10, 40, 40]
    assert result.to_json()["passed_rung"] == "float-first-last"


def test_ladder_skips_rungs_that_repeat_a_spec_and_records_errors():
    # Only 10 calibration images exist: "more-calibration" would repeat rung 0.
    result, built = _ladder(
        TFLITE_LADDER, 10, passes=lambda s: s.weights == "float16", fails_to_build=lambda s: s.activations == "int16"
    )
    assert [(a.rung, a.status) for a in result.attempts] == [
        ("int8", "failed"),
        ("more-calibration", "skipped"),
        ("float-first-last", "failed"),
        ("int16-activations", "error"),
        ("float16", "passed"),
    ]
    assert result.spec.io == "float32" and result.chosen == "float16"


def test_ladder_with_no_passing_rung_keeps_rung_zero_marked_failing():
    result, built = _ladder(ONNX_LADDER, 1000, passes=lambda s: False)
    assert result.chosen is None and result.artifact == "model1" and result.spec == built[0]
    statuses = {a.rung: a.status for a in result.attempts}
    assert statuses["minmax-calibration"] == "skipped" and statuses["per-channel"] == "skipped"
    assert statuses["entropy-calibration"] == "failed" and statuses["int16-activations"] == "failed"


def test_ladder_where_nothing_converts_is_an_error():
    with pytest.raises(ExportError, match="every rung"):
        climb(
            (Rung("a"), Rung("b", (("float_ends", True),))),
            INT8,
            10,
            lambda s: (_ for _ in ()).throw(ExportError("no")),
            lambda a: (True, 0.0),
        )


def test_stratified_prefix_is_class_balanced():
    files = [(Path(f"a{i}"), 0) for i in range(10)] + [(Path(f"b{i}"), 1) for i in range(3)]
    order = stratified(files, seed=1)
    assert [label for _, label in order[:6]] == [0, 1, 0, 1, 0, 1]
    assert sorted(map(str, (p for p, _ in order))) == sorted(map(str, (p for p, _ in files)))
    assert stratified(files, seed=1) == order


def test_calibration_skips_bad_images_and_warns(tmp_path):
    from conftest import COLOURS, make_image

    rng = np.random.default_rng(0)
    good = tmp_path / "good.png"
    make_image(COLOURS["red"], 20, rng).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    calib = Calibration([(bad, 1), (good, 0)], 16, 1 / 127.5, -1.0, num_classes=2)
    images, labels = calib.take(5)
    assert images.shape == (1, 16, 16, 3) and images.dtype == np.float32 and labels.tolist() == [0]
    assert -1.0 <= images.min() and images.max() <= 1.0
    warnings = " | ".join(calib.warnings(5))
    assert "only 1 calibration images" in warnings and "[1]" in warnings and "1 calibration image(s) failed" in warnings
    with pytest.raises(ExportError, match="none of the 1"):
        Calibration([(bad, 0)], 16, 1.0, 0.0, 1).take(1)


def test_quantize_round_trip_does_not_wrap():
    x = np.array([-2.0, 0.0, 1.0, 5.0], np.float32)
    q = Quant(1 / 127.5, 128).quantize(x, np.uint8)
    assert q.tolist() == [0, 128, 255, 255]
    np.testing.assert_allclose(Quant(1 / 127.5, 128).dequantize(q)[:3], [-1.0039, 0.0, 0.9961], atol=1e-3)


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    from export_fixtures import make_run

    return make_run(tmp_path_factory.mktemp("q"), classes=("red", "blue"), per_class=10, val_per_class=3)


def test_failing_gate_climbs_every_rung_and_exits_3(run2, tmp_path):
    from edgetl.export.exporter import ExportOptions, export_run

    out = tmp_path / "b"
    with pytest.raises(GateError) as info:
        export_run(
            run2,
            ExportOptions(formats=("tflite-int8",), out=str(out), calibration=8, max_drop=-1.0, split=False),
            log=lambda s: None,
        )
    assert info.value.exit_code == 3
    manifest = json.loads((out / "manifest.json").read_text())
    ladder = manifest["models"]["tflite-int8"]["ladder"]
    assert ladder["passed_rung"] is None
    assert [a["rung"] for a in ladder["attempts"]] == [r.name for r in TFLITE_LADDER]
    assert all(a["status"] == "failed" for a in ladder["attempts"])  # every rung converted and ran
    assert manifest["models"]["tflite-int8"]["quantization"]["weights"] == "int8"  # the requested model is kept
    report = json.loads((out / "validation.json").read_text())
    assert report["passed"] is False and report["formats"]["tflite-int8"]["passed"] is False
    assert not (out / ".ladder").exists()


def test_qat_export_runs_in_litert(run2, tmp_path):
    from edgetl.export.exporter import ExportOptions, export_run
    from edgetl.export.measure import file_predictor

    result = export_run(
        run2,
        ExportOptions(formats=("tflite-float32",), out=str(tmp_path / "b"), calibration=12, qat_epochs=3, split=False),
        log=lambda s: None,
    )
    entry = result["manifest"]["models"]["tflite-qat-int8"]
    assert entry["input"]["dtype"] == "uint8" and entry["output"]["dtype"] == "uint8"
    assert result["validation"]["formats"]["tflite-qat-int8"]["accuracy"] == 1.0
    assert result["validation"]["formats"]["tflite-qat-int8"]["agreement"] == 1.0
    predict = file_predictor(Path(result["bundle"]) / entry["file"])
    probs = predict(np.zeros((32, 32, 3), np.float32))
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1.0) < 0.02  # sigmoid exported as [1-p, p]


@pytest.mark.parametrize("io", ["int8", "float32"])
def test_int8_io_dtype_follows_option(run2, tmp_path, io):
    from edgetl.export.quantize import tflite_bytes, tflite_io_params
    from edgetl.export.representative import calibration_from_run
    from edgetl.train.run_folder import open_run

    run = open_run(run2)
    path = tmp_path / "m.tflite"
    path.write_bytes(
        tflite_bytes(run.load_model(), QuantSpec(weights="int8", io=io, calibration=8), calibration_from_run(run))
    )
    params = tflite_io_params(path)
    assert params["input"]["dtype"] == params["output"]["dtype"] == io
    assert (params["input"]["scale"] > 0) == (io == "int8")


def test_calibration_chunk_divides_the_count():
    from edgetl.export.quantize import calibration_chunk

    assert [calibration_chunk(n) for n in (1, 10, 16, 20, 800, 797, 48)] == [1, 10, 16, 10, 16, 1, 16]


def _tiny_onnx(tmp_path):
    """-> (a conv + dense Keras model, its float ONNX file, 20 images in [-1, 1], a calibration of them)."""
    from edgetl._tf import keras
    from edgetl.export import quantize

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    float_path = quantize.onnx_float(model, 16, tmp_path / "f.onnx")
    images = np.random.default_rng(0).uniform(-1, 1, (20, 16, 16, 3)).astype(np.float32)

    class Images:
        def take(self, n):
            return images[:n], np.zeros(n, int)

    return model, float_path, images, Images()


@pytest.mark.parametrize("method, chunks", [("entropy", [10, 10]), ("percentile", [10, 10]), ("minmax", [20])])
def test_histogram_calibration_reads_images_in_chunks(tmp_path, monkeypatch, method, chunks):
    # onnxruntime's histogram calibrators hold every intermediate tensor of every image they are
    # given at once (an 800-image entropy rung at 224 px was OOM-killed), so they get chunks.
    import onnxruntime as ort

    from edgetl.export import quantize

    model, float_path, images, calibration = _tiny_onnx(tmp_path)
    passes: list[int] = []

    class Recording(quantize._Reader):
        def set_range(self, start_index, end_index):
            super().set_range(start_index, end_index)
            passes.append(0)

        def get_next(self):
            item = super().get_next()
            passes[-1] += item is not None
            return item

    monkeypatch.setattr(quantize, "_Reader", Recording)
    out = quantize.onnx_int8(
        float_path,
        QuantSpec(weights="int8", calibration=20, method=method, per_channel=True),
        calibration,
        tmp_path / "q.onnx",
    )
    read = [p for p in passes if p]  # the constructor's full range is replaced before reading when chunked
    assert read == chunks
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"image": images[:4]})[0]
    np.testing.assert_allclose(probs, model.predict(images[:4], verbose=0), atol=0.05)


@pytest.mark.parametrize("unsigned, dtype", [(False, "INT8"), (True, "UINT8")])
def test_onnx_uint8_rung_quantizes_weights_and_activations_unsigned(tmp_path, unsigned, dtype):
    """QuantSpec.unsigned (what onnx-int8 exports) writes U8U8 QDQ nodes that still follow the float model."""
    import onnx
    import onnxruntime as ort

    from edgetl.export import quantize

    model, float_path, images, calibration = _tiny_onnx(tmp_path)
    spec = QuantSpec(weights="int8", calibration=20, unsigned=unsigned)
    out = quantize.onnx_int8(float_path, spec, calibration, tmp_path / "q.onnx")
    graph = onnx.load(str(out)).graph
    zero_points = [i for i in graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and {onnx.TensorProto.DataType.Name(i.data_type) for i in zero_points} == {dtype}
    probs = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": images[:4]})[0]
    np.testing.assert_allclose(probs, model.predict(images[:4], verbose=0), atol=0.05)
