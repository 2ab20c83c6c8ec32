"""Small fake run folders and bundles that follow the contracts, for report tests."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

CLASSES = ["red", "green", "blue"]
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def solid(path: Path, color, size: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    pixels = np.clip(np.asarray(color, np.int16) + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_run(root: Path, epochs: int = 4, fine_tune: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(
        yaml.safe_dump(
            {"base": "mobilenet_v2", "input_size": 64, "epochs": epochs, "fine_tune_layers": 10, "learning_rate": 1e-4}
        )
    )
    (root / "run.json").write_text(
        json.dumps(
            {
                "edgetl_version": "0.1.0",
                "base": "mobilenet_v2",
                "cut_layer": None,
                "input_size": 64,
                "preprocessing": {"scale": 1 / 127.5, "offset": -1.0, "color": "RGB"},
                "output": "softmax",
                "feature_shape": [2, 2, 1280],
                "classes": CLASSES,
                "pooling": "avg",
                "dense_activation": "relu",
                "weights": "none",
            }
        )
    )
    (root / "metrics.json").write_text(
        json.dumps(
            {
                "val_accuracy": 0.875,
                "train_seconds": 12.5,
                "num_train": 30,
                "num_val": 9,
                "classes": CLASSES,
                "train_counts": {"red": 10, "green": 10, "blue": 10},
                "val_counts": {"red": 3, "green": 3, "blue": 3},
                "per_class_accuracy": {"red": 1.0, "green": 2 / 3, "blue": 1.0},
                "cache": {"computed": 39, "cached": 0},
                "skipped": [
                    {"path": "data/red/broken.jpg", "reason": "cannot decode (truncated)"},
                    {"path": "data/blue/empty.png", "reason": "empty file (0 bytes)"},
                ],
                "confusion": [[3, 0, 0], [1, 2, 0], [0, 0, 3]],
            }
        )
    )
    lines = ["epoch,loss,accuracy,val_loss,val_accuracy,stage"]
    for i in range(epochs):
        lines.append(f"{i},{1.0 - 0.15 * i:.3f},{0.5 + 0.08 * i:.3f},{1.1 - 0.12 * i:.3f},{0.45 + 0.07 * i:.3f},head")
    for i in range(fine_tune):
        lines.append(
            f"{i},{0.4 - 0.05 * i:.3f},{0.85 + 0.03 * i:.3f},{0.5 - 0.04 * i:.3f},{0.8 + 0.03 * i:.3f},fine_tune"
        )
    (root / "history.csv").write_text("\n".join(lines) + "\n")
    return root


def make_bundle(root: Path, images: Path, with_validation: bool = True) -> Path:
    """A bundle with two (fake) model files; validation.json lists 3 int8 regressions, one unreadable."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_float32.tflite").write_bytes(b"\0" * 4000)
    (root / "model_int8.tflite").write_bytes(b"\0" * 1200)
    from edgetl.runtime.bundle import file_entry

    manifest = {
        "format_version": 1,
        "edgetl_version": "0.1.0",
        "created": "2026-11-22T10:00:00Z",
        "source_run": {"path": "runs/colors"},
        "classes": CLASSES,
        "input": {
            "size": 64,
            "color": "RGB",
            "layout": "NHWC",
            "resize": "bilinear",
            "scale": 1 / 127.5,
            "offset": -1.0,
        },
        "base": {"name": "mobilenet_v2", "cut_layer": None, "feature_shape": [2, 2, 1280]},
        "output": "softmax",
        "models": {
            "tflite-float32": {
                **file_entry(root, root / "model_float32.tflite"),
                "runtime": "tflite",
                "role": "fused",
                "input": {"dtype": "float32"},
            },
            "tflite-int8": {
                **file_entry(root, root / "model_int8.tflite"),
                "runtime": "tflite",
                "role": "fused",
                "input": {"dtype": "uint8", "scale": 0.0078, "zero_point": 128},
            },
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    if not with_validation:
        return root
    wrong = [solid(images / "red" / f"r{i}.png", COLORS["red"]) for i in range(2)]
    broken = images / "blue" / "broken.jpg"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not a jpeg")
    per_class = lambda accs, ref: {
        c: {"accuracy": a, "drop_pp": round(100 * (r - a), 2)}  # noqa: E731
        for c, a, r in zip(CLASSES, accs, ref)
    }
    ref_acc = [1.0, 0.9, 1.0]
    validation = {
        "num_images": 30,
        "classes": CLASSES,
        "max_drop_pp": 5.0,
        "passed": False,
        "reference": "keras",
        "skipped_images": ["val/blue/truncated.jpg: cannot decode (image file is truncated)"],
        "formats": {
            "keras": {
                "accuracy": 0.9667,
                "drop_pp": 0.0,
                "agreement": 1.0,
                "size_bytes": 9_500_000,
                "latency_ms": {"mean": 4.1, "p95": 5.0},
                "per_class": per_class(ref_acc, ref_acc),
                "confusion": [[10, 0, 0], [1, 9, 0], [0, 0, 10]],
                "gated": False,
                "passed": True,
            },
            "tflite-float32": {
                "accuracy": 0.9667,
                "drop_pp": 0.0,
                "agreement": 1.0,
                "size_bytes": 4000,
                "latency_ms": {"mean": 2.0, "p95": 2.4},
                "per_class": per_class(ref_acc, ref_acc),
                "confusion": [[10, 0, 0], [1, 9, 0], [0, 0, 10]],
                "gated": True,
                "passed": True,
            },
            "tflite-int8": {
                "accuracy": 0.8667,
                "drop_pp": 10.0,
                "agreement": 0.9,
                "size_bytes": 1200,
                "latency_ms": {"mean": 1.1, "p95": 1.5},
                "per_class": per_class([0.8, 0.9, 0.9], ref_acc),
                "confusion": [[8, 2, 0], [1, 9, 0], [0, 1, 9]],
                "gated": True,
                "passed": False,
            },
        },
        "disagreements": {
            "tflite-int8": [
                *({"path": str(p), "label": "red", "keras": "red", "tflite-int8": "green"} for p in wrong),
                {"path": str(broken), "label": "blue", "keras": "blue", "tflite-int8": "green"},
                {
                    "path": str(wrong[0]),
                    "label": "green",
                    "keras": "red",
                    "tflite-int8": "red",
                },  # float wrong too: not shown
            ]
        },
    }
    (root / "validation.json").write_text(json.dumps(validation))
    return root
