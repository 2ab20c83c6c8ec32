"""The model formats of a bundle: one table that export, validate, bench, run and the CLI read.

A bundle holds each format twice by default: the fused classifier (`tflite-int8`) and the
frozen base alone (`base-tflite-int8`), whose features go through head.npz on the device.
This table imports nothing: the device reads it to pick a format, the workstation to
convert one (edgetl.export.exporter adds a converter per name).
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_PREFIX = "base-"


@dataclass(frozen=True)
class ModelFormat:
    """Attributes:
    name: the format's name (`--format`), also the key in manifest.json's "models".
    stem, suffix: its files are model_<stem><suffix> (fused) and base_<stem><suffix> (base).
    runtime: the interpreter that runs it (tflite: LiteRT; onnx: ONNX Runtime).
    flag: `edgetl export --<flag>` asks for it (None: only by --format, or implied).
    quantized: int8 activations; validated against the float model and gated by --max-drop.
    split: also exported as base-<name> + head.npz.
    description: one line for --help and the docs.
    """

    name: str
    stem: str
    suffix: str
    runtime: str
    flag: str | None
    description: str
    quantized: bool = False
    split: bool = True


# In the order reports list them.
FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat("tflite-float32", "float32", ".tflite", "tflite", "float32", "Float TFLite."),
        ModelFormat("tflite-float16", "float16", ".tflite", "tflite", "float16", "TFLite with float16 weights."),
        ModelFormat(
            "tflite-dynamic", "dynamic", ".tflite", "tflite", "dynamic", "TFLite with int8 weights, float activations."
        ),
        ModelFormat(
            "tflite-int8",
            "int8",
            ".tflite",
            "tflite",
            "int8",
            "Full-integer TFLite (calibrated on the training split).",
            quantized=True,
        ),
        # the QAT model's base is tflite-int8's, so it has no split form (edgetl.export.qat)
        ModelFormat(
            "tflite-qat-int8",
            "qat_int8",
            ".tflite",
            "tflite",
            None,
            "Full-integer TFLite after quantization-aware training of the head (--qat-epochs).",
            quantized=True,
            split=False,
        ),
        ModelFormat("onnx", "float32", ".onnx", "onnx", "onnx", "Float ONNX (opset 17)."),
        ModelFormat(
            "onnx-int8",
            "int8",
            ".onnx",
            "onnx",
            "onnx-int8",
            "Static QDQ int8 ONNX (onnxruntime.quantization).",
            quantized=True,
        ),
    )
}
# `edgetl run`'s default: the first of these the bundle has and whose runtime is installed.
RUN_PREFERENCE = ("tflite-int8", "tflite-float16", "tflite-float32", "tflite-dynamic", "onnx-int8", "onnx")
# Float formats that can stand in for the Keras model when validation has no source run.
FLOAT_REFERENCES = ("tflite-float32", "onnx", "tflite-float16")


def fused_name(name: str) -> str:
    """base-tflite-int8 -> tflite-int8."""
    return name.removeprefix(BASE_PREFIX)


def is_base(name: str) -> bool:
    return name.startswith(BASE_PREFIX)


def is_quantized(name: str) -> bool:
    """Fused and base forms of int8 formats; names this table does not know count as float."""
    known = FORMATS.get(fused_name(name))
    return known.quantized if known else "int8" in name


def runtime_for(name: str) -> str | None:
    known = FORMATS.get(fused_name(name))
    return known.runtime if known else None


def order(names) -> list[str]:
    """Names in the table's order (fused before its base form), unknown names after them, sorted."""
    rank = {name: i for i, name in enumerate(FORMATS)}
    return sorted(names, key=lambda n: (rank.get(fused_name(n), len(rank)), is_base(n), n))
