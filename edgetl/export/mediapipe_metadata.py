"""TFLite model metadata for MediaPipe Tasks: labels, normalization, tensor descriptions.

With it, MediaPipe's ImageClassifier loads an exported .tflite with no other file: the
labels travel as an associated file and the input normalization `(x - mean) / std` equals
edgetl's `x * scale + offset` (mean = -offset / scale, std = 1 / scale).

Optional dependency. The metadata writer only imports in mediapipe 0.10.x, which needs
numpy<2 and protobuf<5 and so cannot share the training environment. Where it runs:
  1. `python=` argument, else EDGETL_MEDIAPIPE_PYTHON: that interpreter, as a subprocess
     (`scripts/setup_mediapipe_venv.sh` builds one in ~/.cache/edgetl/mediapipe-venv);
  2. else the default venv ~/.cache/edgetl/mediapipe-venv/bin/python when it exists;
  3. else this process, which must then import mediapipe 0.10.x.
The subprocess runs `python -m edgetl.export.mediapipe_metadata TASK JSON` with this package on
PYTHONPATH; this module imports only the standard library at top level for that reason.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ExportError
from edgetl.runtime.atomic import atomic_path

DEFAULT_VENV = Path("~/.cache/edgetl/mediapipe-venv").expanduser()
INSTALL_HINT = (
    "install mediapipe==0.10.21 in its own venv with scripts/setup_mediapipe_venv.sh "
    "and set EDGETL_MEDIAPIPE_PYTHON to its python"
)
MODEL_NAME = "edgetl image classifier"
UINT8 = 3  # tflite schema TensorType.UINT8
LABELS_FILE = "labels.txt"


def normalization(scale: float, offset: float) -> tuple[float, float]:
    """edgetl's `x * scale + offset` as MediaPipe's `(x - mean) / std`."""
    if not scale:
        raise ExportError(f"preprocessing scale must be non-zero, got {scale}")
    return -offset / scale, 1.0 / scale


def mediapipe_python(python: str | None = None) -> str | None:
    """The interpreter that runs MediaPipe, or None for this process (see the module docstring)."""
    chosen = python or os.environ.get("EDGETL_MEDIAPIPE_PYTHON")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise ExportError(f"MediaPipe python {chosen} is not an executable; {INSTALL_HINT}")
        return chosen
    default = DEFAULT_VENV / "bin" / "python"
    return str(default) if default.is_file() else None


# ------------------------------------------------------------- tasks (run where mediapipe is)


def _import_writer():
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, writer_utils
    except ImportError as exc:
        raise ExportError(f"cannot import MediaPipe's metadata writer ({exc}); {INSTALL_HINT}") from None
    return metadata_writer, writer_utils


def _write(tflite_in: str, tflite_out: str, labels: list[str], mean: float, std: float) -> dict[str, Any]:
    metadata_writer, writer_utils = _import_writer()
    flatbuffer, packed = split_packed_files(Path(tflite_in).read_bytes())
    buffer = bytearray(flatbuffer)
    subgraph = writer_utils.get_subgraph(buffer)
    if subgraph.InputsLength() != 1 or subgraph.OutputsLength() != 1:
        raise ExportError(f"{tflite_in}: MediaPipe's ImageClassifier needs one input and one output tensor")
    units = int(subgraph.Tensors(subgraph.Outputs(0)).ShapeAsNumpy()[-1])
    if units != len(labels):
        raise ExportError(
            f"{tflite_in} has {units} output score(s) but {len(labels)} labels; MediaPipe needs one "
            "score per class (export a 2-column output for a sigmoid head)"
        )
    _check_uint8_input(tflite_in, subgraph.Tensors(subgraph.Inputs(0)), mean, std)
    writer = metadata_writer.MetadataWriter.create(buffer)
    writer.add_general_info(MODEL_NAME, f"Classifies an image into {len(labels)} classes: {', '.join(labels)}.")
    writer.add_image_input(
        [mean], [std], name="image", description=f"RGB image, pixels normalized as (x - {mean:g}) / {std:g}."
    )
    writer.add_classification_output(
        metadata_writer.Labels().add(labels), name="probability", description="Probability of each class (labels.txt)."
    )
    model, metadata_json = writer.populate()
    model = append_packed_files(bytes(model), {k: v for k, v in packed.items() if k != LABELS_FILE})
    with atomic_path(tflite_out) as tmp:
        tmp.write_bytes(model)
    return {"path": tflite_out, "metadata": json.loads(metadata_json)}


def split_packed_files(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    """A .tflite -> (flatbuffer, files of a zip appended to it).

    edgetl's exporter appends labels.txt + edgetl.json as a zip (edgetl/metadata.py), the same
    packing the TFLite metadata standard uses; MediaPipe's writer refuses to pack labels.txt a
    second time, so the zip is taken off and its other files are put back afterwards.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            files = {info.filename: archive.read(info) for info in infos}
    except zipfile.BadZipFile:
        return data, {}
    start = min((info.header_offset for info in infos), default=len(data))
    return data[:start], files


def append_packed_files(model: bytes, files: dict[str, bytes]) -> bytes:
    """Add files to the zip at the end of `model` (or append a new zip)."""
    if not files:
        return model
    buf = io.BytesIO(model)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_STORED) as archive:  # MediaPipe reads only stored zips
        for name, content in files.items():
            archive.writestr(name, content)
    return buf.getvalue()


def _check_uint8_input(name: str, tensor, mean: float, std: float) -> None:
    """MediaPipe feeds raw pixels to a uint8 input and skips normalization, so the input's
    quantization must be the preprocessing itself: real = (q - zero_point) * scale with
    scale = 1 / std and zero_point = mean."""
    if tensor.Type() != UINT8 or tensor.Quantization() is None:
        return
    scales, zeros = tensor.Quantization().ScaleAsNumpy(), tensor.Quantization().ZeroPointAsNumpy()
    if not len(scales):
        return
    scale, zero = float(scales[0]), int(zeros[0])
    if abs(scale * std - 1.0) > 0.01 or abs(zero - mean) > 1.0:
        raise ExportError(
            f"{name}: uint8 input is quantized as (q - {zero}) * {scale:.6g} but MediaPipe feeds raw pixels; "
            f"it needs zero_point {mean:g} and scale {1 / std:.6g} (calibrate with black and white frames)"
        )


def _read(tflite: str) -> dict[str, Any]:
    try:
        from mediapipe.tasks.python.metadata import metadata
    except ImportError as exc:
        raise ExportError(f"cannot import MediaPipe's metadata reader ({exc}); {INSTALL_HINT}") from None
    displayer = metadata.MetadataDisplayer.with_model_file(tflite)
    md = json.loads(displayer.get_metadata_json())
    outputs = md.get("subgraph_metadata", [{}])[0].get("output_tensor_metadata", [])
    label_files = [
        f["name"] for t in outputs for f in t.get("associated_files", []) if f.get("type") == "TENSOR_AXIS_LABELS"
    ]
    labels = displayer.get_associated_file_buffer(label_files[0]).decode("utf-8").splitlines() if label_files else None
    return {"metadata": md, "files": sorted(displayer.get_packed_associated_file_list()), "labels": labels}


def _classify(tflite: str, images: list[str] | None = None, pixels: str | None = None) -> list[dict[str, Any]]:
    """Files (MediaPipe decodes and resizes them itself) or an .npy of uint8 RGB arrays (used as they are)."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as exc:
        raise ExportError(f"cannot import mediapipe ({exc}); {INSTALL_HINT}") from None
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=tflite), max_results=1)
    classifier = vision.ImageClassifier.create_from_options(options)
    if pixels is not None:
        arrays = np.load(pixels, allow_pickle=False)
        frames = (mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(a)) for a in arrays)
    else:
        frames = (mp.Image.create_from_file(path) for path in images or [])
    try:
        out = []
        for frame in frames:
            top = classifier.classify(frame).classifications[0].categories[0]
            out.append({"label": top.category_name, "index": top.index, "score": float(top.score)})
        return out
    finally:
        classifier.close()  # mediapipe 1.x does not release the graph on garbage collection


TASKS = {"write": _write, "read": _read, "classify": _classify}


def _run(task: str, python: str | None, **kwargs: Any) -> Any:
    """Run a task here or in the MediaPipe interpreter; errors come back as ExportError."""
    python = mediapipe_python(python)
    if python is None:
        return TASKS[task](**kwargs)
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [python, "-m", "edgetl.export.mediapipe_metadata", task, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        reason = next((line[len("error: ") :] for line in reversed(lines) if line.startswith("error: ")), None)
        raise ExportError(reason or f"MediaPipe {task} failed in {python}: {lines[-1] if lines else 'no output'}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ public API


def add_mediapipe_metadata(
    tflite_in: str | Path,
    tflite_out: str | Path,
    labels: Sequence[str],
    scale: float,
    offset: float,
    python: str | None = None,
) -> Path:
    """Write a copy of `tflite_in` with MediaPipe/TFLite metadata to `tflite_out` (atomically)."""
    labels = [str(label) for label in labels]
    if not labels or any(not label.strip() or "\n" in label for label in labels):
        raise ExportError(f"labels must be non-empty single-line names, got {labels!r}")
    if not Path(tflite_in).is_file():
        raise ExportError(f"TFLite model not found: {tflite_in}")
    mean, std = normalization(scale, offset)
    _run(
        "write",
        python,
        tflite_in=str(Path(tflite_in).resolve()),
        tflite_out=str(Path(tflite_out).resolve()),
        labels=labels,
        mean=mean,
        std=std,
    )
    return Path(tflite_out)


def read_mediapipe_metadata(tflite: str | Path, python: str | None = None) -> dict[str, Any]:
    """{"metadata": <metadata JSON>, "files": [packed file names], "labels": [class names] | None}."""
    return _run("read", python, tflite=str(Path(tflite).resolve()))


def classify_with_mediapipe(
    tflite: str | Path, images: Sequence[str | Path] | np.ndarray, python: str | None = None
) -> list[dict]:
    """Top-1 {"label", "index", "score"} per image from MediaPipe Tasks' ImageClassifier.

    `images`: file paths, which MediaPipe decodes and resizes with its own code, or a uint8
    (N, H, W, 3) RGB array, which it gets as it is (to compare the models apart from decoding).
    """
    tflite = str(Path(tflite).resolve())
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ExportError(f"pixels must be a uint8 (N, H, W, 3) array, got {images.dtype} {images.shape}")
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "pixels.npy", images)
            return _run("classify", python, tflite=tflite, pixels=str(Path(tmp) / "pixels.npy"))
    return _run("classify", python, tflite=tflite, images=[str(Path(p).resolve()) for p in images])


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry point: `python -m edgetl.export.mediapipe_metadata TASK JSON_KWARGS` -> JSON on stdout."""
    task, kwargs = (argv or sys.argv[1:])[:2]
    try:
        result = TASKS[task](**json.loads(kwargs))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
