"""`edgetl doctor`: rules checked on monkeypatched versions, never on what happens to be installed."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from edgetl import doctor
from edgetl.cli import main
from edgetl.doctor import Env, diagnose, installed_versions, vtuple

GOOD = {
    "tensorflow": "2.21.0",
    "tf_keras": "2.21.0",
    "keras": "3.15.1",
    "tensorflow-model-optimization": "0.8.1",
    "tf2onnx": "1.17.0",
    "onnx": "1.23.2",
    "onnxruntime": "1.31.1",
    "ai-edge-litert": "2.3.0",
    "tflite-runtime": None,
    "Pillow": "13.0.0",
    "numpy": "2.4.6",
    "mediapipe": None,
    "picamera2": None,
}
DEVICE = {name: None for name in GOOD} | {"numpy": "1.26.4", "Pillow": "10.0.0", "ai-edge-litert": "1.2.0"}


def env(python=(3, 11, 7), environ=None, **versions):
    base = dict(GOOD)
    base.update(versions)
    return Env(python, base, environ if environ is not None else {"TF_USE_LEGACY_KERAS": "1"})


def rules(e: Env, level: str = "error") -> set[str]:
    return {f.rule for f in diagnose(e) if f.level == level}


def test_vtuple():
    assert vtuple("2.21.0rc1") == (2, 21, 0)
    assert vtuple("0.10.21") == (0, 10, 21)
    assert vtuple("dev") == ()
    assert vtuple(None) == ()


def test_training_workstation_is_fine():
    assert diagnose(env()) == []


def test_keras3_without_tf_keras():
    assert rules(Env((3, 11, 0), {**GOOD, "tf_keras": None}, {})) == {"keras3-for-tfmot"}
    old_tf = {**GOOD, "tensorflow": "2.15.1", "tf_keras": None}
    assert rules(Env((3, 11, 0), old_tf, {})) == set()  # Keras 2 is tf.keras before TF 2.16


@pytest.mark.parametrize("value", ["0", "false", "False", ""])
def test_legacy_keras_switched_off(value):
    assert rules(env(environ={"TF_USE_LEGACY_KERAS": value})) == {"keras3-for-tfmot"}


def test_legacy_keras_unset_is_a_warning():
    e = env(environ={})
    assert rules(e) == set() and rules(e, "warning") == {"keras3-for-tfmot"}


def test_tf_keras_version_mismatch():
    assert rules(Env((3, 11, 0), {**GOOD, "tf_keras": "2.15.0"}, {"TF_USE_LEGACY_KERAS": "1"})) == {"tf-keras-version"}


def test_numpy2_with_tflite_runtime():
    device = {**DEVICE, "ai-edge-litert": None, "tflite-runtime": "2.14.0", "numpy": "2.1.0"}
    assert rules(Env((3, 11, 0), device, {})) == {"numpy2-tflite-runtime"}
    assert rules(Env((3, 11, 0), {**device, "numpy": "1.26.4"}, {})) == set()


def test_tflite_runtime_on_python_312():
    device = {**DEVICE, "ai-edge-litert": None, "tflite-runtime": "2.14.0"}
    assert rules(Env((3, 12, 1), device, {}), "warning") == {"tflite-runtime-python"}
    assert rules(Env((3, 11, 9), device, {}), "warning") == set()


def test_device_without_interpreter():
    bare = {**DEVICE, "ai-edge-litert": None}
    assert rules(Env((3, 12, 0), bare, {})) == {"no-interpreter"}
    assert rules(Env((3, 12, 0), {**bare, "onnxruntime": "1.20.0"}, {}), "warning") == {"no-interpreter"}
    assert diagnose(Env((3, 12, 0), DEVICE, {})) == []


def test_mediapipe_rules(tmp_path):
    assert rules(env(mediapipe="0.10.21")) == {"mediapipe"}  # numpy 2 here
    assert rules(env(mediapipe="0.10.21", numpy="1.26.4")) == set()
    assert rules(env(environ={"TF_USE_LEGACY_KERAS": "1", "EDGETL_MEDIAPIPE_PYTHON": str(tmp_path / "nope")})) == {
        "mediapipe"
    }


def test_picamera2_built_for_another_numpy(tmp_path, monkeypatch):
    pi = {**DEVICE, "picamera2": "0.3.19", "numpy": "2.2.6"}  # pip brought NumPy 2 into the venv
    assert rules(Env((3, 11, 2), pi, {}, picamera2_numpy="1.24.2")) == {"picamera2-numpy"}
    assert "pip install 'numpy==1.*'" in diagnose(Env((3, 11, 2), pi, {}, picamera2_numpy="1.24.2"))[0].message
    assert rules(Env((3, 11, 2), {**pi, "numpy": "1.24.2"}, {}, picamera2_numpy="1.24.2")) == set()
    assert rules(Env((3, 11, 2), {**pi, "picamera2": None}, {}, picamera2_numpy="1.24.2")) == set()
    # numpy_beside reads it from the metadata in Picamera2's folder, as apt installs both
    site = tmp_path / "dist-packages"
    for name, version in (("picamera2", "0.3.19"), ("numpy", "1.24.2")):
        (site / f"{name}-{version}.egg-info").mkdir(parents=True)
        (site / f"{name}-{version}.egg-info" / "PKG-INFO").write_text(
            f"Metadata-Version: 1.2\nName: {name}\nVersion: {version}\n"
        )
    monkeypatch.syspath_prepend(str(site))
    assert doctor.numpy_beside("picamera2") == "1.24.2"
    assert doctor.numpy_beside("no-such-dist") is None


def test_installed_versions_uses_metadata_lookup():
    seen = []

    def lookup(dist):
        seen.append(dist)
        return {"tensorflow-cpu": "2.20.0", "tf-keras": "2.20.1"}.get(dist)

    versions = installed_versions(lookup)
    assert versions["tensorflow"] == "2.20.0" and versions["tf_keras"] == "2.20.1" and versions["numpy"] is None
    assert "tensorflow" in seen and "tensorflow-cpu" in seen


def test_doctor_does_not_import_tensorflow():
    import subprocess

    code = (
        "import sys; from edgetl.doctor import current_env, report; report(current_env()); "
        "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras', 'mediapipe') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_exit_codes_and_json(monkeypatch):
    monkeypatch.setattr(doctor, "current_env", lambda: env())
    ok = CliRunner().invoke(main, ["doctor", "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    assert doc["ok"] is True and doc["packages"]["tensorflow"] == "2.21.0" and doc["findings"] == []

    monkeypatch.setattr(doctor, "current_env", lambda: Env((3, 11, 0), {**GOOD, "tf_keras": None}, {}))
    bad = CliRunner().invoke(main, ["doctor"])
    assert bad.exit_code == 1
    assert (
        "error: TensorFlow 2.21.0 without tf_keras" in bad.output and "tf_keras                        -" in bad.output
    )
