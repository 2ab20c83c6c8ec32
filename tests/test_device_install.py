"""The device install README and device/ document: one pip command, the runtime only.

A wheel of this checkout is built once. Fresh venvs (no system site-packages, so nothing of
the workstation leaks in) install `<wheel>[litert]` and `<wheel>[onnx]` (the latter under
Python 3.10, JetPack 6's, when there is one), and the wheel with the older tflite-runtime.
Each must hold no package of the training side and classify an image with the label and
score the workstation gets. device/install.sh is run for real on a Raspberry Pi OS-like system
NumPy 1.24 (which it must keep, for apt's Picamera2), and the systemd unit it fills in passes
`systemd-analyze verify` without a warning.

These tests install from the package registry; they skip, saying so, when it cannot be reached.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bundle_fixture import colour_image, make_dataset
from python310 import find_python310

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# Nothing a device venv may contain: TensorFlow and everything that comes with training.
TRAINING_SIDE = {
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-intel",
    "tf-keras",
    "keras",
    "tensorboard",
    "tensorflow-model-optimization",
    "tf2onnx",
    "onnx",
    "matplotlib",
    "jax",
    "torch",
}
PIP = ("-m", "pip", "--disable-pip-version-check")


def _run(cmd, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """edgetl-<version>-py3-none-any.whl built from this checkout (as on the workstation before copying it over)."""
    probe = _run(
        [sys.executable, *PIP, "download", "--no-deps", "--dest", tmp_path_factory.mktemp("probe"), "click"],
        timeout=180,
    )
    if probe.returncode != 0:
        pytest.skip(f"package registry unreachable (pip download click: {probe.stderr.strip().splitlines()[-1:]})")
    src = tmp_path_factory.mktemp("src")  # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(ROOT / "edgetl", src / "edgetl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    done = _run([sys.executable, *PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src])
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = dist.glob("edgetl-*.whl")
    return built


def fresh_venv(venv: Path, *requirements, python=sys.executable) -> subprocess.CompletedProcess:
    """A venv with no system site-packages at `venv`, then pip install `requirements` into it: pip's result."""
    assert _run([python, "-m", "venv", "--clear", venv], timeout=120).returncode == 0
    return _run([venv / "bin/python", *PIP, "install", "--quiet", *requirements])


def installed(python: Path) -> dict[str, str]:
    done = _run([python, *PIP, "list", "--format", "json"], timeout=120)
    assert done.returncode == 0, done.stderr
    return {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(done.stdout)}


def classify(edgetl_exe: Path, bundle: Path, image: Path, fmt: str, env=None) -> dict:
    done = _run([edgetl_exe, "run", bundle, image, "--json", "--format", fmt], timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def red_image(tmp_path) -> Path:
    import numpy as np

    path = tmp_path / "red.png"
    colour_image("red", np.random.default_rng(3), 48).save(path)
    return path


@pytest.fixture(scope="module")
def device_venv(wheel, tmp_path_factory):
    """extra -> a fresh venv (no system site-packages) with `<wheel>[extra]` installed, made once."""
    made: dict[str, Path] = {}

    def get(extra: str) -> Path:
        if extra not in made:
            python = (
                find_python310() if extra == "onnx" else None
            ) or sys.executable  # one of the two under JetPack 6's Python 3.10
            venv = tmp_path_factory.mktemp(f"venv_{extra}")
            done = fresh_venv(venv, f"{wheel}[{extra}]", python=python)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            made[extra] = venv
        return made[extra]

    return get


@pytest.mark.parametrize(
    "extra, fmt, runtime, other",
    [("litert", "tflite-int8", "ai-edge-litert", "onnxruntime"), ("onnx", "onnx", "onnxruntime", "ai-edge-litert")],
)
def test_one_pip_command_installs_the_runtime_only(extra, fmt, runtime, other, device_venv, bundle, red_image):
    from edgetl.runtime import predictor as predict

    venv = device_venv(extra)
    packages = installed(venv / "bin/python")
    assert {"edgetl", "numpy", "pillow", "click", "pyyaml", runtime} <= packages.keys()
    assert other not in packages
    assert not TRAINING_SIDE & packages.keys(), sorted(TRAINING_SIDE & packages.keys())
    assert not [p for p in packages if p.startswith("tensorflow")]
    no_tf = _run([venv / "bin/python", "-c", "import tensorflow"], timeout=60)
    assert no_tf.returncode != 0 and "ModuleNotFoundError" in no_tf.stderr

    # the device venv gives the label and score the workstation gets
    predictor = predict.open_predictor(bundle, fmt)
    expected = predictor.classify(red_image)
    row = classify(venv / "bin/edgetl", bundle, red_image, fmt)
    assert row["label"] == "red" == predictor.classes[int(expected.argmax())]
    assert abs(row["score"] - float(expected.max())) <= 1e-6


def test_device_venv_retrains_the_head_rolls_back_and_benches(device_venv, bundle, red_image, tmp_path):
    """update-head, rollback-head and bench need nothing beyond the [litert] install; train says what it lacks."""
    edgetl = device_venv("litert") / "bin/edgetl"
    data = make_dataset(tmp_path / "new", {"blue": 8, "red": 8}, seed=7)
    done = _run([edgetl, "update-head", bundle, "--data", data, "--force", "--json", "--epochs", "50"], timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["swapped"] is True and result["new_images"] == 16, result
    assert result["record"]["file"] and (bundle / "device" / "heads" / result["record"]["file"]).is_file()
    row = classify(edgetl, bundle, red_image, "tflite-int8")  # now base model + the numpy head
    assert row["label"] == "red"
    done = _run([edgetl, "rollback-head", bundle, "--json"], timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout) == {"head": None}, done.stdout + done.stderr

    done = _run([edgetl, "train", "--data", data, "--out", tmp_path / "run", "--weights", "none"], timeout=120)
    assert done.returncode == 2 and 'needs tensorflow, which this install lacks: pip install ".[train]"' in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()

    done = _run([edgetl, "bench", bundle, "--runs", "5", "--json"], timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    formats = report["formats"]
    assert {"tflite-int8", "tflite-float32"} <= formats.keys() and "onnx" not in formats  # no onnxruntime here
    int8 = formats["tflite-int8"]
    assert int8["size_bytes"] > 0 and 0 < int8["bare_ms"]["p50"] <= int8["path_ms"]["p50"] and int8["peak_rss_mb"] > 0


def test_older_tflite_runtime_wheel_runs_bundles_and_numpy2_is_one_error(wheel, bundle, red_image, tmp_path):
    """A device with the frozen tflite-runtime wheel instead of ai-edge-litert (README: the fallback).

    Its last release (2.14) must still run what today's converter writes. It is built for NumPy 1,
    and pip pairs it with NumPy 2, which used to end in NumPy's traceback and a SystemError."""
    from edgetl.runtime import predictor as predict

    venv = tmp_path / "venv_tflite_runtime"
    done = fresh_venv(venv, wheel, "tflite-runtime", "numpy<2")
    if done.returncode != 0 and "No matching distribution found for tflite-runtime" in done.stderr:
        pytest.skip(f"no tflite-runtime wheel for Python {sys.version_info[0]}.{sys.version_info[1]} on this platform")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    packages = installed(venv / "bin/python")
    assert "ai-edge-litert" not in packages and packages["numpy"].startswith("1.")
    for fmt in ("tflite-int8", "tflite-float32"):
        expected = predict.open_predictor(bundle, fmt).classify(red_image)
        done = _run([venv / "bin/edgetl", "run", bundle, red_image, "--json", "--format", fmt], timeout=120)
        assert done.returncode == 0 and "using tflite_runtime" in done.stderr, done.stderr
        row = json.loads(done.stdout)
        assert row["label"] == "red" and abs(row["score"] - float(expected.max())) <= 1e-6, (fmt, row)

    done = _run([venv / "bin/python", *PIP, "install", "--quiet", "numpy>=2"])
    assert done.returncode == 0, done.stderr[-2000:]
    done = _run([venv / "bin/edgetl", "run", bundle, red_image], timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: tflite_runtime is built for NumPy 1 and cannot run with NumPy "
        f"{installed(venv / 'bin/python')['numpy']}: pip install ai-edge-litert "
        "(its successor), or pip install 'numpy<2'"
    ], done.stderr


def test_install_script_keeps_the_system_numpy_and_fills_in_the_unit(wheel, bundle, red_image, tmp_path):
    """install.sh on a Raspberry Pi OS-like system: apt's packages (Picamera2) are built for the
    system's NumPy 1.24, so the venv must keep using it, although ai-edge-litert's ml_dtypes would
    pull NumPy 2. The system's dist-packages is emulated by a folder on PYTHONPATH holding NumPy 1.24.2."""
    python = find_python310()
    if python is None:  # a 3.11 with the workstation's site-packages would satisfy everything from there
        pytest.skip("no Python 3.10 (a clean interpreter for install.sh's --system-site-packages venv)")
    system_site = tmp_path / "dist-packages"
    done = _run([python, *PIP, "install", "--quiet", "--target", system_site, "numpy==1.24.2"])
    assert done.returncode == 0, done.stderr[-2000:]
    venv = tmp_path / "edgetl-venv"
    env = {**os.environ, "PYTHON": python, "PYTHONPATH": str(system_site)}
    done = _run(["bash", ROOT / "device/install.sh", "--venv", venv, "--from", f"{wheel}[litert]"], env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"edgetl, version \d+\.\d+", done.stdout), done.stdout
    assert "note: keeping NumPy 1.x, which the system's Python packages are built for (found 1.24.2)" in done.stderr
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert not (site / "numpy").exists()  # the system's NumPy is the one in use
    numpy = _run([venv / "bin/python", "-c", "import numpy; print(numpy.__version__)"], env=env)
    assert numpy.stdout.strip() == "1.24.2", numpy.stdout + numpy.stderr
    assert classify(venv / "bin/edgetl", bundle, red_image, "tflite-int8", env=env)["label"] == "red"

    unit = _run(["bash", ROOT / "device/install.sh", "--print-unit", bundle, "--venv", venv])
    assert unit.returncode == 0, unit.stderr
    assert f"ExecStart={venv}/bin/edgetl run {bundle} --camera 0" in unit.stdout
    assert f"ReadWritePaths={bundle}" in unit.stdout and not re.search(r"@[A-Z]+@", unit.stdout)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit was filled in but not verified")
    path = tmp_path / "edgetl-classifier.service"
    path.write_text(unit.stdout)
    verify = _run(["systemd-analyze", "verify", path], timeout=120)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr


def test_install_script_refuses_bad_arguments(tmp_path):
    for args, message in (
        (["--print-unit", tmp_path], "not an edgetl bundle"),
        (["--venv"], "--venv needs a value"),
        (["--frobnicate"], "unknown option --frobnicate"),
        (["--service", tmp_path, "--from", "x"], "not an edgetl bundle"),
    ):
        done = _run(["bash", ROOT / "device/install.sh", *args], timeout=60)
        assert (
            done.returncode == 2
            and done.stderr.startswith("error: ")
            and message in done.stderr
            and len(done.stderr.strip().splitlines()) == 1
        ), done.stderr
