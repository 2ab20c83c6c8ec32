"""`edgetl validate`: numbers on a case whose right answer is known, and the gate's exit code."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import COLOURS, make_image
from export_fixtures import make_run


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from edgetl.cli import main

    root = tmp_path_factory.mktemp("validate")
    run = make_run(root, classes=("red", "blue"), per_class=8, val_per_class=2)
    out = root / "bundle"
    result = CliRunner().invoke(
        main, ["export", str(run), "--int8", "--float32", "--onnx", "--out", str(out), "--calibration", "16", "--json"]
    )
    assert result.exit_code == 0, result.output[-2000:]
    payload = json.loads(result.stdout)
    assert payload["bundle"] == str(out) and payload["validation"]["passed"]
    return out


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """3 red + 3 blue images, plus one red image filed under blue: accuracy is exactly 6/7."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(5)
    for name, count in (("red", 3), ("blue", 3)):
        (root / name).mkdir()
        for i in range(count):
            make_image(COLOURS[name], 40, rng).save(root / name / f"{i}.png")
    make_image(COLOURS["red"], 40, rng).save(root / "blue" / "mislabelled.png")
    (root / "blue" / "broken.png").write_bytes(b"not an image")
    return root


def test_known_numbers(bundle, labelled):
    from edgetl.cli import main

    result = CliRunner().invoke(main, ["validate", str(bundle), "--data", str(labelled), "--json"])
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout)
    assert report == json.loads((bundle / "validation.json").read_text())
    assert report["num_images"] == 7 and report["classes"] == ["red", "blue"] and len(report["skipped_images"]) == 1
    assert set(report["formats"]) == {
        "keras",
        "tflite-float32",
        "base-tflite-float32",
        "tflite-int8",
        "base-tflite-int8",
        "onnx",
        "base-onnx",
    }
    for fmt, entry in report["formats"].items():
        assert entry["accuracy"] == pytest.approx(6 / 7), fmt
        assert entry["confusion"] == [[3, 0], [1, 3]]
        assert entry["per_class"]["red"]["accuracy"] == 1.0 and entry["per_class"]["blue"]["accuracy"] == 0.75
        assert entry["drop_pp"] == 0.0 and entry["agreement"] == 1.0 and entry["passed"]
        assert entry["latency_ms"]["mean"] > 0 and entry["latency_ms"]["p95"] > 0
    assert report["disagreements"] == {}
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["validation"]["num_images"] == 7 and manifest["validation"]["passed"]


def test_gate_exit_code_3(bundle, labelled, tmp_path):
    from edgetl.cli import main

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    result = CliRunner().invoke(main, ["validate", str(copy), "--data", str(labelled), "--max-drop", "-1"])
    assert result.exit_code == 3
    assert "accuracy gate failed" in result.output and "tflite-int8" in result.output
    assert "Traceback" not in result.output
    report = json.loads((copy / "validation.json").read_text())
    assert report["passed"] is False and report["formats"]["tflite-int8"]["passed"] is False
    assert report["formats"]["tflite-float32"]["passed"] is True  # float formats are measured, not gated
    assert json.loads((copy / "manifest.json").read_text())["validation"]["passed"] is False


def test_format_filter_and_float_reference_without_run(bundle, labelled, tmp_path):
    from edgetl.cli import main

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["source_run"]["path"] = str(tmp_path / "gone")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(
        main, ["validate", str(copy), "--data", str(labelled), "--formats", "tflite-int8", "--json"]
    )
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout)
    assert report["reference"] == "tflite-float32"
    assert set(report["formats"]) == {"tflite-float32", "tflite-int8"}


def test_unknown_class_folder_is_an_error(bundle, labelled, tmp_path):
    from edgetl.cli import main

    data = tmp_path / "data"
    shutil.copytree(labelled, data)
    shutil.copytree(data / "red", data / "green")
    result = CliRunner().invoke(main, ["validate", str(bundle), "--data", str(data)])
    assert result.exit_code == 2 and "green" in result.output and "Traceback" not in result.output


def test_another_architecture_adds_its_section_and_keeps_the_main_report(bundle, labelled, tmp_path, monkeypatch):
    """`edgetl validate` on the Pi (aarch64, no Keras model there) for a bundle validated on the
    workstation: its accuracy goes under "architectures" next to the workstation's, and the report shows both."""
    import platform

    from edgetl.cli import main
    from edgetl.export import validate

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    args = ["validate", str(copy), "--data", str(labelled), "--json"]
    assert CliRunner().invoke(main, args).exit_code == 0
    host = platform.machine()
    monkeypatch.setattr(validate, "machine", lambda: {"arch": "aarch64", "python": "3.11.2", "packages": {}})
    monkeypatch.setattr(validate, "_source_model", lambda bundle: None)  # the device has no TensorFlow
    result = CliRunner().invoke(main, [*args, "--formats", "tflite-int8"])
    assert result.exit_code == 0, result.output[-2000:]
    assert json.loads(result.stdout)["reference"] == "tflite-float32"  # what the device measured
    saved = json.loads((copy / "validation.json").read_text())
    assert saved["machine"]["arch"] == host and saved["reference"] == "keras" and "onnx" in saved["formats"]
    sections = saved["architectures"]
    assert set(sections) == {host, "aarch64"}
    assert sections["aarch64"]["formats"]["tflite-int8"]["accuracy"] == pytest.approx(6 / 7)
    assert set(sections["aarch64"]["formats"]) == {"tflite-float32", "tflite-int8"}
    assert sections["aarch64"]["images_id"] == sections[host]["images_id"]

    assert CliRunner().invoke(main, ["report", str(copy)]).exit_code == 0
    md = (copy / "report.md").read_text()
    assert "## Accuracy per architecture" in md and f"aarch64 - {host} (pp)" in md
    assert "not the same images" not in md

    monkeypatch.undo()
    assert CliRunner().invoke(main, args).exit_code == 0  # the workstation again: main report renewed, arm64 kept
    assert set(json.loads((copy / "validation.json").read_text())["architectures"]) == {host, "aarch64"}
