"""The bundle: a folder of models plus `manifest.json`, readable without TensorFlow.

manifest.json (format_version 1)::

    {
      "format_version": 1,
      "edgetl_version": "0.1.0",
      "created": "2026-11-22T10:00:00Z",
      "source_run": {"path": "runs/cats", "config": {...}},
      "classes": ["cats", "dogs"],
      "input": {"size": 160, "color": "RGB", "layout": "NHWC", "resize": "bilinear",
                "scale": 0.00784, "offset": -1.0},      # model input = pixels * scale + offset
      "base": {"name": "mobilenet_v2", "cut_layer": null, "feature_shape": [5, 5, 1280]},
      "output": "sigmoid" | "softmax",                  # fused models output probabilities
      "models": {                                        # format name -> entry
        "tflite-int8": {"file": "model_int8.tflite", "runtime": "tflite", "role": "fused",
                        "sha256": "...", "size_bytes": 123,
                        "input": {"dtype": "uint8", "scale": 0.0078, "zero_point": 128},
                        "output": {"dtype": "uint8", "scale": 0.0039, "zero_point": 0}},
        "base-tflite-int8": {"file": "base_int8.tflite", "role": "base", ...},
        "onnx": {"file": "model.onnx", "runtime": "onnx", "role": "fused", ...}
      },
      "head": {"file": "head.npz", "sha256": "...", "size_bytes": 123},
      "openworld": {"file": "head.openworld.npz", "sha256": "...", "temperature": 1.8, "threshold": 1.6,
                    "accept": 0.95, "msp_threshold": 0.61},     # the head's calibration + unknown statistics
      "self_test": {"images": [{"file": "golden/bars.png", "sha256": "...", "grid": [...]}, ...],
                    "outputs": {format: [[probabilities per golden image]]}},   # edgetl.runtime.selftest
      "validation": {...}                                # validation.json summary, when measured
    }

Every path in the manifest is relative and must resolve inside the bundle; every file is
checked against its sha256 before it is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import BundleError
from edgetl.runtime.atomic import sha256_file
from edgetl.runtime.image import load_rgb

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
COLOR_ORDERS = ("RGB", "BGR")  # the channel order the models take; decoding always gives RGB


def resolve_inside(bundle_dir: Path, relpath: str) -> Path:
    """A manifest path -> an absolute path, refusing anything that escapes the bundle."""
    if not isinstance(relpath, str) or not relpath or Path(relpath).is_absolute():
        raise BundleError(f"manifest path {relpath!r} must be a relative path inside the bundle")
    root = bundle_dir.resolve()
    target = (root / relpath).resolve()
    if target != root and root not in target.parents:
        raise BundleError(f"manifest path {relpath!r} points outside the bundle {bundle_dir}")
    return target


def file_entry(bundle_dir: Path, path: Path) -> dict[str, Any]:
    """The manifest entry (relative file name, sha256, size) of a file inside the bundle."""
    return {
        "file": path.resolve().relative_to(bundle_dir.resolve()).as_posix(),
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
    }


@dataclass
class Bundle:
    root: Path
    manifest: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def input_size(self) -> int:
        return int(self.manifest["input"]["size"])

    @property
    def scale(self) -> float:
        return float(self.manifest["input"]["scale"])

    @property
    def offset(self) -> float:
        return float(self.manifest["input"]["offset"])

    @property
    def color(self) -> str:
        return str(self.manifest["input"].get("color", "RGB"))

    def pixels(self, source) -> np.ndarray:
        """Path / file / PIL image -> the uint8 (size, size, 3) pixels the models take, in the manifest's order."""
        rgb = load_rgb(source, self.input_size)
        return rgb if self.color == "RGB" else np.ascontiguousarray(rgb[..., ::-1])

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("models", {})

    def path_of(self, entry: dict[str, Any], verify: bool = True) -> Path:
        """Resolve an entry's file inside the bundle and (by default) check its size and sha256."""
        path = resolve_inside(self.root, entry.get("file", ""))
        if not path.is_file():
            raise BundleError(f"bundle file missing: {entry.get('file')} (re-export the bundle)")
        if verify:
            if "sha256" not in entry:
                raise BundleError(f"manifest entry for {entry.get('file')} has no sha256")
            if sha256_file(path) != entry["sha256"]:
                raise BundleError(
                    f"bundle file {entry['file']} does not match its sha256 in {MANIFEST} (tampered or corrupt)"
                )
        return path

    def model_path(self, fmt: str, verify: bool = True) -> Path:
        if fmt not in self.models:
            raise BundleError(f"format '{fmt}' is not in this bundle; it has: {', '.join(self.models) or 'none'}")
        return self.path_of(self.models[fmt], verify)

    def verify_all(self) -> None:
        for entry in self.models.values():
            self.path_of(entry)
        for key in ("head", "openworld"):
            if key in self.manifest:
                self.path_of(self.manifest[key])


def load_bundle(bundle_dir: str | Path) -> Bundle:
    """Read and sanity-check manifest.json (files are verified lazily, when used)."""
    root = Path(bundle_dir)
    if not root.is_dir():
        old = root.with_name(f".{root.name}.old")  # atomic_dir's swap was cut between its two renames
        hint = f"; an export was interrupted while swapping, the previous bundle is at {old}" if old.is_dir() else ""
        raise BundleError(f"bundle folder not found: {root}{hint}")
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{root} has no {MANIFEST}: not an edgetl bundle (or an interrupted export)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} must hold a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{path} has no integer format_version")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format {version} is newer than this edgetl understands ({FORMAT_VERSION}); upgrade edgetl"
        )
    _check_schema(manifest, path)
    bundle = Bundle(root, manifest)
    for entry in bundle.models.values():  # refuse escaping paths up front
        resolve_inside(root, entry.get("file", ""))
    if "head" in manifest:
        resolve_inside(root, manifest["head"].get("file", ""))
    for image in (manifest.get("self_test") or {}).get("images", []):
        resolve_inside(root, image.get("file", ""))
    if isinstance(manifest.get("openworld"), dict):
        resolve_inside(root, manifest["openworld"].get("file", ""))
    return bundle


def _check_schema(manifest: dict[str, Any], path: Path) -> None:
    """Types of the keys the runtime relies on, so a bad manifest is one clear error, not a KeyError later."""
    expect = {"classes": list, "input": dict, "models": dict}
    for key, kind in expect.items():
        if not isinstance(manifest.get(key), kind):
            raise BundleError(f"{path}: '{key}' must be a JSON {kind.__name__}")
    if not manifest["classes"] or not all(isinstance(c, str) for c in manifest["classes"]):
        raise BundleError(f"{path}: 'classes' must be a non-empty list of names")
    for key in ("size", "scale", "offset"):
        value = manifest["input"].get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BundleError(f"{path}: input '{key}' must be a number")
    if int(manifest["input"]["size"]) < 1:
        raise BundleError(f"{path}: input size must be positive")
    if manifest["input"].get("color", "RGB") not in COLOR_ORDERS:
        raise BundleError(f"{path}: input color must be one of {', '.join(COLOR_ORDERS)}")
    for name, entry in manifest["models"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise BundleError(f"{path}: model '{name}' must be an object with a 'file'")
    if "head" in manifest and (
        not isinstance(manifest["head"], dict) or not isinstance(manifest["head"].get("file"), str)
    ):
        raise BundleError(f"{path}: 'head' must be an object with a 'file'")
