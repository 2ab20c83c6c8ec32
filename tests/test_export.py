"""`edgetl export`: every format converts, runs in its real interpreter, and matches Keras."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from export_fixtures import make_run

FORMATS = ("tflite-float32", "tflite-float16", "tflite-dynamic", "tflite-int8", "onnx", "onnx-int8")
FLOAT_TOL = {"tflite-float32": 1e-4, "onnx": 1e-4, "tflite-float16": 2e-2}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from edgetl.export.exporter import ExportOptions, export_run

    root = tmp_path_factory.mktemp("export")
    run = make_run(root)
    result = export_run(
        run, ExportOptions(formats=FORMATS, out=str(root / "bundle"), calibration=24, archive=True), log=lambda s: None
    )
    return run, Path(result["bundle"]), result


@pytest.fixture(scope="module")
def reference(exported):
    """Val images and the Keras model's probabilities on them."""
    from edgetl.export.measure import load_eval_set
    from edgetl.train.run_folder import open_run

    run = open_run(exported[0])
    evalset = load_eval_set(run.files("val"), run.classes, run.input_size, run.scale, run.offset)
    return evalset, run.load_model().predict(evalset.images, verbose=0)


def _probs(bundle_dir, fmt, images):
    from edgetl.export.measure import file_predictor, run_images, to_probabilities
    from edgetl.runtime.bundle import load_bundle
    from edgetl.runtime.head import NumpyHead

    bundle = load_bundle(bundle_dir)
    out = run_images(file_predictor(bundle.model_path(fmt)), images).values
    if bundle.models[fmt]["role"] == "base":
        return NumpyHead.load(bundle.path_of(bundle.manifest["head"])).predict(out)
    return to_probabilities(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_runs_and_matches_keras_fused_and_split(exported, reference, fmt):
    evalset, keras_probs = reference
    assert (keras_probs.argmax(1) == evalset.labels).all()  # the fixture's head is right by construction
    fused = _probs(exported[1], fmt, evalset.images)
    split = _probs(exported[1], f"base-{fmt}", evalset.images)
    assert fused.shape == split.shape == keras_probs.shape
    assert (fused.argmax(1) == keras_probs.argmax(1)).all()
    assert (split.argmax(1) == fused.argmax(1)).all()
    if fmt in FLOAT_TOL:
        np.testing.assert_allclose(fused, keras_probs, atol=FLOAT_TOL[fmt])
        np.testing.assert_allclose(split, fused, atol=FLOAT_TOL[fmt])


def test_manifest_hashes_quant_params_and_validation(exported):
    from edgetl.runtime.atomic import sha256_file

    run, bundle, result = exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["classes"] == ["red", "green", "blue"]
    assert manifest["input"]["size"] == 32 and manifest["input"]["offset"] == -1.0
    assert set(manifest["models"]) == set(FORMATS) | {f"base-{f}" for f in FORMATS}
    for entry in list(manifest["models"].values()) + [manifest["head"]]:
        path = bundle / entry["file"]
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["size_bytes"]
    int8 = manifest["models"]["tflite-int8"]
    assert int8["input"]["dtype"] == "uint8" and int8["output"]["dtype"] == "uint8"
    assert int8["input"]["scale"] > 0 and 0 <= int8["input"]["zero_point"] <= 255
    assert int8["ladder"]["passed_rung"] == "int8"
    # ONNX int8 is U8U8 from the first rung: S8S8 saturates on x86 without VNNI but not on ARM (docs/arm64.md)
    assert manifest["models"]["onnx-int8"]["quantization"]["unsigned"] is True
    assert manifest["models"]["onnx-int8"]["ladder"]["passed_rung"] == "int8"
    assert manifest["models"]["tflite-float32"]["input"]["dtype"] == "float32"
    assert manifest["source_run"]["path"] == str(run.resolve())
    validation = json.loads((bundle / "validation.json").read_text())
    assert validation["passed"] and manifest["validation"]["passed"]
    assert validation["num_images"] == 9 and validation["reference"] == "keras"
    for fmt, entry in validation["formats"].items():
        assert entry["accuracy"] == 1.0 and entry["agreement"] == 1.0 and entry["drop_pp"] == 0.0
        assert entry["gated"] == ("int8" in fmt)
        assert np.trace(entry["confusion"]) == 9
    # int8 TFLite is smaller than float
    assert int8["size_bytes"] < manifest["models"]["tflite-float32"]["size_bytes"]
    with tarfile.open(result["archive"]) as tar:
        assert "bundle/manifest.json" in tar.getnames()


def test_tampered_or_missing_file_is_refused(exported, tmp_path):
    from edgetl.cli import main
    from edgetl.errors import BundleError
    from edgetl.runtime.bundle import load_bundle

    copy = tmp_path / "b"
    shutil.copytree(exported[1], copy)
    data = bytearray((copy / "model_int8.tflite").read_bytes())
    data[100] ^= 0xFF
    (copy / "model_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(copy).model_path("tflite-int8")
    (copy / "model_float32.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(copy).model_path("onnx")
    result = CliRunner().invoke(main, ["validate", str(copy), "--data", str(exported[0].parent / "data" / "val")])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx", "base_float16.tflite", "model_float32.onnx"])
def test_labels_from_a_lone_model_file(exported, tmp_path, name):
    from edgetl.cli import main
    from edgetl.export.metadata import read_info, read_labels

    lone = tmp_path / name
    shutil.copy(exported[1] / name, lone)
    assert read_labels(lone) == ["red", "green", "blue"]
    assert read_info(lone)["preprocessing"]["offset"] == -1.0
    if name.endswith(".tflite"):
        assert zipfile.is_zipfile(lone)
    result = CliRunner().invoke(main, ["labels", str(lone)])
    assert result.exit_code == 0 and result.output.split() == ["red", "green", "blue"]


def test_read_labels_needs_no_tensorflow(exported):
    code = (
        "import sys; from edgetl.export.metadata import read_labels; "
        f"print(read_labels({str(exported[1] / 'model_int8.tflite')!r}), "
        f"read_labels({str(exported[1] / 'model_int8.onnx')!r})); "
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.count("'blue'") == 2


def test_interrupted_export_leaves_no_bundle(exported, tmp_path, monkeypatch):
    from edgetl.export.converters import CONVERTERS, Converter
    from edgetl.export.exporter import ExportOptions, export_run

    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("previous bundle")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setitem(CONVERTERS, "onnx", Converter(boom, CONVERTERS["onnx"].spec))
    with pytest.raises(KeyboardInterrupt):
        export_run(
            exported[0],
            ExportOptions(formats=("tflite-float32", "onnx"), out=str(out), validate=False),
            log=lambda s: None,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no .partial left behind
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # the previous bundle is untouched


def _run_copy(exported, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(exported[0], copy)
    return copy


def test_bad_inputs_are_one_line_errors(exported, tmp_path):
    from edgetl.cli import main

    runner = CliRunner()
    cases = []
    cases.append((["export", str(tmp_path / "nope")], "run folder not found"))
    cases.append((["export", str(exported[0]), "--format", "tflite-int4"], "unknown format"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases.append((["export", str(exported[0]), "--float32", "--out", str(blocker / "b")], "cannot"))
    old = _run_copy(exported, tmp_path)
    info = json.loads((old / "run.json").read_text())
    (old / "run.json").write_text(json.dumps({**info, "edgetl_version": "9.0.0"}))
    cases.append((["export", str(old)], "edgetl 9.0.0"))
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_undecodable_calibration_images(exported, tmp_path):
    from edgetl.errors import ExportError
    from edgetl.export.exporter import ExportOptions, export_run

    run = _run_copy(exported, tmp_path)
    junk = tmp_path / "junk"
    junk.mkdir()
    splits = json.loads((run / "splits.json").read_text())
    for i in range(3):
        (junk / f"bad{i}.png").write_bytes(b"not a png")
    splits["root"], splits["train"] = str(junk), [[f"bad{i}.png", i] for i in range(3)]
    (run / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(ExportError, match="none of the 3 calibration images could be decoded"):
        export_run(run, ExportOptions(formats=("tflite-int8",), out=str(tmp_path / "b")), log=lambda s: None)
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------ self-test (golden images)
def _bundle_copy(exported, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(exported[1], copy)
    return copy


def test_golden_images_and_outputs_are_recorded_for_every_model(exported):
    manifest = json.loads((exported[1] / "manifest.json").read_text())
    record = manifest["self_test"]
    assert [Path(i["file"]).name for i in record["images"]] == ["bars.png", "photo.jpg"]
    assert set(record["outputs"]) == set(manifest["models"])  # fused and base forms
    assert all(np.asarray(p).shape == (2, 3) for p in record["outputs"].values())  # 2 images x 3 classes


def test_self_test_passes_on_the_bundle_and_fails_on_a_swapped_colour_order(exported, tmp_path):
    from edgetl.cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["run", str(exported[1]), "--self-test", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["passed"] and max(report["grid_diff"].values()) < 0.01  # same machine: the same pixels
    assert all(f["max_diff"] < 1e-6 for f in report["formats"].values())  # and the same outputs

    bundle = _bundle_copy(exported, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["input"]["color"] = "BGR"  # a device feeding channels in the other order
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    bad = runner.invoke(main, ["run", str(bundle), "--self-test"])
    assert bad.exit_code == 1 and "self-test FAILED" in bad.output
    assert "decode golden/bars.png: grid differs by" in bad.output and "-> FAIL" in bad.output


def test_self_test_refuses_a_tampered_golden_image(exported, tmp_path):
    from edgetl.cli import main

    bundle = _bundle_copy(exported, tmp_path)
    png = bundle / "golden" / "bars.png"
    png.write_bytes(png.read_bytes()[:-20] + b"\0" * 20)
    result = CliRunner().invoke(main, ["run", str(bundle), "--self-test"])
    assert result.exit_code == 2 and "golden/bars.png does not match its sha256" in result.output
