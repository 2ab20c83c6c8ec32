"""Base features on disk: string keys -> feature arrays in chunked .npz files.

One store serves both sides: `edgetl train` keeps every image's base features (and its
augmented views) in CACHE_DIR/features/<model digest>/ (edgetl.train.extract), and
`edgetl update-head` keeps the device's in BUNDLE/device/features/<base sha>-<pooling>/
(edgetl.runtime.retrain). The base then runs once per image, ever.

    FOLDER/chunk-<time_ns>-<pid>-<sha16>.npz
        keys      (N,) str     what the row is (the image's sha256, plus view and augmentation in training)
        features  (N, ...)     float32 vectors, or float16 feature maps ("vectors" in older device chunks)
        labels    (N,) str     the class name the image had when it was stored ('' when unknown)

Rows are written atomically every `chunk_size` additions (and on flush), so a killed process
keeps its finished chunks and the next run computes only the rest. A chunk's name ends with
the first 16 hex digits of the sha256 of its bytes: a chunk that does not match (bit rot, a
truncated copy) or cannot be read is reported on stderr and deleted, and its rows are
computed again. Files are read with allow_pickle=False; keys are numpy unicode arrays.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgetl.runtime import atomic

CHUNK_SIZE = 256
_BAD_CHUNK = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile)


class FeatureStore:
    """Rows added this process stay in memory; older ones are read from their chunk when asked for."""

    def __init__(self, folder: str | Path, dtype=np.float32, chunk_size: int | None = None):
        self.folder = Path(folder)
        self.dtype = np.dtype(dtype)
        self.chunk_size = chunk_size or CHUNK_SIZE
        self.labels: dict[str, str] = {}
        self._where: dict[str, Path] = {}  # key -> chunk holding it (rows read on demand)
        self._row: dict[str, int] = {}
        self._memory: dict[str, np.ndarray] = {}  # rows added by this process
        self._pending: list[str] = []
        self._seen: set[Path] = set()
        self.reload()

    def reload(self) -> None:
        """Index chunks written since (by this or another process: multi-worker shards)."""
        if not self.folder.is_dir():
            return
        for chunk in sorted(self.folder.glob("chunk-*.npz")):  # temp files start with "." and are skipped
            if chunk in self._seen:
                continue
            self._seen.add(chunk)
            try:
                _check_name(chunk)
                with np.load(chunk, allow_pickle=False) as data:
                    keys = [str(k) for k in data["keys"]]
                    labels = [str(x) for x in data["labels"]] if "labels" in data.files else [""] * len(keys)
                    if len(labels) != len(keys):
                        raise ValueError("keys and labels of different lengths")
            except _BAD_CHUNK as exc:
                print(
                    f"warning: discarding corrupt feature cache chunk {chunk.name} ({type(exc).__name__}: "
                    f"{str(exc)[:60]}); its features will be recomputed",
                    file=sys.stderr,
                )
                chunk.unlink(missing_ok=True)
                continue
            for row, (key, label) in enumerate(zip(keys, labels)):
                if key not in self._where and key not in self._memory:
                    self._where[key], self._row[key] = chunk, row
                    self.labels[key] = label

    def __contains__(self, key: str) -> bool:
        return key in self._memory or key in self._where

    def __len__(self) -> int:
        return len(self._memory) + len(self._where)

    def keys(self) -> list[str]:
        return [*self._where, *self._memory]

    def add(self, key: str, features: np.ndarray, label: str = "") -> None:
        self._memory[key] = np.asarray(features, dtype=self.dtype)
        self.labels[key] = label
        self._pending.append(key)
        if len(self._pending) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        """Write the rows added since the last flush as one chunk."""
        if not self._pending:
            return
        buf = io.BytesIO()
        np.savez(
            buf,
            keys=np.array(self._pending, dtype=np.str_),
            features=np.stack([self._memory[k] for k in self._pending]),
            labels=np.array([self.labels[k] for k in self._pending], dtype=np.str_),
        )
        data = buf.getvalue()
        name = f"chunk-{time.time_ns()}-{os.getpid()}-{hashlib.sha256(data).hexdigest()[:16]}.npz"
        self._seen.add(atomic.write_bytes(self.folder / name, data))
        self._pending.clear()

    def get(self, keys: Iterable[str]) -> np.ndarray:
        """The rows of `keys`, stacked in that order; each chunk involved is read once."""
        keys = list(keys)
        by_chunk: dict[Path, list[int]] = {}
        for i, key in enumerate(keys):
            if key not in self._memory:
                by_chunk.setdefault(self._where[key], []).append(i)
        rows: list[np.ndarray | None] = [self._memory.get(k) for k in keys]
        for chunk, positions in by_chunk.items():
            with np.load(chunk, allow_pickle=False) as data:
                features = data["features" if "features" in data.files else "vectors"]
                for i in positions:
                    rows[i] = features[self._row[keys[i]]]
        if not rows:
            return np.zeros((0,), self.dtype)
        return np.stack(rows).astype(self.dtype, copy=False)


def _check_name(chunk: Path) -> None:
    """chunk-<time>-<pid>-<sha16>.npz must hold bytes whose sha256 starts with sha16."""
    parts = chunk.stem.split("-")
    if len(parts) == 4 and not atomic.sha256_file(chunk).startswith(parts[3]):
        raise ValueError("sha256 mismatch")
