"""Data health: what in a dataset caps the accuracy a model can reach, found from its cached features.

    exact duplicates      the same file bytes (sha256) twice, within a split or across train and val
    near duplicates       a train and a val image whose base features point the same way
                          (cosine >= NEAR_DUPLICATE): val then measures memory, not generalisation
    likely mislabelled    out-of-fold predictions (logistic regression on the features, k-fold) that
                          disagree confidently with the label, as confident learning finds them
                          (cleanlab.filter.find_label_issues)
    class imbalance       the largest class over the smallest (>= IMBALANCED: flagged)
    undecodable files     what feature extraction skipped, with the reason

`edgetl train` writes this into the run folder (data_health.json, a section of its report) from
the features it has anyway; `edgetl check-data --data DIR` computes the same for a folder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NEAR_DUPLICATE = 0.97  # cosine of pooled base features; re-encoded or resized copies score > 0.98
IMBALANCED = 1.5  # largest class / smallest class
MAX_LISTED = 50
FOLDS = 5


def exact_duplicates(paths: list[str], hashes: list[str], splits: list[str]) -> list[dict[str, str]]:
    """Pairs of files with the same bytes; 'train-val' pairs leak the val split into training."""
    first: dict[str, int] = {}
    out = []
    for i, digest in enumerate(hashes):
        if digest in first:
            j = first[digest]
            where = splits[j] if splits[j] == splits[i] else "train-val"
            out.append({"a": paths[j], "b": paths[i], "where": where})
        else:
            first[digest] = i
    return out


def near_duplicates(
    x_train: np.ndarray,
    x_val: np.ndarray,
    train_paths: list[str],
    val_paths: list[str],
    threshold: float = NEAR_DUPLICATE,
) -> list[dict[str, Any]]:
    """Train/val pairs whose features have cosine >= threshold, most similar first."""

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    a, b = unit(x_train), unit(x_val)
    pairs = []
    for start in range(0, len(a), 1024):  # bounded memory: a block of train rows against every val row
        sims = a[start : start + 1024] @ b.T
        for i, j in zip(*np.nonzero(sims >= threshold)):
            pairs.append({"train": train_paths[start + i], "val": val_paths[j], "cosine": round(float(sims[i, j]), 4)})
    return sorted(pairs, key=lambda p: -p["cosine"])


def label_issues(
    x: np.ndarray, labels: np.ndarray, paths: list[str], classes: list[str], seed: int = 0
) -> list[dict[str, Any]]:
    """Images whose out-of-fold prediction confidently disagrees with their label (cleanlab), worst first."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(FOLDS, int(np.bincount(labels, minlength=len(classes)).min()))
    if folds < 2:
        return []  # a class with one image has no out-of-fold prediction
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(
        model, np.asarray(x, np.float32).reshape(len(x), -1), labels, cv=cv, method="predict_proba"
    )
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    return [
        {
            "path": paths[i],
            "label": classes[labels[i]],
            "predicted": classes[int(probs[i].argmax())],
            "confidence": round(float(probs[i].max()), 4),
        }
        for i in ranked
    ]


def imbalance(counts: dict[str, int]) -> dict[str, Any]:
    """Largest over smallest class; balanced class weights are used in training when flagged."""
    smallest = min(counts, key=counts.get)
    ratio = max(counts.values()) / max(1, counts[smallest])
    return {"counts": counts, "ratio": round(ratio, 3), "smallest": smallest, "imbalanced": ratio >= IMBALANCED}


def vectors(features: np.ndarray) -> np.ndarray:
    """Feature maps (N, H, W, C) are average-pooled; vectors pass through as float32 (N, D)."""
    x = np.asarray(features, np.float32)
    return x.mean(axis=(1, 2)) if x.ndim == 4 else x.reshape(len(x), -1)


def check_data(
    classes: list[str], train: dict[str, Any], val: dict[str, Any], skipped: list[tuple[str, str]], seed: int = 0
) -> dict[str, Any]:
    """The report. `train` and `val` each hold "paths", "labels", "hashes" and "features" (clean views)."""
    paths = train["paths"] + val["paths"]
    x_train, x_val = vectors(train["features"]), vectors(val["features"])
    x = np.concatenate([x_train, x_val])
    labels = np.asarray(list(train["labels"]) + list(val["labels"]), dtype=np.int64)
    splits = ["train"] * len(train["paths"]) + ["val"] * len(val["paths"])
    exact = exact_duplicates(paths, train["hashes"] + val["hashes"], splits)
    near = near_duplicates(x_train, x_val, train["paths"], val["paths"])
    issues = label_issues(x, labels, paths, classes, seed)
    counts = {c: int((np.asarray(train["labels"]) == i).sum()) for i, c in enumerate(classes)}
    return {
        "num_images": len(paths),
        "exact_duplicates": exact[:MAX_LISTED],
        "num_exact_duplicates": len(exact),
        "num_exact_across_splits": sum(1 for d in exact if d["where"] == "train-val"),
        "near_duplicates": near[:MAX_LISTED],
        "num_near_duplicates": len(near),
        "near_duplicate_cosine": NEAR_DUPLICATE,
        "label_issues": issues[:MAX_LISTED],
        "num_label_issues": len(issues),
        "imbalance": imbalance(counts),
        "undecodable": [{"path": p, "reason": r} for p, r in skipped],
    }


def check_folder(config, echo=print) -> dict[str, Any]:
    """`edgetl check-data`: the config's base features of every image of config.data (from the cache when
    `edgetl train` computed them already), then check_data."""
    from edgetl.models.classifier import config_base
    from edgetl.train.data import load_dataset
    from edgetl.train.extract import FeatureExtractor

    dataset = load_dataset(config.data, config.val_split, config.seed)
    extractor = FeatureExtractor.for_config(config, config_base(config, config.weights))
    sets = {}
    for split, items in (("train", dataset.train), ("val", dataset.val)):
        found = extractor.extract([p for p, _ in items], desc=f"{split} features")
        sets[split] = {
            "paths": [str(items[i][0]) for i in found.kept],
            "labels": [items[i][1] for i in found.kept],
            "hashes": found.hashes,
            "features": found.features[:, 0],
            "skipped": found.skipped,
        }
    echo(f"features of {sum(len(s['paths']) for s in sets.values())} images ({extractor.folder})")
    skipped = sets["train"].pop("skipped") + sets["val"].pop("skipped")
    return {
        "data": str(dataset.root),
        "classes": dataset.classes,
        **check_data(dataset.classes, sets["train"], sets["val"], skipped, config.seed),
    }


def summary_line(health: dict[str, Any]) -> str:
    exact = health["num_exact_across_splits"]
    return (
        f"data health: {exact} exact and {health['num_near_duplicates']} near duplicate(s) across train and val, "
        f"{health['num_exact_duplicates'] - exact} exact duplicate(s) within a split, "
        f"{health['num_label_issues']} likely mislabelled, class ratio {health['imbalance']['ratio']:.2f}"
        f"{' (imbalanced)' if health['imbalance']['imbalanced'] else ''}, {len(health['undecodable'])} undecodable"
    )
