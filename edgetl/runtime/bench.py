"""`edgetl bench`: what each format of a bundle costs on *this* device.

Per format: file size, accuracy (with --data), p50/p95 latency of the bare interpreter call
and of the whole per-image path (decode + resize + preprocess + infer), cold start (a fresh
process: interpreter start -> first label printed) and that process's peak RSS. Cold start
and RSS are measured in a child process (`python -m edgetl.runtime.bench ...`), so they
include Python start-up and imports, as a systemd service would see them. The bundle's self-test
(edgetl.runtime.selftest: golden images decoded and run as on the workstation) is reported too.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.errors import ImageError
from edgetl.runtime import interpreter
from edgetl.runtime.bundle import load_bundle
from edgetl.runtime.folders import scan_class_folders
from edgetl.runtime.predictor import Predictor, default_threads, fused_formats, open_predictor
from edgetl.runtime.selftest import run_self_test


def percentiles(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms, dtype=np.float64)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3)}


def peak_rss_mb() -> float:
    """Peak RSS of this process. Linux: VmHWM, because getrusage's ru_maxrss survives exec and
    would report the (possibly huge) parent's RSS at fork time; elsewhere getrusage."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)  # bytes on macOS, KiB on Linux


def synthetic_jpeg(folder: Path, width: int = 500, height: int = 375) -> Path:
    """A photo-sized JPEG (smooth gradients + noise) when no --data is given."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], axis=-1)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    path = folder / "synthetic_500x375.jpg"
    Image.fromarray(img).save(path, quality=90)
    return path


def time_calls(fn, runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def cold_start(bundle_dir, fmt: str, image: Path, threads: int | None, runs: int) -> dict[str, float]:
    """Spawn a fresh interpreter process: seconds to its first label line, and its peak RSS."""
    cmd = [sys.executable, "-m", "edgetl.runtime.bench", str(bundle_dir), fmt, str(image), str(threads or 0), str(runs)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    seconds = time.perf_counter() - t0
    rest = proc.stdout.read()  # not communicate(): readline() may already hold the rest in its buffer
    err = proc.stderr.read()
    proc.wait(timeout=600)
    if proc.returncode != 0 or not first:
        return {"error": (err.strip().splitlines() or ["child failed"])[-1][:200]}
    child = json.loads(rest.strip().splitlines()[-1])
    return {"cold_start_s": round(seconds, 3), "peak_rss_mb": child["peak_rss_mb"]}


def accuracy_on(predictor: Predictor, data: str) -> dict[str, Any]:
    correct = total = failed = 0
    for label, paths in scan_class_folders(data).items():
        for path in paths:
            try:
                probs = predictor.classify(path)
            except ImageError:
                failed += 1
                continue
            total += 1
            correct += int(predictor.classes[int(np.argmax(probs))] == label)
    return {"accuracy": round(correct / total, 4) if total else None, "num_images": total, "failed": failed}


def bench_format(bundle_dir, fmt: str, image: Path, data: str | None, threads: int | None, runs: int) -> dict[str, Any]:
    predictor = open_predictor(bundle_dir, fmt, threads)
    model = predictor.model
    prepared = predictor.model_input(image)
    result: dict[str, Any] = {
        "size_bytes": predictor.bundle.model_path(fmt, verify=False).stat().st_size,
        "backend": model.backend,
        "mode": predictor.head_description,
        "bare_ms": percentiles(time_calls(lambda: model.invoke_one(prepared), runs)),
        "path_ms": percentiles(time_calls(lambda: predictor.classify(image), runs)),
    }
    result["path_over_bare"] = round(result["path_ms"]["p50"] / max(result["bare_ms"]["p50"], 1e-9), 2)
    if data:
        result.update(accuracy_on(predictor, data))
    result.update(cold_start(bundle_dir, fmt, image, threads, runs))
    return result


def bench_bundle(
    bundle_dir, data: str | None = None, threads: int | None = None, runs: int = 50, formats: list[str] | None = None
) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir)
    wanted = formats or [
        f for f in fused_formats(bundle) if interpreter.runtime_available(interpreter.runtime_of(f, bundle.models[f]))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        image = next((p for paths in scan_class_folders(data).values() for p in paths), None) if data else None
        image = Path(image) if image else synthetic_jpeg(Path(tmp))
        out = {fmt: bench_format(bundle_dir, fmt, image, data, threads, runs) for fmt in wanted}
    self_test = run_self_test(bundle).to_json() if bundle.manifest.get("self_test") else None
    return {
        "bundle": str(bundle_dir),
        "threads": threads or default_threads(),
        "runs": runs,
        "image": image.name,
        "formats": out,
        "self_test": self_test,
    }


def table(results: dict[str, Any]) -> str:
    head = (
        f"{'format':<16}{'size MB':>9}{'acc':>8}{'bare p50/p95 ms':>18}{'path p50/p95 ms':>18}"
        f"{'cold s':>8}{'RSS MB':>8}"
    )
    rows = [head, "-" * len(head)]
    for fmt, r in results["formats"].items():
        acc = f"{r['accuracy']:.3f}" if r.get("accuracy") is not None else "-"
        rows.append(
            f"{fmt:<16}{r['size_bytes'] / 1e6:>9.2f}{acc:>8}"
            f"{r['bare_ms']['p50']:>10.2f}/{r['bare_ms']['p95']:<7.2f}{r['path_ms']['p50']:>10.2f}/{r['path_ms']['p95']:<7.2f}"
            f"{r.get('cold_start_s', float('nan')):>8.2f}{r.get('peak_rss_mb', float('nan')):>8.1f}"
        )
    test = results.get("self_test")
    if test is not None:
        rows.append(f"self-test (golden images): {'passed' if test['passed'] else 'FAILED'}")
    return "\n".join(rows)


def _child(argv: list[str]) -> None:
    """Cold-start child: load, print the first label as soon as it is known, then keep classifying."""
    bundle_dir, fmt, image, threads, runs = argv
    predictor = open_predictor(bundle_dir, fmt, int(threads) or None)
    probs = predictor.classify(image)
    print(predictor.classes[int(np.argmax(probs))], flush=True)
    for _ in range(int(runs)):
        predictor.classify(image)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1:])
