"""Soak test of the device runner: RSS must stay flat over long runs (prints JSON).

    python benchmarks/soak_runtime.py [--bundle /tmp/edgetl_bench/bundle] [--images 10000] [--frames 3000]
                                      [--stream-frames 3000]

1. `run_paths` over a folder of N image paths (symlinks to a few real 500x375 JPEGs, so
   decode cost is real) with results written to /dev/null;
2. `run_camera` over a simulated 640x480 camera that also fails now and then;
3. `run_camera` over a real OpenCV capture of a local HTTP video stream that drops after about
   30 frames on every connection, so the capture is reopened every ~30 frames, read on its own
   thread (ThreadedCamera) as `edgetl run --camera URL` reads it (needs opencv-python-headless).
RSS (VmRSS) is sampled along the way; growth = last sample - sample after warm-up. Target < 5 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _output import emit, loadavg  # noqa: E402 - benchmarks/ is sys.path[0] when run as a script

from edgetl.runtime import cameras, paths, runner  # noqa: E402
from edgetl.runtime import predictor as predict  # noqa: E402
from edgetl.runtime.frames import FrameError, ThreadedCamera  # noqa: E402

from http_stream import send_video, serve  # noqa: E402 - tests/ helper: a local HTTP server


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sampled(items, every: int, samples: list):
    for i, item in enumerate(items, 1):
        if i % every == 0:
            samples.append(round(rss_mb(), 2))
        yield item


def sample_reads(cam, step: int, samples: list) -> None:
    """Make cam.read append the RSS to `samples` before every `step`-th read (the 0th included)."""
    real_read, reads = cam.read, 0

    def read():
        nonlocal reads
        if reads % step == 0:
            samples.append(round(rss_mb(), 2))
        reads += 1
        return real_read()

    cam.read = read


class SimCamera:
    name = "simulated camera"

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
        self.n = 0

    def read(self):
        self.n += 1
        if self.n % 500 == 0:
            raise FrameError("simulated dropout")
        return self.frames[self.n % len(self.frames)]

    def close(self):
        pass


def growth(samples: list[float], warmup: int) -> float:
    return round(samples[-1] - samples[min(warmup, len(samples) - 1)], 2)


def every(count: int, most: int) -> int:
    """Sampling interval: `most` on long runs, and at least ~20 samples on short ones."""
    return max(1, min(most, count // 20))


STREAM_CLIP_FRAMES = 40  # each connection serves about 3/4 of these, then drops


@contextlib.contextmanager
def dropping_stream(frames_per_connection: int = STREAM_CLIP_FRAMES):
    """URL of a local HTTP MJPG stream; every connection breaks off after about 3/4 of its frames."""
    import cv2

    clip = Path(tempfile.mkdtemp()) / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    rng = np.random.default_rng(1)
    for _ in range(frames_per_connection):
        writer.write(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    writer.release()
    data = clip.read_bytes()
    try:
        with serve(lambda n, handler: send_video(handler, data, upto=len(data) * 3 // 4)) as url:
            yield url
    finally:
        shutil.rmtree(clip.parent)


def stream_soak(pred, frames: int) -> dict:
    if importlib.util.find_spec("cv2") is None:
        return {"skipped": "opencv-python-headless is not installed"}
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg would print each drop
    samples: list[float] = []
    step = every(frames, 250)
    # growth from the first sample after two reopens: the first reopen allocates FFmpeg's buffers for good
    warmup = -(-2 * STREAM_CLIP_FRAMES // step)
    with dropping_stream() as url:
        cam = cameras.OpenCVCamera(url)
        sample_reads(cam, step, samples)
        t0 = time.perf_counter()
        with open(os.devnull, "w") as devnull:  # as `edgetl run --camera URL` reads it: newest frame, own thread
            summary = runner.run_camera(
                pred, ThreadedCamera(cam), devnull, devnull, max_frames=frames, fps_every=0, sleep=lambda s: None
            )
    return {
        "frames": summary.ok,
        "older_frames_skipped": summary.skipped,
        "reopens": summary.failed_reads,
        "seconds": round(time.perf_counter() - t0, 1),
        "rss_mb_samples": samples,
        "rss_growth_mb_after_warmup": growth(samples, warmup),
    }


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=Path("/tmp/edgetl_bench/bundle"))
    ap.add_argument("--photos", type=Path, default=Path("/tmp/edgetl_bench/jpeg500"))
    ap.add_argument("--images", type=positive, default=10000)
    ap.add_argument("--frames", type=positive, default=3000)
    ap.add_argument("--stream-frames", type=positive, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefetch", type=int, default=2, help="Images decoded ahead on a thread (0: inline).")
    ap.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = ap.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    if not photos:
        sys.exit(f"no JPEGs in {args.photos}; run benchmarks/bench_runtime.py first")
    folder = args.photos.parent / f"soak_{args.images}"
    folder.mkdir(exist_ok=True)
    for i in range(args.images):
        link = folder / f"{i:06d}.jpg"
        if not link.exists():
            link.symlink_to(photos[i % len(photos)])
    pred = predict.open_predictor(args.bundle, None, args.threads)
    devnull = open(os.devnull, "w")
    samples: list[float] = []
    t0 = time.perf_counter()
    summary = runner.run_paths(
        pred,
        sampled(paths.iter_paths([str(folder)]), every(args.images, 500), samples),
        devnull,
        sys.stderr,
        prefetch=args.prefetch,
    )
    files = {
        "images": summary.ok,
        "failed": summary.failed,
        "seconds": round(time.perf_counter() - t0, 1),
        "rss_mb_samples": samples,
        "rss_growth_mb_after_warmup": growth(samples, 1),
    }

    cam_samples: list[float] = []
    cam = SimCamera()
    sample_reads(cam, every(args.frames, 250), cam_samples)
    t0 = time.perf_counter()
    summary = runner.run_camera(pred, cam, devnull, devnull, max_frames=args.frames, fps_every=0, sleep=lambda s: None)
    camera = {
        "frames": summary.ok,
        "failed_reads": summary.failed_reads,
        "seconds": round(time.perf_counter() - t0, 1),
        "rss_mb_samples": cam_samples,
        "rss_growth_mb_after_warmup": growth(cam_samples, 1),
    }
    stream = stream_soak(pred, args.stream_frames)
    parts = [files, camera] + ([stream] if "skipped" not in stream else [])
    emit(
        {
            "bundle": str(args.bundle),
            "format": pred.fmt,
            "threads": args.threads,
            "prefetch": args.prefetch,
            "loadavg_1_5_15_end": loadavg(),
            "files": files,
            "camera": camera,
            "dropping_stream": stream,
            "target_rss_growth_mb": "< 5",
            "target_met": all(part["rss_growth_mb_after_warmup"] < 5 for part in parts),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
