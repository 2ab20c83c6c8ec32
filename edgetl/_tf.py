"""The one place the training side imports TensorFlow.

edgetl uses `tf_keras` (Keras 2) everywhere: with Keras 3, tensorflow-model-optimization's
quantization-aware training breaks. TF_USE_LEGACY_KERAS makes `tf.keras` and tfmot resolve
to the same tf_keras, so models built here can be handed to tfmot and the TFLite converter.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide C++ info/warnings (e.g. cuInit on CPU hosts)

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

# Dropout draws from a tf.random.Generator whose state is a variable: edgetl.train.trainer resets it
# per epoch, so a resumed run is identical to an uninterrupted one without retracing.
keras.backend.experimental.enable_tf_random_generator()

__all__ = ["tf", "keras", "set_seed"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TF for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass
