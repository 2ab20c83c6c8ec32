"""Benchmark: the TF transfer-learning tutorial recipe vs `edgetl train`, same settings.

    python benchmarks/bench_train.py [--data DIR] [--weights FILE] [--epochs 10] [--limit N] [--out FILE.json]

(a) recipe: tf_keras image_dataset_from_directory (160 px, batch 32), RandomFlip +
    RandomRotation(0.2) layers in the model, mobilenet_v2.preprocess_input, frozen base called
    with training=False, GlobalAveragePooling2D, Dropout(0.2), Dense(1) logits, Adam 1e-4,
    model.fit for --epochs epochs: the base runs on every image in every epoch.
(b) edgetl: configs/tutorial_mobilenet_v2.yaml (the same recipe) with a fresh, empty feature cache:
    the base runs once per image and view; the head trains on cached features.

Prints one JSON object: wall seconds and final validation accuracy of each, and the speedup.
Target: speedup >= 5 and edgetl val accuracy >= recipe - 0.5 pp.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _output import emit, loadavg  # noqa: E402 - benchmarks/ is sys.path[0] when run as a script

ROOT = Path(__file__).resolve().parents[1]
DATA = "/work/shared/datasets/cats_and_dogs_filtered"
WEIGHTS = "/work/shared/weights/mobilenet_v2_1.0_224_imagenet_dequant_no_top.h5"


def limited_copy(data: Path, limit: int, where: Path) -> Path:
    """A symlinked subset with at most `limit` images per class and split."""
    for split in ("train", "val"):
        for class_dir in sorted((data / split).iterdir()):
            target = where / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:limit]:
                (target / image.name).symlink_to(image)
    return where


def run_recipe(data: Path, weights: str, epochs: int, seed: int) -> dict:
    from edgetl._tf import keras, tf

    keras.utils.set_random_seed(seed)
    start = time.time()
    size, batch = (160, 160), 32
    train_ds = keras.utils.image_dataset_from_directory(
        data / "train", shuffle=True, batch_size=batch, image_size=size, seed=seed
    )
    val_ds = keras.utils.image_dataset_from_directory(data / "val", shuffle=False, batch_size=batch, image_size=size)
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE)
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])
    base = keras.applications.MobileNetV2(input_shape=size + (3,), include_top=False, weights=weights)
    base.trainable = False
    inputs = keras.Input(shape=size + (3,))
    x = augmentation(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-4),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
    )
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, verbose=2)
    return {
        "wall_seconds": round(time.time() - start, 2),
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "val_loss": float(history.history["val_loss"][-1]),
    }


def run_edgetl(data: Path, weights: str, epochs: int, seed: int, workdir: Path) -> dict:
    from edgetl.train.config import load_config
    from edgetl.train.trainer import train

    config = load_config(
        ROOT / "configs" / "tutorial_mobilenet_v2.yaml",
        {
            "data": str(data),
            "weights": weights,
            "epochs": epochs,
            "seed": seed,
            "out": str(workdir / "run"),
            "cache_dir": str(workdir / "cache"),
        },
    )
    start = time.time()
    metrics = train(config)
    return {
        "wall_seconds": round(time.time() - start, 2),
        "val_accuracy": metrics["val_accuracy"],
        "val_loss": metrics["val_loss"],
        "feature_seconds": metrics["feature_seconds"],
        "head_seconds": metrics["head_seconds"],
        "num_train_views": metrics["num_train_views"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--weights", default=WEIGHTS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=0, help="At most N images per class and split (0: all).")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgetl-bench-") as tmp:
        work = Path(tmp)
        data = limited_copy(Path(args.data), args.limit, work / "data") if args.limit else Path(args.data)
        recipe = run_recipe(data, args.weights, args.epochs, args.seed)
        edgetl = run_edgetl(data, args.weights, args.epochs, args.seed, work)
    result = {
        "benchmark": "train",
        "data": args.data,
        "limit": args.limit,
        "epochs": args.epochs,
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_end": loadavg(),
        "recipe": recipe,
        "edgetl": edgetl,
        "speedup": round(recipe["wall_seconds"] / max(edgetl["wall_seconds"], 1e-9), 2),
        "accuracy_delta_pp": round(100 * (edgetl["val_accuracy"] - recipe["val_accuracy"]), 2),
    }
    result["target_met"] = result["speedup"] >= 5 and result["accuracy_delta_pp"] >= -0.5
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
