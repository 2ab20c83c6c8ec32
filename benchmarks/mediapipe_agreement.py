"""Top-1 agreement of MediaPipe Tasks' ImageClassifier with `edgetl run` on the same bundle (prints JSON).

    python benchmarks/mediapipe_agreement.py [--bundle /tmp/bundles/cd_mp]
        [--data /work/shared/datasets/cats_and_dogs_filtered/val] [--out FILE.json]

For each fused TFLite format with MediaPipe metadata, `edgetl run BUNDLE --format FMT --json`
classifies the files, and MediaPipe classifies them twice:
- same_pixels: given the pixels edgetl decodes and resizes (load_rgb), so only the model,
  its metadata and the input normalization/quantization can differ;
- pillow_decoded: given lossless PNGs of Pillow's full-size decode, which it resizes itself
  (plain bilinear): the effect of the resize alone;
- from_files: given the files, which it decodes (its own JPEG decoder) and resizes itself, as
  an app would. `decoder_flips` counts its answers that differ from pillow_decoded's: the
  effect of the JPEG decoder alone.
Reports each agreement rate, accuracy against the folder labels, and the disagreements.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _output import emit, loadavg  # noqa: E402 - benchmarks/ is sys.path[0] when run as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def edgetl_run(bundle: Path, fmt: str, images: list[str]) -> dict[str, dict]:
    """path -> {"label", "score"} from the `edgetl run` CLI (paths fed on stdin)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgetl.cli import main; main()",
            "run",
            str(bundle),
            "-",
            "--format",
            fmt,
            "--json",
        ],
        input="\n".join(images) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"edgetl run failed: {proc.stderr.strip()[-400:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {str(Path(r["path"]).resolve()): r for r in rows}


def main() -> int:
    import numpy as np

    from edgetl.export.mediapipe_metadata import classify_with_mediapipe
    from edgetl.runtime.bundle import load_bundle
    from edgetl.runtime.folders import scan_class_folders
    from edgetl.runtime.image import load_rgb, open_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("/tmp/bundles/cd_mp"))
    ap.add_argument("--data", default="/work/shared/datasets/cats_and_dogs_filtered/val")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    bundle = load_bundle(args.bundle)
    truth = {str(Path(p).resolve()): label for label, paths in scan_class_folders(args.data).items() for p in paths}
    images = sorted(truth)
    result = {
        "bundle": str(args.bundle),
        "data": args.data,
        "num_images": len(images),
        "loadavg_1_5_15": loadavg(),
        "formats": {},
    }
    pixels = np.stack([load_rgb(p, bundle.input_size) for p in images])
    tmp = tempfile.TemporaryDirectory()
    pngs = [str(Path(tmp.name) / f"{i:05d}.png") for i in range(len(images))]
    for path, png in zip(images, pngs):
        open_image(path).save(png)
    for fmt, entry in bundle.models.items():
        if entry.get("runtime") != "tflite" or entry.get("role") != "fused":
            continue
        ours = edgetl_run(args.bundle, fmt, images)
        row = {"edgetl_accuracy": round(sum(ours[p]["label"] == truth[p] for p in images) / len(images), 4)}
        answers = {}
        for route, given in (("same_pixels", pixels), ("pillow_decoded", pngs), ("from_files", images)):
            mp = answers[route] = classify_with_mediapipe(args.bundle / entry["file"], given)
            differ = [
                {
                    "path": p,
                    "label": truth[p],
                    "mediapipe": m["label"],
                    "mediapipe_score": round(m["score"], 4),
                    "edgetl": ours[p]["label"],
                    "edgetl_score": ours[p]["score"],
                }
                for p, m in zip(images, mp)
                if m["label"] != ours[p]["label"]
            ]
            row[route] = {
                "agreement": round(1 - len(differ) / len(images), 4),
                "disagreements": len(differ),
                "max_score_difference": round(max(abs(m["score"] - ours[p]["score"]) for p, m in zip(images, mp)), 6),
                "mediapipe_accuracy": round(sum(m["label"] == truth[p] for p, m in zip(images, mp)) / len(images), 4),
                "examples": differ[:10],
            }
        row["from_files"]["decoder_flips"] = sum(
            a["index"] != b["index"] for a, b in zip(answers["pillow_decoded"], answers["from_files"])
        )
        result["formats"][fmt] = row
    tmp.cleanup()
    emit(result, args.out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
