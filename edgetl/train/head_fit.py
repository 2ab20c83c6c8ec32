"""The head on cached base features: trained, copied into the fused model, and scored on the val split."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgetl.models.classifier import build_head
from edgetl.train import checkpoint, distribute, tensorboard_logs
from edgetl.train.config import TrainConfig
from edgetl.train.epochs import Loop, compile_model, run_head_phase

if TYPE_CHECKING:
    from edgetl.train.trainer import Features


def fit_head(loop: Loop, feats: Features, num_classes: int, head):
    """Train the head on cached features (resuming from loop.state), copy it into the fused model's head.

    -> the trained feature head (a Keras model on feature inputs).
    """
    config, state = loop.config, loop.state
    with loop.strategy.scope():
        feature_head = build_head(feats.shape, num_classes, config)
        optimizer = compile_model(feature_head, config, num_classes, config.learning_rate, steps_per_execution=32)
        state = distribute.share_state(loop.strategy, loop.workers, state, feature_head, optimizer)
        if state and state.phase == "head":
            checkpoint.restore(feature_head, optimizer, state)
    loop.state = state
    first = state.epoch + 1 if state else 0
    if not state or state.phase == "head":
        validation = (feats.x_val, feats.y_val)
        callbacks = tensorboard_logs.callbacks(config, loop.out, "head")
        run_head_phase(
            feature_head, optimizer, first, config.epochs, feats.x_train, feats.y_views, validation, loop, callbacks
        )
        head.set_weights(feature_head.get_weights())
    return feature_head


def score_head(config: TrainConfig, feature_head, feats: Features, num_classes: int) -> tuple[np.ndarray, float]:
    """The trained head on the cached val features -> (val probabilities, val loss)."""
    scorer = feature_head
    if config.strategy == "multi_worker":  # score locally: a distributed predict/evaluate would split and regather
        scorer = build_head(feats.shape, num_classes, config)
        compile_model(scorer, config, num_classes, config.learning_rate)
        scorer.set_weights(feature_head.get_weights())
    probs = scorer.predict(feats.x_val, batch_size=256, verbose=0)
    return probs, float(scorer.evaluate(feats.x_val, feats.y_val, batch_size=256, verbose=0)[0])
