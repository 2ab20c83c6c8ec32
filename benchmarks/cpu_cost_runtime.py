"""Per-image CPU cost of the runtime path with 1 interpreter thread (prints JSON).

    python benchmarks/cpu_cost_runtime.py [--bundle /tmp/edgetl_bench/bundle] [--runs 300]

Why: on a shared machine wall-clock ratios swing with other processes' load (a 6 ms path is
pre-empted far more often than a 1 ms call). With one interpreter thread all the work runs on
the calling thread, so its CPU time (time.thread_time) measures the cost of each step without
the waiting: bare interpreter call, decode + resize + preprocess, and the whole path.
Photos: the 500x375 JPEGs bench_runtime.py writes to /tmp/edgetl_bench/jpeg500.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _output import emit, loadavg  # noqa: E402 - benchmarks/ is sys.path[0] when run as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from edgetl.runtime import predictor as predict
    from edgetl.runtime.image import load_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("/tmp/edgetl_bench/bundle"))
    ap.add_argument("--photos", type=Path, default=Path("/tmp/edgetl_bench/jpeg500"))
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    pred = predict.open_predictor(args.bundle, "tflite-int8", 1)
    tensor = pred.model_input(photos[0])
    steps = {
        "bare_invoke": lambda i: pred.model.invoke_one(tensor),
        "decode_resize": lambda i: load_rgb(photos[i % len(photos)], pred.size),
        "decode_resize_preprocess": lambda i: pred.model_input(photos[i % len(photos)]),
        "whole_path": lambda i: pred.classify(photos[i % len(photos)]),
    }
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    wall: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(args.runs + 5):
        for name, fn in steps.items():
            c0, w0 = time.thread_time(), time.perf_counter()
            fn(i)
            if i >= 5:
                cpu[name].append((time.thread_time() - c0) * 1000)
                wall[name].append((time.perf_counter() - w0) * 1000)
    out = {
        "bundle": str(args.bundle),
        "threads": 1,
        "runs": args.runs,
        "cpu_ms_p50": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "wall_ms_p50": {k: round(statistics.median(v), 3) for k, v in wall.items()},
        "loadavg_1_5_15": loadavg(),
    }
    out["whole_over_bare_cpu"] = round(out["cpu_ms_p50"]["whole_path"] / out["cpu_ms_p50"]["bare_invoke"], 2)
    out["whole_over_bare_wall"] = round(out["wall_ms_p50"]["whole_path"] / out["wall_ms_p50"]["bare_invoke"], 2)
    emit(out, args.out, indent=1)


if __name__ == "__main__":
    main()
