"""edgetl.export.tflite_compact: lossless (same outputs), smaller int8 files, aligned buffers, honest breakdown."""

import numpy as np
import pytest

from edgetl._tf import keras, tf
from edgetl.export.tflite_compact import BUFFER_ALIGN, breakdown, compact


@pytest.fixture(scope="module")
def int8_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(16, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.DepthwiseConv2D(3),
            keras.layers.Conv2D(16, 1),
            keras.layers.Conv2D(16, 1),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(0)
    rep = rng.uniform(-1, 1, (20, 32, 32, 3)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    return conv.convert(), rng.integers(0, 256, (5, 1, 32, 32, 3), dtype=np.uint8)


def _outputs(data: bytes, inputs) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    out = []
    for x in inputs:
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        out.append(interp.get_tensor(interp.get_output_details()[0]["index"]).copy())
    return np.concatenate(out)


def test_compact_is_lossless_and_smaller(int8_model):
    data, inputs = int8_model
    small = compact(data)
    assert len(small) < len(data)
    assert np.array_equal(_outputs(data, inputs), _outputs(small, inputs))
    before, after = breakdown(data)["parts"], breakdown(small)["parts"]
    # three 16-channel convs share one all-zero zero-point vector per length (16 and 3 channels)
    assert after["quant_zero_point_int64"] < before["quant_zero_point_int64"]
    assert after["tensor_data"] == before["tensor_data"] and after["quant_scale"] <= before["quant_scale"]
    assert sum(after.values()) == len(small) and sum(before.values()) == len(data)
    assert compact(small) == small  # idempotent


def test_weight_buffers_stay_aligned(int8_model):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(compact(int8_model[0])), 0)
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength() >= BUFFER_ALIGN:
            assert buf._tab.Vector(buf._tab.Offset(4)) % BUFFER_ALIGN == 0
