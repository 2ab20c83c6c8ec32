"""Thin adapters over a TFLite or ONNX interpreter with one interface: `Model.run(batch)`.

Every adapter takes the *preprocessed float* batch (pixels * scale + offset, as in the
manifest) and returns float32 outputs: probabilities (N, num_classes) for a fused model,
features for a base model. Quantized inputs/outputs are handled here, pycoral-style, so
callers never see uint8. `from_pixels` + `outputs` is the same computation split in two,
so the runner can turn uint8 pixels into a quantized input with a 256-entry table instead
of float arithmetic. Interpreters are imported lazily: a Pi with only ai-edge-litert (or
only onnxruntime) installed can run the formats it has.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelError
from edgetl.runtime import formats
from edgetl.runtime.head import two_class_probabilities
from edgetl.runtime.image import preprocess

FLOAT_DTYPES = (np.float32, np.float16)
QUANT_DTYPES = (np.uint8, np.int8, np.int16)  # int16: 16x8 activations
# Values this close to halfway between two levels (in steps) count as ties, and ties round up.
# Why: a uint8 input calibrated on [-1, 1] has scale 2/255 and zero point 127, so pixel p lands
# exactly on p - 0.5 steps. np.round's half-to-even, steered by float32 noise, sent 17 of the 256
# levels to p - 1 (merging them with their neighbour); rounding ties up gives q = p for every
# pixel: no level lost, and the same raw pixels MediaPipe and other TFLite clients feed the model.
TIE_STEPS = 1e-3


@dataclass(frozen=True)
class Quant:
    """Affine quantization of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        # q = round(real / scale) + zero_point (ties up, see TIE_STEPS), clipped to the type's range.
        info = np.iinfo(dtype)
        q = np.floor(x / np.float32(self.scale) + np.float32(0.5 + TIE_STEPS)) + self.zero_point
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        # real = scale * (q - zero_point); via int64 so uint8 - zero_point cannot wrap around.
        return (np.float32(self.scale) * (q.astype(np.int64) - self.zero_point)).astype(np.float32)


def _as_probabilities(out: np.ndarray, role: str) -> np.ndarray:
    """A fused model with one sigmoid unit -> [1 - p, p], so callers always get (N, num_classes)."""
    if role == "fused" and out.ndim == 2 and out.shape[1] == 1:
        return two_class_probabilities(out).astype(np.float32)
    return out


class Model:
    """Common interface. `backend` names the library actually used (for notices and bench)."""

    backend: str = ""
    input_dtype: np.dtype
    role: str = "fused"

    def prepare(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """Preprocessed float batch -> the input tensor (quantized / cast) the interpreter takes."""
        raise NotImplementedError

    def from_pixels(self, pixels: np.ndarray, scale: float, offset: float) -> np.ndarray:
        """uint8 pixels (N, H, W, 3) -> the input tensor: prepare(preprocess(pixels, scale, offset))."""
        return self.prepare(preprocess(pixels, scale, offset))

    def outputs(self, tensor: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """Prepared input tensor -> float32 probabilities (fused) or features (base)."""
        raise NotImplementedError

    def invoke_one(self, tensor: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """The bare interpreter call on a prepared tensor (what bench times)."""
        raise NotImplementedError

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float batch -> float32 probabilities (fused) or features (base)."""
        return self.outputs(self.prepare(np.asarray(batch)))


# ---------------------------------------------------------------------------------- tflite
def _tflite_interpreter_class() -> tuple[type, str]:
    """ai-edge-litert first, then the older tflite-runtime wheel (with a notice); else a clear error."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    if importlib.util.find_spec("tflite_runtime") is not None and int(np.__version__.split(".")[0]) >= 2:
        # Every tflite-runtime ever published (frozen at 2.14) is built for NumPy 1, and pip pairs it with
        # NumPy 2: importing it prints NumPy's own traceback and creating an interpreter raises SystemError.
        raise ModelError(
            f"tflite_runtime is built for NumPy 1 and cannot run with NumPy {np.__version__}: "
            "pip install ai-edge-litert (its successor), or pip install 'numpy<2'"
        )
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        print("note: ai_edge_litert is not installed; using tflite_runtime", file=sys.stderr)
        return Interpreter, "tflite_runtime"
    except ImportError:
        raise ModelError(
            "no TFLite interpreter installed: run `pip install ai-edge-litert` "
            "(or pick an ONNX format with --format onnx)"
        ) from None


class TFLiteModel(Model):
    def __init__(self, path: Path, threads: int | None, role: str = "fused"):
        cls, self.backend = _tflite_interpreter_class()
        try:
            self.interpreter = cls(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path.name}: cannot load TFLite model ({str(exc).splitlines()[0][:120]})") from None
        self.role = role
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_shape = tuple(int(d) for d in inp["shape"])
        if self.input_dtype.type not in FLOAT_DTYPES + QUANT_DTYPES:
            raise ModelError(
                f"{path.name}: unsupported input dtype {self.input_dtype}; expected float32, float16, uint8 or int8"
            )
        self.in_quant = Quant(*inp["quantization"][:2]) if self.input_dtype.type in QUANT_DTYPES else None
        out_dtype = np.dtype(out["dtype"])
        self.out_quant = Quant(*out["quantization"][:2]) if out_dtype.type in QUANT_DTYPES else None
        if self.in_quant is not None and self.in_quant.scale == 0:
            raise ModelError(f"{path.name}: quantized input has scale 0 (broken conversion); re-export")
        self._tables: dict[tuple[float, float], np.ndarray | None] = {}

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if self.in_quant is not None:
            return self.in_quant.quantize(x, self.input_dtype)
        return x.astype(self.input_dtype, copy=False)

    def from_pixels(self, pixels: np.ndarray, scale: float, offset: float) -> np.ndarray:
        """A quantized input is a per-pixel-value function: look it up in a 256-entry table.

        The table is prepare(preprocess(0..255)), so the result is bit-identical to the float
        path. When it is the identity (the usual uint8 input, see TIE_STEPS) the pixels are
        the input as they are.
        """
        if self.in_quant is None or pixels.dtype != np.uint8:
            return super().from_pixels(pixels, scale, offset)
        key = (float(scale), float(offset))
        if key not in self._tables:
            levels = np.arange(256, dtype=np.uint8)
            table = self.prepare(preprocess(levels, scale, offset))
            self._tables[key] = None if table.dtype == np.uint8 and np.array_equal(table, levels) else table
        table = self._tables[key]
        return np.ascontiguousarray(pixels) if table is None else table[pixels]

    def invoke_one(self, tensor: np.ndarray) -> np.ndarray:
        """The bare interpreter call on an already-prepared (1, H, W, 3) tensor (what bench times)."""
        self.interpreter.set_tensor(self._in_index, tensor)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out_index)

    def outputs(self, tensor: np.ndarray) -> np.ndarray:
        outs = [self.invoke_one(tensor[i : i + 1]) for i in range(len(tensor))]
        out = np.concatenate(outs, axis=0)
        out = self.out_quant.dequantize(out) if self.out_quant is not None else out.astype(np.float32)
        return _as_probabilities(out, self.role)


# ------------------------------------------------------------------------------------ onnx
class OnnxModel(Model):
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int | None, role: str = "fused"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "onnxruntime is not installed: run `pip install onnxruntime` "
                "(or pick a TFLite format with --format tflite-int8)"
            ) from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{path.name}: cannot load ONNX model ({str(exc).splitlines()[0][:120]})") from None
        self.role = role
        inp = self.session.get_inputs()[0]
        self._in_name = inp.name
        dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        if inp.type not in dtypes:  # e.g. a raw-pixel uint8 graph: refuse now, not on the first image
            raise ModelError(f"{path.name}: unsupported ONNX input type {inp.type}; export with float input")
        self.input_dtype = np.dtype(dtypes[inp.type])
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in inp.shape)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x).astype(self.input_dtype, copy=False)

    def invoke_one(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._in_name: tensor})[0]

    def outputs(self, tensor: np.ndarray) -> np.ndarray:
        out = self.invoke_one(tensor)
        return _as_probabilities(np.asarray(out, dtype=np.float32), self.role)


RUNTIMES: dict[str, Callable[..., Model]] = {"tflite": TFLiteModel, "onnx": OnnxModel}
# The Python module each runtime needs, checked without importing it (to choose a default format).
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "tflite": ("ai_edge_litert", "tflite_runtime"),
    "onnx": ("onnxruntime",),
}


def runtime_available(runtime: str) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in RUNTIME_MODULES.get(runtime, ()))


def runtime_of(fmt: str, entry: dict[str, Any]) -> str:
    """The manifest's `runtime`, else the format table's, else guessed from the name (onnx* -> onnx, else tflite)."""
    guess = "onnx" if formats.fused_name(fmt).startswith("onnx") else "tflite"
    runtime = entry.get("runtime") or formats.runtime_for(fmt) or guess
    if runtime not in RUNTIMES:
        raise ModelError(f"format '{fmt}' needs runtime '{runtime}'; this edgetl knows {', '.join(RUNTIMES)}")
    return runtime


def open_model(path: Path, runtime: str, threads: int | None = None, role: str = "fused") -> Model:
    if threads is not None and threads < 1:
        raise ModelError(f"--threads must be >= 1, got {threads}")
    return RUNTIMES[runtime](Path(path), threads, role)
