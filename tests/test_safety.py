"""No unsafe loading anywhere: no pickle, safe YAML only, no eval/exec, manifest paths stay inside.

A source scan (so a future change cannot slip one in) plus behavioural checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgetl.train.config import load_config, read_yaml
from edgetl.errors import BundleError, ConfigError
from edgetl.runtime.bundle import load_bundle

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
    offenders = [f"{p.name}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(pattern, line) and "noqa: safety" not in line]
    assert not offenders, f"{what} found in {offenders}"


def test_every_np_load_refuses_pickles():
    calls = [(p.name, line) for p in SOURCES for line in p.read_text().splitlines() if "np.load(" in line]
    assert all("allow_pickle=False" in line for _, line in calls), calls


def test_yaml_python_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("base: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(path)


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_pickled_npz_is_refused(tmp_path):
    from edgetl.runtime.head import NumpyHead

    path = tmp_path / "head.npz"
    np.savez(path, format=np.array([{"a": 1}], dtype=object))
    with pytest.raises(BundleError):
        NumpyHead.load(path)


def _manifest(tmp_path, **models):
    doc = {"format_version": 1, "classes": ["a", "b"], "input": {"size": 32, "scale": 1.0, "offset": 0.0},
           "models": models}
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
