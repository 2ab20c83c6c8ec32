"""On-device feature cache for `update-head`: the base model runs once per image, ever.

    BUNDLE/device/features/<sha256(base model)[:16]>-<pooling>/chunk-<time>-<n>.npz
        keys    (N,) str      sha256 of the image file's bytes
        vectors (N, D) f32    pooled base features
        labels  (N,) str      class name the image had when it was cached

Keyed by image content + base model file, so renaming images costs nothing and a new base
(another export) starts a fresh cache. Chunks are written atomically every CHUNK images,
so a kill mid-way loses at most one chunk; an unreadable chunk is reported and skipped.
"""

from __future__ import annotations

import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from edgetl.runtime import atomic

FEATURES_DIR = Path("device") / "features"
CHUNK = 256


class FeatureCache:
    def __init__(self, bundle_root: Path, base_sha256: str, pooling: str):
        self.folder = Path(bundle_root) / FEATURES_DIR / f"{base_sha256[:16]}-{pooling}"
        self.vectors: dict[str, np.ndarray] = {}
        self.labels: dict[str, str] = {}
        self._pending: list[tuple[str, np.ndarray, str]] = []
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("chunk-*.npz")):  # temp files start with "." and are ignored
            try:
                with np.load(path, allow_pickle=False) as data:
                    keys, vectors, labels = data["keys"], data["vectors"], data["labels"]
                    if len(keys) != len(vectors) or len(keys) != len(labels):
                        raise ValueError("arrays of different lengths")
                    for key, vec, label in zip(keys, vectors.astype(np.float32), labels):
                        self.vectors[str(key)] = vec
                        self.labels[str(key)] = str(label)
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                print(f"warning: skipping unreadable feature chunk {path.name} ({type(exc).__name__})", file=sys.stderr)

    def __contains__(self, key: str) -> bool:
        return key in self.vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, key: str, vector: np.ndarray, label: str) -> None:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        self.vectors[key] = vector
        self.labels[key] = label
        self._pending.append((key, vector, label))
        if len(self._pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        keys, vectors, labels = zip(*self._pending)
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys, dtype=np.str_), vectors=np.stack(vectors),
                 labels=np.array(labels, dtype=np.str_))
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}.npz"
        atomic.write_bytes(self.folder / name, buf.getvalue())
        self._pending.clear()
