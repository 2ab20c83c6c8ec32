"""TensorBoard logs of a run (`--tensorboard`), for watching training live with `tensorboard --logdir RUN/tensorboard`.

    RUN/tensorboard/head/{train,validation}       epoch_loss, epoch_accuracy per head epoch (Keras callback,
                                                  or log_epoch for the logistic solver's one "epoch")
    RUN/tensorboard/refit/{train,validation}      the same for the refit on every training image
    RUN/tensorboard/fine_tune/{train,validation}  the same for fine-tuning epochs (steps continue the count)
    RUN/tensorboard/confusion                     image "confusion_matrix": confusion.png of the final model

One step per epoch (update_freq="epoch"); no graph, histograms or profiler, so the logs stay
small. The run folder's history.csv / curves.png hold the same numbers without TensorBoard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def callbacks(config, out: Path, phase: str) -> list:
    """[the Keras TensorBoard callback for `phase`] when config.tensorboard, else []."""
    if not config.tensorboard:
        return []
    from edgetl._tf import keras

    return [
        keras.callbacks.TensorBoard(
            log_dir=str(Path(out) / "tensorboard" / phase),
            update_freq="epoch",
            write_graph=False,
            profile_batch=0,
            histogram_freq=0,
        )
    ]


def log_epoch(config, out: Path, phase: str, step: int, logs: dict) -> None:
    """One epoch's loss and accuracy, train and validation, as the Keras callback writes them: for a head
    fitted without Keras' loop (head_solver logistic), so --tensorboard shows every solver's epochs."""
    if not config.tensorboard:
        return
    from edgetl._tf import tf

    for split, prefix in (("train", ""), ("validation", "val_")):
        writer = tf.summary.create_file_writer(str(Path(out) / "tensorboard" / phase / split))
        with writer.as_default():
            for metric in ("loss", "accuracy"):
                tf.summary.scalar(f"epoch_{metric}", logs[prefix + metric], step=step)
        writer.close()


def log_confusion(out: Path, confusion: np.ndarray, classes: list[str], step: int) -> Path:
    """Render the validation confusion matrix (edgetl.report.figures) and write it as an image summary."""
    from edgetl._tf import tf
    from edgetl.report.figures import confusion_png

    png = confusion_png([("validation", np.asarray(confusion))], classes)
    image = tf.image.decode_png(png, channels=3)[tf.newaxis]
    folder = Path(out) / "tensorboard" / "confusion"
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        tf.summary.image(
            "confusion_matrix",
            image,
            step=step,
            description="Validation confusion matrix (rows: true class, columns: predicted)",
        )
    writer.close()
    return folder
