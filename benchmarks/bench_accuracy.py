"""Benchmark: how good is the head `edgetl train` trains, against a linear probe on the same features?

    python benchmarks/bench_accuracy.py [--data DIR ...] [--weights FILE] [--search-budget 60]
                                        [--export] [--fine-tune] [--out FILE.json]

For each data set (default: both sets in ../shared/datasets), on one feature cache:
  probe     scikit-learn LogisticRegressionCV (standardized features, C by 5-fold CV) on the clean cached
            features of the train split: the reference every training change is judged against;
  probe_last_layer  the same on the last layer's features only (taps none), the reference before
            multi-level features;
  tutorial  configs/tutorial_mobilenet_v2.yaml (the TF tutorial's recipe: Adam 1e-4, 10 epochs);
  default   configs/mobilenet_v2.yaml (edgetl's head recipe; head_solver auto: logistic regression);
  keras     the default with --head-solver keras (Adam, cosine decay, label smoothing, early stopping);
  search    the default with --search (--search-budget seconds);
  fine_tune (--fine-tune) configs/flowers_mobilenet_v2.yaml (224 px, top 30 layers fine-tuned);
and with --export the int8 drop of the default run's fused and split int8 TFLite (edgetl export).

Prints one JSON object: val accuracy, macro-F1 and wall seconds per entry, and the targets of issue 15
(default >= probe, default wall <= 1.5x tutorial wall on a warm cache, search >= probe + 1 pp on flowers and
>= probe on cats_and_dogs_filtered, int8 drop <= 0.3 pp).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _features import cached_features  # noqa: E402 - benchmarks/ is sys.path[0] when run as a script
from _output import emit, loadavg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETS = ["/work/shared/datasets/cats_and_dogs_filtered", "/work/shared/datasets/flowers"]
WEIGHTS = "/work/shared/weights/mobilenet_v2_1.0_224_imagenet_dequant_no_top.h5"
CACHE = None  # --cache-dir: a feature cache kept between runs (default: a fresh one per set)


def train_entry(config_name: str, data: Path, weights: str, work: Path, name: str, **overrides) -> dict:
    from edgetl.train.config import load_config
    from edgetl.train.trainer import train

    values = {"data": str(data), "weights": weights, "out": str(work / name), "cache_dir": str(CACHE or work / "cache")}
    config = load_config(ROOT / "configs" / config_name, {**values, **overrides})
    start = time.time()
    metrics = train(config, echo=lambda _: None)
    return {
        "val_accuracy": metrics["val_accuracy"],
        "val_macro_f1": round(metrics["val_macro_f1"], 4),
        "wall_seconds": round(time.time() - start, 2),
        "head_seconds": metrics["head_seconds"],
        "feature_seconds": metrics["feature_seconds"],
        **({"search": metrics["search"]} if "search" in metrics else {}),
    }


def probe(data: Path, weights: str, work: Path, **overrides) -> dict:
    """Logistic regression with cross-validated C on the default config's cached clean features."""
    import numpy as np
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats, _ = cached_features(str(data), weights, str(CACHE or work / "cache"), **overrides)
    start = time.time()
    model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, cv=5, scoring="accuracy", max_iter=3000))
    model.fit(feats.x_clean.reshape(len(feats.y_train), -1), feats.y_train.astype(int))
    predicted = model.predict(feats.x_val.reshape(len(feats.y_val), -1))
    truth = feats.y_val.astype(int)
    return {
        "val_accuracy": float(np.mean(predicted == truth)),
        "val_macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
        "wall_seconds": round(time.time() - start, 2),
        "feature_seconds": round(feats.stats["seconds"], 2),
    }


def int8_drop(run: Path, out: Path) -> dict:
    from edgetl.export.exporter import ExportOptions, export_run

    result = export_run(run, ExportOptions(formats=("tflite-int8",), out=str(out)), log=lambda _: None)
    return {f: result["validation"]["formats"][f].get("drop_pp") for f in ("tflite-int8", "base-tflite-int8")}


def bench_set(data: Path, args, work: Path) -> dict:
    entries = {
        "probe": probe(data, args.weights, work),
        "probe_last_layer": probe(data, args.weights, work, taps="none"),
    }
    entries["tutorial"] = train_entry("tutorial_mobilenet_v2.yaml", data, args.weights, work, "tutorial")
    entries["default"] = train_entry("mobilenet_v2.yaml", data, args.weights, work, "default")
    entries["keras"] = train_entry("mobilenet_v2.yaml", data, args.weights, work, "keras", head_solver="keras")
    entries["search"] = train_entry(
        "mobilenet_v2.yaml", data, args.weights, work, "search", search=True, search_budget=args.search_budget
    )
    if args.fine_tune:
        entries["fine_tune"] = train_entry("flowers_mobilenet_v2.yaml", data, args.weights, work, "fine_tune")
    if args.export:
        entries["default"]["int8_drop_pp"] = int8_drop(work / "default", work / "bundle")
    pp = {k: round(100 * (v["val_accuracy"] - entries["probe"]["val_accuracy"]), 2) for k, v in entries.items()}
    search_margin = 1.0 if "flowers" in data.name else 0.0
    targets = {
        "default_ge_probe": pp["default"] >= 0,
        "default_ge_probe_last_layer": pp["default"] >= pp["probe_last_layer"],
        "default_wall_le_1.5x_tutorial": entries["default"]["wall_seconds"]
        <= 1.5 * entries["tutorial"]["wall_seconds"],
        f"search_ge_probe_plus_{search_margin:g}pp": pp["search"] >= search_margin,
    }
    if args.export:
        targets["int8_drop_le_0.3pp"] = all(
            d is not None and d <= 0.3 for d in entries["default"]["int8_drop_pp"].values()
        )
    return {"entries": entries, "pp_vs_probe": pp, "targets": targets}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=SETS)
    parser.add_argument("--weights", default=WEIGHTS)
    parser.add_argument("--search-budget", type=float, default=60.0)
    parser.add_argument("--export", action="store_true", help="Also export the default run: int8 drops.")
    parser.add_argument("--fine-tune", action="store_true", help="Also train configs/flowers_mobilenet_v2.yaml.")
    parser.add_argument("--cache-dir", default=None, help="Feature cache to use and keep (default: a fresh one).")
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()
    global CACHE
    CACHE = args.cache_dir
    sets = {}
    for data in map(Path, args.data):
        with tempfile.TemporaryDirectory(prefix="edgetl-acc-") as tmp:
            sets[data.name] = bench_set(data, args, Path(tmp))
    result = {"benchmark": "accuracy", "cpu_count": os.cpu_count(), "loadavg_1_5_15_end": loadavg(), "sets": sets}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
