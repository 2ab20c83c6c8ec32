"""The converters: Keras model -> .tflite / .onnx at a given precision.

Full-integer models are calibrated on a representative dataset (edgetl.export.representative:
a class-stratified sample of the run's training split, preprocessed as in training). int8
TFLite pins `TFLITE_BUILTINS_INT8`: a graph that cannot be fully quantized fails instead of
silently keeping float ops. Everything a conversion depends on is a `QuantSpec`
so the fallback ladder (edgetl.export.ladder) can describe each rung as a change to it.
Every .tflite is passed through `edgetl.export.tflite_compact.compact` (lossless: identical vectors
such as the per-channel int64 zero points are stored once), which takes the int8 MobileNetV2
from 30.6 % to 27.9 % of the float file.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ExportError
from edgetl.export.representative import Calibration


@dataclass(frozen=True)
class QuantSpec:
    """How one model file is converted.

    Attributes:
      weights: float32 | float16 | dynamic (int8 weights, float activations) | int8 (full integer).
      activations: int8 | int16 (16x8 TFLite / QInt16 ONNX) for full-integer models.
      io: dtype of the model's input and output tensors for full-integer TFLite.
      calibration: number of calibration images.
      method: ONNX calibration method (minmax | entropy | percentile).
      per_channel: per-channel weight scales (ONNX; TFLite always is).
      float_ends: keep the first conv and the last dense layer in float.
      unsigned: ONNX uint8 weights and activations (U8U8), what onnx-int8 exports. On x86 CPUs
        without VNNI, onnxruntime's U8S8/S8S8 kernels (VPMADDUBSW) can saturate: measured on
        MobileNetV2 features, 45 % mean relative error against float with S8S8, 24 % with U8U8
        (TFLite int8: 12 %). ARM computes S8S8 exactly, so an S8S8 model validated on such a
        workstation answers differently on a Pi (up to 0.27 in probability on cats/dogs); U8U8
        outputs were bit-identical on x86 and an emulated Cortex-A76 (docs/arm64.md).
    """

    weights: str = "float32"
    activations: str = "int8"
    io: str = "float32"
    calibration: int = 0
    method: str = "minmax"
    per_channel: bool = True
    float_ends: bool = False
    unsigned: bool = False

    def replace(self, **changes: Any) -> QuantSpec:
        return dataclasses.replace(self, **changes)


# --- TFLite ------------------------------------------------------------------------------


def _tflite_layers(model_bytes: bytes) -> list[str]:
    """Output tensor names of the first CONV_2D and the last FULLY_CONNECTED op (for float_ends)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_content=model_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    tensors = interp.get_tensor_details()
    ops = interp._get_ops_details()  # noqa: SLF001 - the only way to list ops
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    denses = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    return [tensors[op["outputs"][0]]["name"] for op in (convs[:1] + denses[-1:])]


def tflite_bytes(model, spec: QuantSpec, calibration: Calibration | None) -> bytes:
    """Convert a tf_keras model with TFLiteConverter per `spec`, then compact it (lossless)."""
    from edgetl.export.tflite_compact import compact

    return compact(_convert_tflite(model, spec, calibration))


def _convert_tflite(model, spec: QuantSpec, calibration: Calibration | None) -> bytes:
    from edgetl._tf import tf

    def make():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if spec.weights != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if spec.weights == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter

    try:
        if spec.weights != "int8":
            return make().convert()
        if calibration is None:
            raise ExportError("full-integer export needs calibration images")
        images, _ = calibration.take(spec.calibration)
        io = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32, "int16": tf.int16}[spec.io]

        def representative():
            for image in images:
                yield [image[None]]

        ops = {
            "int8": tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            "int16": tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        }[spec.activations]
        converter = make()
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [ops]
        converter.inference_input_type = converter.inference_output_type = io
        if not spec.float_ends:
            return converter.convert()
        # Selective quantization: the named ops stay float, so plain builtins must be allowed.
        names = _tflite_layers(converter.convert())
        converter = make()
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [ops, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.inference_input_type = converter.inference_output_type = io
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative, debug_options=options
        )
        return debugger.get_nondebug_quantized_model()
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ExportError(
            f"TFLite conversion ({spec.weights}/{spec.activations}) failed: "
            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}"
        ) from None


def tflite_io_params(path: Path) -> dict[str, Any]:
    """{"input": {dtype, scale, zero_point}, "output": {...}} read back from the interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    detail = lambda d: {
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(d["quantization"][0]),  # noqa: E731
        "zero_point": int(d["quantization"][1]),
        "shape": [int(v) for v in d["shape_signature"]],
    }
    return {"input": detail(interp.get_input_details()[0]), "output": detail(interp.get_output_details()[0])}


# --- ONNX --------------------------------------------------------------------------------

OPSET = 17


def onnx_float(model, size: int, out_path: Path) -> Path:
    """tf2onnx with an explicit NHWC float input named 'image' and a pinned opset."""
    import tf2onnx

    from edgetl._tf import tf

    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    try:
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET, output_path=str(out_path))
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types
        raise ExportError(f"ONNX conversion failed: {str(exc).strip().splitlines()[0][:200]}") from None
    return out_path


# onnxruntime's histogram calibrators (entropy, percentile) keep every intermediate tensor of
# every calibration image until the reader is exhausted: ~30 MB an image for MobileNetV2 at
# 224 px, so the ladder's 800-image entropy rung was OOM-killed on a 24 GB machine. With
# `CalibStridedMinMax` onnxruntime reads the images in equal chunks and merges each chunk's
# histograms into the running ones (its calibrators support that), so memory holds one chunk.
# MinMax already reduces each tensor to two numbers per image and is left as it was.
HISTOGRAM_CHUNK = 16


def calibration_chunk(n: int, most: int = HISTOGRAM_CHUNK) -> int:
    """The largest chunk size <= most that divides n (onnxruntime requires equal chunks)."""
    return next(k for k in range(max(1, min(most, n)), 0, -1) if n % k == 0)


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed images (batch 1), readable in ranges."""

    def __init__(self, images: np.ndarray, name: str):
        self._images, self._name = images, name
        self.set_range(0, len(images))

    def __len__(self) -> int:
        return len(self._images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._order = iter(range(start_index, min(end_index, len(self._images))))

    def get_next(self):
        i = next(self._order, None)
        return None if i is None else {self._name: self._images[i][None]}

    def rewind(self):  # pragma: no cover - not used by static quantization
        pass


def _onnx_ends(path: Path) -> list[str]:
    import onnx

    nodes = onnx.load(str(path)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    denses = [n.name for n in nodes if n.op_type in ("MatMul", "Gemm")]
    return convs[:1] + denses[-1:]


def onnx_int8(float_path: Path, spec: QuantSpec, calibration: Calibration, out_path: Path) -> Path:
    """Static QDQ quantization with onnxruntime (per-channel, selectable calibration method)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images, _ = calibration.take(spec.calibration)
    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    try:
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        exclude = _onnx_ends(pre) if spec.float_ends else None
        int16 = spec.activations == "int16"
        extra: dict[str, Any] = {"UseQDQContribOps": True} if int16 else {}
        if spec.method != "minmax":
            extra["CalibStridedMinMax"] = calibration_chunk(len(images))  # see HISTOGRAM_CHUNK
        with contextlib.redirect_stdout(StringIO()):  # histogram calibrators print a line per chunk
            quantize_static(
                str(pre),
                str(out_path),
                _Reader(images, "image"),
                quant_format=QuantFormat.QDQ,
                per_channel=spec.per_channel,
                activation_type=QuantType.QInt16 if int16 else QuantType.QUInt8 if spec.unsigned else QuantType.QInt8,
                weight_type=QuantType.QUInt8 if spec.unsigned else QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method={
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }[spec.method],
                extra_options=extra or None,
            )
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types
        raise ExportError(
            f"ONNX int8 quantization ({spec.method}) failed: {str(exc).strip().splitlines()[0][:200]}"
        ) from None
    finally:
        pre.unlink(missing_ok=True)
    return out_path
