"""Labels and preprocessing embedded in the model files themselves.

A .tflite or .onnx copied out of its bundle still knows its classes:

- .tflite: a zip archive (labels.txt + edgetl.json) appended to the flatbuffer, the way
  the TFLite Metadata standard packs associated files. Interpreters ignore trailing bytes;
  `zipfile` finds the archive from the end of the file.
- .onnx: `metadata_props` entries "classes" (JSON list) and "edgetl_preprocessing" (JSON).

Reading needs no TensorFlow: zipfile for .tflite, onnx or onnxruntime for .onnx.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from edgetl.errors import ModelError

LABELS_NAME = "labels.txt"
INFO_NAME = "edgetl.json"


def tflite_with_labels(model: bytes, classes: list[str], info: dict[str, Any]) -> bytes:
    """Flatbuffer bytes + appended zip of labels.txt and edgetl.json."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(LABELS_NAME, "".join(f"{c}\n" for c in classes))
        archive.writestr(INFO_NAME, json.dumps({"classes": list(classes), **info}, indent=1))
    return model + buf.getvalue()


def onnx_with_labels(model_proto, classes: list[str], info: dict[str, Any]):
    """Set metadata_props on an onnx.ModelProto (in place) and return it."""
    props = {
        "classes": json.dumps(list(classes)),
        "edgetl_preprocessing": json.dumps(info.get("preprocessing", {})),
        "edgetl": json.dumps(info),
    }
    kept = [p for p in model_proto.metadata_props if p.key not in props]
    del model_proto.metadata_props[:]
    for prop in kept:
        model_proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in props.items():
        model_proto.metadata_props.add(key=key, value=value)
    return model_proto


def _tflite_info(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            info = json.loads(archive.read(INFO_NAME)) if INFO_NAME in archive.namelist() else {}
            info["classes"] = [line for line in archive.read(LABELS_NAME).decode("utf-8").splitlines() if line]
            return info
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise ModelError(f"{path} has no embedded labels (not exported by edgetl?); pass a labels file") from None


def _onnx_props(path: Path) -> dict[str, str]:
    try:
        import onnxruntime as ort

        return dict(
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        )
    except ImportError:
        import onnx

        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are untyped
        raise ModelError(f"cannot read {path} as ONNX: {str(exc).splitlines()[0][:160]}") from None


def _onnx_info(path: Path) -> dict[str, Any]:
    props = _onnx_props(path)
    if "classes" not in props:
        raise ModelError(f"{path} has no 'classes' metadata (not exported by edgetl?); pass a labels file")
    info = json.loads(props.get("edgetl", "{}"))
    info["classes"] = json.loads(props["classes"])
    info["preprocessing"] = json.loads(props.get("edgetl_preprocessing", "{}"))
    return info


READERS = {".tflite": _tflite_info, ".onnx": _onnx_info}


def read_info(model_path: str | Path) -> dict[str, Any]:
    """Everything embedded in a model file: classes, preprocessing, input size, output kind."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix not in READERS:
        raise ModelError(f"{path.name}: expected a .tflite or .onnx file")
    return READERS[path.suffix](path)


def read_labels(model_path: str | Path) -> list[str]:
    """The class names embedded in a .tflite or .onnx, index order."""
    return list(read_info(model_path)["classes"])
