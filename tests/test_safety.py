"""No unsafe loading anywhere: no pickle, safe YAML only, no eval/exec, manifest paths stay inside.

A source scan (so a future change cannot slip one in) plus behavioural checks. A line that
must use one of these names safely says why in a `# safe-load: ...` comment (the restricted
unpickler of edgetl.models.torch_weights, tested with a malicious pickle).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgetl.errors import BundleError, ConfigError
from edgetl.runtime.bundle import load_bundle
from edgetl.train.config import load_config

SOURCES = sorted(p for p in (Path(__file__).parents[1] / "edgetl").rglob("*.py"))
FORBIDDEN = {
    r"^\s*import pickle|^\s*from pickle|cPickle|\bdill\b": "pickle",
    r"allow_pickle\s*=\s*True": "np.load(allow_pickle=True)",
    r"yaml\.load\(|yaml\.unsafe_load|yaml\.full_load|Loader\s*=\s*yaml\.(Unsafe|Full)?Loader": "unsafe YAML loading",
    r"(?<![\w.])eval\(|(?<![\w.])exec\(": "eval/exec",
    r"torch\.load\(": "torch.load",
    r"\.extractall\(": "archive extraction (zip/tar members may hold ../ paths)",
    r"shell\s*=\s*True|os\.system\(|os\.popen\(": "shell command lines",
}


def test_sources_were_found():
    assert len(SOURCES) > 10


@pytest.mark.parametrize("pattern,what", FORBIDDEN.items(), ids=list(FORBIDDEN.values()))
def test_no_unsafe_loading_in_sources(pattern, what):
    offenders = [
        f"{p.name}:{i}"
        for p in SOURCES
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(pattern, line) and "# safe-load:" not in line
    ]
    assert not offenders, f"{what} found in {offenders}"


def test_every_np_load_refuses_pickles():
    calls = [(p.name, line) for p in SOURCES for line in p.read_text().splitlines() if "np.load(" in line]
    assert all("allow_pickle=False" in line for _, line in calls), calls


# A YAML Python tag (!!python/object/apply) is the catalogue case train-config-python-tag (test_catalogue.py).


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


class _Payload:
    """Unpickling this runs os.system: what a malicious head.npz would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_pickled_npz_is_refused(tmp_path):
    from edgetl.runtime.head import NumpyHead

    good = NumpyHead(["a", "b"], "avg", "softmax", "relu", [np.ones((3, 2), np.float32)], [np.zeros(2, np.float32)])
    arrays = dict(np.load(io.BytesIO(good.to_bytes()), allow_pickle=False))
    path = tmp_path / "head.npz"
    np.savez(path, **arrays)
    assert NumpyHead.load(path).classes == ["a", "b"]  # the same file without the pickle loads
    marker = tmp_path / "pwned"
    np.savez(path, **{**arrays, "W0": np.array([_Payload(marker)], dtype=object)})
    with pytest.raises(BundleError, match="Object arrays cannot be loaded when allow_pickle=False"):
        NumpyHead.load(path)
    assert not marker.exists()


def _manifest(tmp_path, **models):
    doc = {
        "format_version": 1,
        "classes": ["a", "b"],
        "input": {"size": 32, "scale": 1.0, "offset": 0.0},
        "models": models,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    return tmp_path


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a/../../x.tflite", ""])
def test_manifest_paths_outside_the_bundle_are_refused(tmp_path, bad):
    with pytest.raises(BundleError):
        load_bundle(_manifest(tmp_path, x={"file": bad, "sha256": "0"}))


def test_symlink_out_of_the_bundle_is_refused(tmp_path):
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"x")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.tflite").symlink_to(outside)
    with pytest.raises(BundleError, match="outside"):
        load_bundle(_manifest(bundle, x={"file": "model.tflite", "sha256": "0"}))


def test_newer_bundle_format_is_refused(tmp_path):
    doc = {"format_version": 99, "classes": ["a"], "input": {"size": 32, "scale": 1, "offset": 0}, "models": {}}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="newer"):
        load_bundle(tmp_path)
