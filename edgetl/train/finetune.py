"""Fine-tuning helpers: unfreeze the top of the base, feed (augmented) images on the fly.

Fine-tuning starts from the pretrained base weights (that is the weight initialisation) and
the head trained on cached features, then trains end-to-end at a low learning rate. Unlike
head training, the base changes every step, so features cannot be cached: images are decoded
once into memory and augmented per epoch with `edgetl.train.augment`.

BatchNormalization layers stay frozen, and the fused model calls the base with
training=False, so their statistics stay in inference mode (the TF tutorial's advice).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetl.models.bases import get_base
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.train import checkpoint, tensorboard_logs
from edgetl.train.augment import AugmentParams, augment, view_rng
from edgetl.train.data import Dataset
from edgetl.train.epochs import Loop, compile_model, run_phase

if TYPE_CHECKING:
    from edgetl.train.trainer import Features


def unfreeze_top(base, n: int) -> list[str]:
    """Make exactly the top `n` non-BatchNormalization layers of `base` trainable; returns their names.

    Layers are counted from the output backwards over `base.layers` (the input layer,
    BatchNormalization layers and the taps' pooling are skipped and stay frozen); everything else stays frozen.
    """
    from edgetl._tf import keras

    base.trainable = True
    candidates = [
        layer
        for layer in base.layers
        if not isinstance(layer, (keras.layers.InputLayer, keras.layers.BatchNormalization))
        and not layer.name.startswith("taps_")  # the weightless pooling of multi-level features
    ]
    top = set(id(layer) for layer in candidates[-n:]) if n > 0 else set()
    for layer in base.layers:
        layer.trainable = id(layer) in top
    return [layer.name for layer in base.layers if layer.trainable]


def trainable_layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers if layer.trainable]


def load_pixels(paths: list[Path], size: int) -> np.ndarray:
    """Decode images (already known to be readable) into one uint8 array, in parallel threads."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        images = list(pool.map(lambda p: load_rgb(p, size), paths))
    return np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)


def image_sequence(
    pixels: np.ndarray,
    labels: np.ndarray,
    keys: list[str],
    batch_size: int,
    scale: float,
    offset: float,
    params: AugmentParams | None,
    seed: int,
    epoch: int,
    shuffle: bool = True,
):
    """A keras Sequence over one epoch: fixed seeded order, each image augmented with its own seed."""
    from edgetl._tf import keras

    order = np.random.default_rng([seed, epoch, 7]).permutation(len(pixels)) if shuffle else np.arange(len(pixels))

    class Images(keras.utils.Sequence):
        def __len__(self):
            return int(np.ceil(len(order) / batch_size))

        def __getitem__(self, index):
            idx = order[index * batch_size : (index + 1) * batch_size]
            batch = [
                pixels[i] if params is None else augment(pixels[i], params, view_rng(seed, keys[i], 1000 + epoch))
                for i in idx
            ]
            return preprocess(np.stack(batch), scale, offset), labels[idx]

    return Images()


def fine_tune(loop: Loop, dataset: Dataset, fused, base, params: AugmentParams, feats: Features):
    """Unfreeze the top layers of the base and train end to end on images -> (val probabilities, val loss)."""
    config, state = loop.config, loop.state
    spec = get_base(config.base)
    unfrozen = unfreeze_top(base, config.fine_tune_layers)
    loop.echo(f"fine-tuning the top {len(unfrozen)} layers of {spec.name} from {unfrozen[0] if unfrozen else '-'}")
    with loop.strategy.scope():
        optimizer = compile_model(fused, config, len(dataset.classes), config.fine_tune_learning_rate)
        if state and state.phase == "fine_tune":
            checkpoint.restore(fused, optimizer, state)
    keys = [str(p) for p, _ in dataset.train]
    train_pixels = load_pixels([p for p, _ in dataset.train], config.input_size)
    val_pixels = load_pixels([p for p, _ in dataset.val], config.input_size)
    batch, scale, offset = config.batch_size, spec.scale, spec.offset
    val_seq = image_sequence(val_pixels, feats.y_val, [], batch, scale, offset, None, config.seed, 0, shuffle=False)
    augmented = params if config.augment else None

    def epoch_data(epoch):
        images = image_sequence(train_pixels, feats.y_train, keys, batch, scale, offset, augmented, config.seed, epoch)
        return images, None

    offset = sum(1 for r in loop.history if r["phase"] != "fine_tune")  # the head's epochs, numbered on
    first = state.epoch + 1 if state and state.phase == "fine_tune" else offset
    last = offset + config.fine_tune_epochs
    callbacks = tensorboard_logs.callbacks(config, loop.out, "fine_tune")
    run_phase("fine_tune", fused, optimizer, first, last, epoch_data, val_seq, loop, callbacks)
    probs = fused.predict(val_seq, verbose=0)
    val_loss = float(fused.evaluate(val_seq, verbose=0)[0])
    base.trainable = False
    return probs, val_loss
