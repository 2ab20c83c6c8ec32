"""The default config's cached features of one data set, for benchmarks that compare heads on them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cached_features(data: str, weights: str, cache: str, echo=print, **overrides):
    """-> edgetl's Features (configs/mobilenet_v2.yaml on `data`, extracted once into `cache`)."""
    from edgetl.models.classifier import build_classifier
    from edgetl.train import distribute
    from edgetl.train.augment import AugmentParams
    from edgetl.train.config import load_config
    from edgetl.train.data import load_dataset
    from edgetl.train.trainer import extract_features

    config = load_config(
        ROOT / "configs" / "mobilenet_v2.yaml", {"data": data, "weights": weights, "cache_dir": cache, **overrides}
    )
    strategy, workers = distribute.make_strategy("default")
    dataset = load_dataset(config.data, config.val_split, config.seed)
    _, base, _ = build_classifier(config, len(dataset.classes))
    feats, dataset = extract_features(config, dataset, base, AugmentParams.from_config(config), strategy, workers, echo)
    return feats, dataset.classes
