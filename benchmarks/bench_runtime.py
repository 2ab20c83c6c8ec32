"""Device-runtime benchmark on a real int8 MobileNetV2 160 px bundle (prints JSON).

    python benchmarks/bench_runtime.py [--bundle DIR] [--work /tmp/edgetl_bench] [--threads 2]

Without --bundle it builds one (TF, workstation side): MobileNetV2 from the local ImageNet
weights + a sigmoid head trained on cats_and_dogs_filtered features, converted to TFLite
float32 / full-int8 (uint8 io, representative data from the same photos), fused and base.

Targets (issue #4): whole per-image path on 500x375 JPEGs <= 2x the bare interpreter call
(single-image latency; the folder runner's per-image throughput with the decode of the next
image overlapped -- edgetl.runtime.prefetch -- is reported separately as `folder_throughput`);
>= 10x faster than tf_keras model.predict on one image; cold start <= 1 s; peak RSS <= 150 MB;
update-head from 2,000 cached feature vectors <= 3 s with held-out accuracy within 1 pp of a
tf_keras logistic regression trained on the same features and split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _output import emit, loadavg  # noqa: E402 - benchmarks/ is sys.path[0] when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path("/work/shared/datasets/cats_and_dogs_filtered")
WEIGHTS = Path("/work/shared/weights/mobilenet_v2_1.0_224_imagenet_dequant_no_top.h5")
SIZE = 160


def _images(split: str, per_class: int) -> list[tuple[Path, int]]:
    out = []
    for label, cls in enumerate(("cats", "dogs")):
        out += [(p, label) for p in sorted((DATA / split / cls).glob("*.jpg"))[:per_class]]
    return out


def build_bundle(dest: Path, train_per_class: int = 200, calib: int = 100) -> tuple[Path, object]:
    """-> (bundle dir, fused tf_keras model). Uses edgetl.models.classifier like `edgetl train` would."""
    from edgetl._tf import keras, tf
    from edgetl.models.classifier import build_classifier, head_to_numpy
    from edgetl.runtime.atomic import sha256_file
    from edgetl.runtime.image import load_rgb, preprocess
    from edgetl.train.config import build_config

    keras.utils.set_random_seed(0)
    cfg = build_config({"base": "mobilenet_v2", "weights": str(WEIGHTS), "input_size": SIZE, "dropout": 0.0})
    fused, base, head = build_classifier(cfg, 2)
    items = _images("train", train_per_class)
    x = np.stack([preprocess(load_rgb(p, SIZE), 1 / 127.5, -1.0) for p, _ in items])
    y = np.array([label for _, label in items], dtype=np.float32)
    feats = base.predict(x, batch_size=32, verbose=0)
    head.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    head.fit(feats, y, epochs=30, batch_size=32, verbose=0)
    if dest.exists():
        import shutil

        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rep = x[rng.permutation(len(x))[:calib]]
    models = {}
    for name, model, int8, role in (
        ("tflite-int8", fused, True, "fused"),
        ("tflite-float32", fused, False, "fused"),
        ("base-tflite-int8", base, True, "base"),
    ):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.uint8
        path = dest / f"{name.replace('-', '_')}.tflite"
        path.write_bytes(conv.convert())
        models[name] = {
            "file": path.name,
            "runtime": "tflite",
            "role": role,
            "sha256": sha256_file(path),
            "size_bytes": path.stat().st_size,
        }
    head_to_numpy(head, ["cats", "dogs"], "avg", "relu").save(dest / "head.npz")
    manifest = {
        "format_version": 1,
        "edgetl_version": "0.1.0",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_run": {"path": "benchmarks/bench_runtime.py", "config": cfg.to_dict()},
        "classes": ["cats", "dogs"],
        "input": {
            "size": SIZE,
            "color": "RGB",
            "layout": "NHWC",
            "resize": "bilinear",
            "scale": 1 / 127.5,
            "offset": -1.0,
        },
        "base": {"name": "mobilenet_v2", "cut_layer": None, "feature_shape": [5, 5, 1280]},
        "output": "sigmoid",
        "models": models,
        "head": {
            "file": "head.npz",
            "sha256": sha256_file(dest / "head.npz"),
            "size_bytes": (dest / "head.npz").stat().st_size,
        },
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    fused.save(dest.parent / "fused.keras")
    return dest, fused


def jpegs_500x375(work: Path, n: int = 20) -> list[Path]:
    """Real photos re-encoded at exactly 500x375 (the dataset's typical size)."""
    from PIL import Image

    folder = work / "jpeg500"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (p, _) in enumerate(_images("val", n // 2)):
        target = folder / f"{i:03d}.jpg"
        if not target.exists():
            Image.open(p).convert("RGB").resize((500, 375)).save(target, quality=90)
        out.append(target)
    return out


def latency(bundle: Path, photos: list[Path], threads: int, runs: int) -> dict:
    """Bare call, decode+preprocess and whole path timed in the same loop, interleaved, so that
    load from other processes on a shared machine hits all three alike."""
    from edgetl.runtime import predictor as predict

    pred = predict.open_predictor(bundle, "tflite-int8", threads)
    tensor = pred.model_input(photos[0])
    steps = {
        "bare_invoke": lambda i: pred.model.invoke_one(tensor),
        "decode_resize_preprocess": lambda i: pred.model_input(photos[i % len(photos)]),
        "whole_path": lambda i: pred.classify(photos[i % len(photos)]),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(runs + 3):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn(i)
            if i >= 3:
                times[name].append((time.perf_counter() - t0) * 1000)
    out = {"threads": threads}
    for name, ms in times.items():
        out[f"{name}_ms_p50"] = round(statistics.median(ms), 2)
        out[f"{name}_ms_p95"] = round(float(np.percentile(ms, 95)), 2)
    out["whole_over_bare"] = round(out["whole_path_ms_p50"] / out["bare_invoke_ms_p50"], 2)
    return out


def throughput(bundle: Path, photos: list[Path], threads: int, images: int, prefetch: int, repeats: int = 3) -> dict:
    """`run_paths` over `images` paths (cycling the photos): wall ms per image, best of `repeats`."""
    from edgetl.runtime import predictor as predict
    from edgetl.runtime import runner
    from edgetl.runtime.paths import PathItem

    pred = predict.open_predictor(bundle, "tflite-int8", threads)
    items = [PathItem(str(photos[i % len(photos)])) for i in range(images)]
    runner.run_paths(pred, items[:20], open(os.devnull, "w"), sys.stderr, prefetch=prefetch)  # warm-up
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        summary = runner.run_paths(pred, items, open(os.devnull, "w"), sys.stderr, prefetch=prefetch)
        walls.append(time.perf_counter() - t0)
        assert summary.ok == images
    return {
        "threads": threads,
        "prefetch": prefetch,
        "images": images,
        "ms_per_image_best": round(1000 * min(walls) / images, 3),
        "ms_per_image_all": [round(1000 * w / images, 3) for w in walls],
    }


def folder_throughput(bundle: Path, photos: list[Path], images: int) -> dict:
    """Per-image wall time of a folder run, decode inline vs. overlapped, against the bare call."""
    out = {}
    for threads in (1, 2):
        bare = latency(bundle, photos, threads, 100)["bare_invoke_ms_p50"]
        row = {"bare_invoke_ms_p50": bare}
        for prefetch in (0, 2):
            r = throughput(bundle, photos, threads, images, prefetch)
            row[f"prefetch_{prefetch}_ms_per_image"] = r["ms_per_image_best"]
            row[f"prefetch_{prefetch}_over_bare"] = round(r["ms_per_image_best"] / bare, 2)
        out[f"{threads}_thread"] = row
    return out


def keras_predict_ms(fused, photos: list[Path], runs: int = 20) -> float:
    from edgetl.runtime.bench import time_calls
    from edgetl.runtime.image import load_rgb, preprocess

    x = preprocess(load_rgb(photos[0], SIZE), 1 / 127.5, -1.0)[None]
    return statistics.median(time_calls(lambda: fused.predict(x, verbose=0), runs, warmup=3))


def head_update(bundle: Path, work: Path, per_class: int, threads: int) -> dict:
    """Cache features of 2*per_class photos, then time update-head with everything cached."""
    from edgetl.runtime import headstore
    from edgetl.runtime.bundle import load_bundle
    from edgetl.runtime.retrain import RetrainConfig, device_features, stratified_split, update_head

    data = work / "update_data"
    for cls in ("cats", "dogs"):
        (data / cls).mkdir(parents=True, exist_ok=True)
        for p in sorted((DATA / "train" / cls).glob("*.jpg"))[:per_class]:
            link = data / cls / p.name
            if not link.exists():
                link.symlink_to(p)
    cfg = RetrainConfig(data=str(data), threads=threads, force=True, seed=0)
    t0 = time.perf_counter()
    first = update_head(bundle, cfg, err=open(os.devnull, "w"))
    cold = time.perf_counter() - t0
    headstore.rollback(load_bundle(bundle))
    t0 = time.perf_counter()
    cached = update_head(bundle, cfg, err=open(os.devnull, "w"))
    warm = time.perf_counter() - t0
    headstore.rollback(load_bundle(bundle))

    # the workstation reference: tf_keras logistic regression on the same features and split
    from edgetl._tf import keras

    b = load_bundle(bundle)
    cache = device_features(b, "base-tflite-int8", "avg")
    keys = sorted(cache.labels)
    classes = ["cats", "dogs"]
    x = cache.get(keys)
    y = np.array([classes.index(cache.labels[k]) for k in keys])
    tr, ho = stratified_split(y, 0.2, 0)
    keras.utils.set_random_seed(0)
    lr = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(2, activation="softmax", kernel_regularizer=keras.regularizers.l2(1e-4)),
        ]
    )
    lr.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    lr.fit(x[tr], y[tr], epochs=100, batch_size=64, verbose=0)
    keras_acc = float(lr.evaluate(x[ho], y[ho], verbose=0)[1])
    return {
        "images": len(keys),
        "first_run_s (features computed)": round(cold, 2),
        "cached_run_s": round(warm, 2),
        "new_images_first": first.new_images,
        "new_images_cached": cached.new_images,
        "numpy_head_holdout_acc": round(cached.new_accuracy, 4),
        "exported_head_holdout_acc": round(cached.current_accuracy, 4),
        "tf_keras_logreg_holdout_acc": round(keras_acc, 4),
        "diff_pp": round(100 * (cached.new_accuracy - keras_acc), 2),
        "holdout_images": cached.num_holdout,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgetl_bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--update-per-class", type=int, default=1000)
    ap.add_argument("--throughput-images", type=int, default=400)
    ap.add_argument("--skip", default="", help="Comma list of parts to skip: keras,cold,update,throughput")
    ap.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    fused = None
    bundle = args.bundle
    if bundle is None:
        bundle = args.work / "bundle"
        if (bundle / "manifest.json").exists() and (args.work / "fused.keras").exists():
            from edgetl._tf import keras

            fused = keras.models.load_model(args.work / "fused.keras")
        else:
            bundle, fused = build_bundle(bundle)
    from edgetl.runtime import bench

    skip = set(filter(None, args.skip.split(",")))
    photos = jpegs_500x375(args.work)
    result = {"bundle": str(bundle), "threads": args.threads, "cpu": os.cpu_count(), "loadavg_1_5_15_start": loadavg()}
    result["latency"] = latency(bundle, photos, args.threads, args.runs)
    result["latency_1_thread"] = latency(bundle, photos, 1, args.runs)
    if "throughput" not in skip:
        result["folder_throughput"] = folder_throughput(bundle, photos, args.throughput_images)
    if fused is not None and "keras" not in skip:
        k = keras_predict_ms(fused, photos)
        result["tf_keras_predict_ms_p50"] = round(k, 2)
        result["speedup_vs_keras_predict"] = round(k / result["latency"]["whole_path_ms_p50"], 1)
    if "cold" not in skip:
        cold = [bench.cold_start(bundle, "tflite-int8", photos[0], args.threads, 20) for _ in range(3)]
        result["cold_start_s"] = min(c["cold_start_s"] for c in cold)
        result["cold_start_s_all"] = [c["cold_start_s"] for c in cold]
        result["peak_rss_mb"] = max(c["peak_rss_mb"] for c in cold)
    if "update" not in skip:
        result["head_update"] = head_update(bundle, args.work, args.update_per_class, args.threads)
    result["loadavg_1_5_15_end"] = loadavg()
    emit(result, args.out)


if __name__ == "__main__":
    main()
