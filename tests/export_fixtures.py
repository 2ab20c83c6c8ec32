"""A run folder built without `edgetl train`: what export/validate tests start from.

The base is MobileNetV2 with random weights cut after block_2 (tiny and fast to convert);
the head is set in closed form to a nearest-class-mean classifier on the pooled base
features of the training images, so the right answer on these synthetic images is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import make_dataset

CUT = "block_2_add"


def _images(paths, size, scale, offset):
    from edgetl.runtime.image import load_rgb, preprocess

    return np.stack([preprocess(load_rgb(p, size), scale, offset) for p in paths])


def make_run(
    root: Path,
    classes=("red", "green", "blue"),
    size: int = 32,
    per_class: int = 8,
    val_per_class: int = 3,
    margin: float = 8.0,
    cut: str = CUT,
    version: str | None = None,
) -> Path:
    from edgetl import __version__
    from edgetl._tf import keras
    from edgetl.models.bases import get_base
    from edgetl.models.classifier import build_classifier, output_kind
    from edgetl.train.config import build_config, dump_config

    root = Path(root)
    data = make_dataset(
        root, classes=classes, per_class=per_class, size=size + 8, layout="split", val_per_class=val_per_class
    )
    config = build_config({"data": str(data), "weights": "none", "input_size": size, "cut_layer": cut, "dropout": 0.0})
    keras.utils.set_random_seed(0)
    fused, base, head = build_classifier(config, len(classes))
    spec = get_base(config.base)
    splits = {"root": str(data), "train": [], "val": []}
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            for path in sorted((data / split / name).iterdir()):
                splits[split].append([path.relative_to(data).as_posix(), label])
    train = [(data / rel, label) for rel, label in splits["train"]]
    feats = base.predict(_images([p for p, _ in train], size, spec.scale, spec.offset), verbose=0).mean(axis=(1, 2))
    labels = np.array([label for _, label in train])
    means = np.stack([feats[labels == k].mean(axis=0) for k in range(len(classes))])
    gaps = [np.sum((means[i] - means[j]) ** 2) for i in range(len(means)) for j in range(i + 1, len(means))]
    alpha = margin / max(min(gaps), 1e-6)
    if len(classes) == 2:
        w = alpha * (means[1] - means[0])[:, None]
        b = np.array([-alpha * (means[1] @ means[1] - means[0] @ means[0]) / 2])
    else:
        w = alpha * means.T
        b = -alpha * np.sum(means**2, axis=1) / 2
    head.get_layer("predictions").set_weights([w.astype(np.float32), b.astype(np.float32)])
    run = root / "run"
    run.mkdir(parents=True)
    fused.save(run / "model.keras")
    (run / "labels.txt").write_text("".join(f"{c}\n" for c in classes))
    (run / "config.yaml").write_text(dump_config(config))
    (run / "splits.json").write_text(json.dumps(splits))
    info = {
        "edgetl_version": version or __version__,
        "base": config.base,
        "cut_layer": cut,
        "input_size": size,
        "preprocessing": {"scale": spec.scale, "offset": spec.offset, "color": "RGB"},
        "output": output_kind(len(classes))[0],
        "feature_shape": list(base.output.shape[1:]),
        "classes": list(classes),
        "pooling": config.pooling,
        "dense_activation": config.dense_activation,
        "weights": "none",
    }
    (run / "run.json").write_text(json.dumps(info))
    return run
