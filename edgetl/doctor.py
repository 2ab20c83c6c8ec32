"""`edgetl doctor`: which versions are installed, and which combinations are known to break.

Versions come from package metadata (importlib.metadata), never from importing the package:
importing TensorFlow to read its version takes seconds and can itself be what is broken.
Each rule is a small function of an `Env` snapshot that returns findings; `RULES` lists them.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# Display name -> distribution names that provide it (first installed wins).
PACKAGES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-aarch64", "tf-nightly"),
    "tf_keras": ("tf-keras", "tf_keras", "tf-keras-nightly"),
    "keras": ("keras", "keras-nightly"),
    "tensorflow-model-optimization": ("tensorflow-model-optimization",),
    "tf2onnx": ("tf2onnx",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "ai-edge-litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tflite-runtime": ("tflite-runtime", "tflite_runtime"),
    "Pillow": ("pillow", "pillow-simd"),
    "numpy": ("numpy",),
    "mediapipe": ("mediapipe", "mediapipe-numpy2", "mediapipe-nightly"),
    "picamera2": ("picamera2",),
}
FALSY = ("0", "false", "no", "off", "")


def distribution_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_versions(lookup: Callable[[str], str | None] = distribution_version) -> dict[str, str | None]:
    return {name: next((v for v in map(lookup, dists) if v), None) for name, dists in PACKAGES.items()}


def vtuple(version: str | None) -> tuple[int, ...]:
    """'2.21.0rc1' -> (2, 21, 0); None or garbage -> ()."""
    if not version:
        return ()
    parts = []
    for piece in version.split(".")[:3]:
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


@dataclass(frozen=True)
class Env:
    """What the rules look at: the Python version, package versions and a few variables."""

    python: tuple[int, ...]
    versions: Mapping[str, str | None]
    environ: Mapping[str, str] = field(default_factory=dict)
    picamera2_numpy: str | None = None  # the NumPy installed beside Picamera2 (apt's dist-packages)

    def has(self, name: str) -> bool:
        return bool(self.versions.get(name))

    def v(self, name: str) -> tuple[int, ...]:
        return vtuple(self.versions.get(name))


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (known to break: exit 1) | "warning"
    rule: str
    message: str


def numpy_in(folder: str | os.PathLike) -> str | None:
    """The version of the NumPy installed in `folder` (a site-packages), from its metadata; None if none."""
    return next(
        (
            d.version
            for d in importlib.metadata.distributions(path=[str(folder)])
            if (d.metadata["Name"] or "").lower() == "numpy"
        ),
        None,
    )


def numpy_beside(dist_name: str) -> str | None:
    """The NumPy version installed in the same folder as `dist_name`, if any."""
    try:
        return numpy_in(importlib.metadata.distribution(dist_name).locate_file(""))
    except importlib.metadata.PackageNotFoundError:
        return None


def current_env() -> Env:
    keys = ("TF_USE_LEGACY_KERAS", "EDGETL_MEDIAPIPE_PYTHON")
    return Env(
        tuple(sys.version_info[:3]),
        installed_versions(),
        {k: os.environ[k] for k in keys if k in os.environ},
        numpy_beside("picamera2"),
    )


# ----------------------------------------------------------------------------------- rules


def keras3_for_tfmot(env: Env) -> list[Finding]:
    """TF >= 2.16 makes tf.keras mean Keras 3 unless tf_keras is installed and selected."""
    if not env.has("tensorflow") or env.v("tensorflow") < (2, 16):
        return []
    rule = "keras3-for-tfmot"
    if not env.has("tf_keras"):
        return [
            Finding(
                "error",
                rule,
                f"TensorFlow {env.versions['tensorflow']} without tf_keras: tf.keras is Keras 3, "
                "which tensorflow-model-optimization and edgetl cannot use; pip install tf_keras",
            )
        ]
    legacy = env.environ.get("TF_USE_LEGACY_KERAS")
    if legacy is not None and legacy.strip().lower() in FALSY:
        return [
            Finding(
                "error",
                rule,
                f"TF_USE_LEGACY_KERAS={legacy!r} selects Keras 3 for tf.keras and tfmot; "
                "unset it or set TF_USE_LEGACY_KERAS=1",
            )
        ]
    if legacy is None and env.has("tensorflow-model-optimization"):
        return [
            Finding(
                "warning",
                rule,
                "TF_USE_LEGACY_KERAS is unset: edgetl sets it itself, but your own scripts that "
                "import tf.keras with tfmot must `export TF_USE_LEGACY_KERAS=1` first",
            )
        ]
    return []


def tf_keras_matches_tf(env: Env) -> list[Finding]:
    """tf_keras 2.X is built for TensorFlow 2.X only."""
    tf_v, tk_v = env.v("tensorflow")[:2], env.v("tf_keras")[:2]
    if tf_v >= (2, 16) and tk_v and tk_v != tf_v:
        return [
            Finding(
                "error",
                "tf-keras-version",
                f"tf_keras {env.versions['tf_keras']} does not match TensorFlow "
                f"{env.versions['tensorflow']}; pip install 'tf_keras~={tf_v[0]}.{tf_v[1]}.0'",
            )
        ]
    return []


def tflite_runtime_on_new_python(env: Env) -> list[Finding]:
    """tflite-runtime has no wheels for Python >= 3.12; ai-edge-litert is its successor."""
    if env.python[:2] >= (3, 12) and env.has("tflite-runtime"):
        return [
            Finding(
                "warning",
                "tflite-runtime-python",
                f"tflite-runtime on Python {'.'.join(map(str, env.python[:2]))} "
                "has no official wheels; use pip install ai-edge-litert",
            )
        ]
    return []


def numpy2_with_tflite_runtime(env: Env) -> list[Finding]:
    """Every tflite-runtime wheel was built against numpy 1 and fails to import with numpy 2."""
    if env.has("tflite-runtime") and env.v("numpy") >= (2,):
        return [
            Finding(
                "error",
                "numpy2-tflite-runtime",
                f"tflite-runtime {env.versions['tflite-runtime']} was built for "
                f"numpy 1 but numpy {env.versions['numpy']} is installed; "
                "pip install ai-edge-litert (or 'numpy<2')",
            )
        ]
    return []


def no_interpreter(env: Env) -> list[Finding]:
    """A device install (no TensorFlow) needs some interpreter to run a bundle."""
    if env.has("tensorflow") or env.has("ai-edge-litert") or env.has("tflite-runtime"):
        return []
    hint = "pip install 'edgetl[litert]' (ai-edge-litert)"
    if env.has("onnxruntime"):
        return [Finding("warning", "no-interpreter", f"no TFLite interpreter: only ONNX formats can run; {hint}")]
    return [
        Finding(
            "error",
            "no-interpreter",
            f"no interpreter installed (ai-edge-litert, tflite-runtime, onnxruntime "
            f"or tensorflow): bundles cannot run; {hint}",
        )
    ]


def python_supported(env: Env) -> list[Finding]:
    if env.python[:2] < (3, 10):
        return [Finding("error", "python", f"Python {'.'.join(map(str, env.python))} is too old; edgetl needs >= 3.10")]
    return []


def mediapipe_setup(env: Env) -> list[Finding]:
    """The metadata writer needs mediapipe 0.10.x (numpy 1), usually in its own venv."""
    python = env.environ.get("EDGETL_MEDIAPIPE_PYTHON")
    if python and not os.access(python, os.X_OK):
        return [
            Finding(
                "error",
                "mediapipe",
                f"EDGETL_MEDIAPIPE_PYTHON={python} is not an executable; "
                "run scripts/setup_mediapipe_venv.sh or unset it",
            )
        ]
    if env.has("mediapipe") and env.v("mediapipe") < (0, 10, 22) and env.v("numpy") >= (2,):
        return [
            Finding(
                "error",
                "mediapipe",
                f"mediapipe {env.versions['mediapipe']} needs numpy<2 but numpy "
                f"{env.versions['numpy']} is installed; use scripts/setup_mediapipe_venv.sh",
            )
        ]
    return []


def picamera2_numpy(env: Env) -> list[Finding]:
    """apt's Picamera2 is built for the system's NumPy; another NumPy major first on the path breaks its import."""
    beside, major = env.picamera2_numpy, env.v("numpy")[:1]
    if env.has("picamera2") and beside and major and vtuple(beside)[:1] != major:
        return [
            Finding(
                "error",
                "picamera2-numpy",
                f"Picamera2 {env.versions['picamera2']} is built for NumPy {beside} "
                f"but NumPy {env.versions['numpy']} comes first (pip put it in the "
                f"venv): pip install 'numpy=={vtuple(beside)[0]}.*'",
            )
        ]
    return []


RULES: tuple[Callable[[Env], list[Finding]], ...] = (
    python_supported,
    keras3_for_tfmot,
    tf_keras_matches_tf,
    tflite_runtime_on_new_python,
    numpy2_with_tflite_runtime,
    no_interpreter,
    mediapipe_setup,
    picamera2_numpy,
)


def diagnose(env: Env) -> list[Finding]:
    return [finding for rule in RULES for finding in rule(env)]


def report(env: Env) -> dict:
    """The --json document."""
    findings = diagnose(env)
    return {
        "python": ".".join(map(str, env.python)),
        "packages": dict(env.versions),
        "environment": dict(env.environ),
        "ok": not any(f.level == "error" for f in findings),
        "findings": [{"level": f.level, "rule": f.rule, "message": f.message} for f in findings],
    }


def format_text(doc: dict) -> str:
    lines = [f"{'python':32s}{doc['python']}"]
    lines += [f"{name:32s}{version or '-'}" for name, version in doc["packages"].items()]
    lines += [f"{k:32s}{v}" for k, v in doc["environment"].items()]
    lines.append("")
    lines += [f"{f['level']}: {f['message']} [{f['rule']}]" for f in doc["findings"]]
    lines.append("ok: no known-broken combination" if doc["ok"] else "found a known-broken combination")
    return "\n".join(lines)
