"""The device side of edgetl: numpy, Pillow and a TFLite/ONNX interpreter only.

Nothing in this package imports TensorFlow, tf_keras or anything from the training side
(tests/test_runtime_imports.py enforces it). The training side may import from here,
which is how training and the device share one image decoder and one head format.
"""
