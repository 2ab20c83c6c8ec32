"""The feature cache: run the frozen base over every image once, keep the result on disk.

    image file --sha256--> key  ---- in cache? ----> features
         |                              | no
         +-- load_rgb -> augment(view) -> preprocess -> base (batched) -> pool -> chunk .npz

With a frozen base, its output for an image never changes, so the head can be trained for
any number of epochs on cached features instead of re-running the base every epoch. View 0
is the clean image, views 1..K are augmented copies (train split only).

Cache layout: CACHE_DIR/features/<model digest>/chunk-*.npz. The model digest covers the base
name, a sha256 of the base's actual weight values (so `imagenet`, a local .h5 and a random
init can never be confused), the cut layer, input size, preprocessing, pooling and
CACHE_VERSION. Inside, each row is keyed by `<sha256 of the file bytes>:<view>:<augment
digest>` (the augment digest covers every augmentation range, fill mode and the seed; it is
'-' for the clean view). A changed image, base, weight, cut, size or augmentation therefore
gets new keys and is recomputed; nothing is ever served stale.

Chunks are written atomically every CHUNK_SIZE rows, so a killed extraction keeps its
finished chunks and the next run computes only the rest. A chunk's name ends with the first
16 hex digits of the sha256 of its bytes (chunk-<time>-<pid>-<sha16>.npz); a chunk that does
not match (bit rot, a truncated copy) or cannot be read is deleted with a one-line warning
and its rows are recomputed. Files are read with
allow_pickle=False: keys are numpy unicode arrays. Features are stored as float16 for
feature maps (pooling 'none') and float32 for pooled vectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.train.augment import AugmentParams, augment, view_rng
from edgetl.errors import ImageError
from edgetl.runtime import atomic
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.testhooks import slow_step

CACHE_VERSION = 1
CHUNK_SIZE = 256
EXTRACT_BATCH = 64  # images per base call, default and most (bounds memory for large bases and inputs)
POOLINGS = ("avg", "max", "none")


def weights_digest(model) -> str:
    """sha256 over the values of every weight of a model."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(str(w.shape).encode())
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def feature_model(base, pooling: str):
    """The base, followed by global pooling when pooling is avg or max and the output is a map."""
    from edgetl._tf import keras

    if pooling == "none" or len(base.output.shape) != 4:
        return base
    layer = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}[pooling]()
    return keras.Model(base.input, layer(base.output), name="base_pooled")


def traced_forward(model):
    """model(x, training=False) as one traced graph for any batch size.

    predict_on_batch wraps every call in a fresh tf.data pipeline; on a 2-core CPU that made a
    MobileNetV2 batch of 32 cost ~45% more than this direct graph call, for the same outputs.
    """
    from edgetl._tf import tf

    spec = tf.TensorSpec((None, *model.input.shape[1:]), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


@dataclass
class FeatureSet:
    """features[i, v] is view v of image kept[i]; skipped holds (path, reason) of undecodable files."""

    features: np.ndarray
    kept: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


class FeatureCache:
    """Computes base features for image files, serving what it can from disk."""

    def __init__(self, base, *, base_name: str, cut_layer: str | None, input_size: int, scale: float,
                 offset: float, pooling: str, cache_dir: str | Path, batch_size: int = EXTRACT_BATCH):
        self.model = feature_model(base, pooling)
        self._forward = traced_forward(self.model)
        self.input_size, self.scale, self.offset = input_size, scale, offset
        self.batch_size = max(1, min(batch_size, EXTRACT_BATCH))
        self.dtype = np.float16 if pooling == "none" else np.float32
        identity = {"version": CACHE_VERSION, "base": base_name, "cut": cut_layer, "size": input_size,
                    "scale": scale, "offset": offset, "pooling": pooling, "weights": weights_digest(base),
                    "dtype": np.dtype(self.dtype).name}
        self.digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
        self.folder = Path(cache_dir).expanduser() / "features" / self.digest
        self.feature_shape = tuple(int(d) for d in self.model.output.shape[1:])
        self.base_calls = 0
        self._index: dict[str, tuple[Path, int]] = {}
        self._read_index()

    def reload(self) -> None:
        """Pick up chunks other processes wrote since (multi-worker: the other workers' shards)."""
        self._read_index()

    def _read_index(self) -> None:
        if not self.folder.is_dir():
            return
        for chunk in sorted(self.folder.glob("chunk-*.npz")):
            try:
                expected = chunk.stem.rsplit("-", 1)[-1]
                if len(chunk.stem.split("-")) == 4 and not atomic.sha256_file(chunk).startswith(expected):
                    raise ValueError("sha256 mismatch")
                with np.load(chunk, allow_pickle=False) as data:
                    keys = [str(k) for k in data["keys"]]
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                print(f"warning: discarding corrupt feature cache chunk {chunk.name} ({exc.__class__.__name__}: "
                      f"{str(exc)[:60]}); its features will be recomputed")
                chunk.unlink(missing_ok=True)
                continue
            for row, key in enumerate(keys):
                self._index.setdefault(key, (chunk, row))

    def _write_chunk(self, keys: list[str], feats: list[np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys, dtype=np.str_), features=np.stack(feats).astype(self.dtype))
        data = buf.getvalue()
        name = f"chunk-{time.time_ns()}-{os.getpid()}-{hashlib.sha256(data).hexdigest()[:16]}.npz"
        path = atomic.write_bytes(self.folder / name, data)
        for row, key in enumerate(keys):
            self._index.setdefault(key, (path, row))

    def _predict(self, batch: list[np.ndarray]) -> np.ndarray:
        self.base_calls += 1
        x = preprocess(np.stack(batch), self.scale, self.offset)
        out = self._forward(x).numpy().astype(np.float32, copy=False)
        slow_step()
        return out

    def extract(self, paths: list[Path], views: int = 0, params: AugmentParams | None = None, seed: int = 0,
                desc: str = "features") -> FeatureSet:
        """Features of `paths` for view 0 (clean) and views 1..`views` (augmented with params)."""
        from tqdm import tqdm

        if views and params is None:
            raise ValueError("augmented views need AugmentParams")
        start = time.time()
        aug = params.digest(seed) if views and params is not None else "-"
        hashes: dict[int, str] = {}
        skipped: dict[int, str] = {}
        for i, path in enumerate(paths):
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
                    skipped[i] = f"{path}: not a regular file"
                    continue
                hashes[i] = atomic.sha256_file(path)
            except OSError as exc:
                skipped[i] = f"{path}: cannot read ({exc.strerror or type(exc).__name__})"

        def key(i: int, v: int) -> str:
            return f"{hashes[i]}:{v}:{aug if v else '-'}"

        todo = [i for i in hashes if any(key(i, v) not in self._index for v in range(views + 1))]
        computed = 0
        fresh: dict[str, np.ndarray] = {}
        pending_keys: list[str] = []
        pending: list[np.ndarray] = []

        def prepare(i: int):
            try:
                pixels = load_rgb(paths[i], self.input_size)
            except ImageError as exc:
                return i, None, str(exc)
            out = []
            for v in range(views + 1):
                if key(i, v) in self._index:
                    continue
                img = pixels if v == 0 else augment(pixels, params, view_rng(seed, hashes[i], v))
                out.append((key(i, v), img))
            return i, out, None

        workers = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool, tqdm(total=len(todo), desc=desc, unit="img", disable=None) as bar:
            batch_keys: list[str] = []
            batch: list[np.ndarray] = []

            def flush_batch():
                nonlocal batch_keys, batch, computed
                if not batch:
                    return
                for k, f in zip(batch_keys, self._predict(batch)):
                    fresh[k] = f
                    pending_keys.append(k)
                    pending.append(f)
                computed += len(batch)
                batch_keys, batch = [], []
                if len(pending) >= CHUNK_SIZE:
                    self._write_chunk(pending_keys, pending)
                    pending_keys.clear()
                    pending.clear()

            # Decode a block on every core, then run the base on it with the cores to itself: TF's
            # intra-op threads stall when decoder threads preempt them (20 s vs 14 s on 2 cores;
            # even at the lowest thread priority, overlapping them was slower).
            block = max(4 * self.batch_size, 128)
            for start_at in range(0, len(todo), block):
                for i, views_of_i, error in list(pool.map(prepare, todo[start_at:start_at + block])):
                    bar.update(1)
                    if error is not None:
                        skipped[i] = error
                        continue
                    for k, img in views_of_i:
                        batch_keys.append(k)
                        batch.append(img)
                        if len(batch) >= self.batch_size:
                            flush_batch()
            flush_batch()
            if pending:
                self._write_chunk(pending_keys, pending)

        kept = [i for i in range(len(paths)) if i not in skipped]
        out = np.zeros((len(kept), views + 1, *self.feature_shape), dtype=self.dtype)
        by_chunk: dict[Path, list[tuple[int, int, int]]] = {}
        for n, i in enumerate(kept):
            for v in range(views + 1):
                k = key(i, v)
                if k in fresh:
                    out[n, v] = fresh[k]
                else:
                    chunk, row = self._index[k]
                    by_chunk.setdefault(chunk, []).append((n, v, row))
        for chunk, rows in by_chunk.items():
            with np.load(chunk, allow_pickle=False) as data:
                feats = data["features"]
                for n, v, row in rows:
                    out[n, v] = feats[row]
        total = len(kept) * (views + 1)
        reasons = [(str(paths[i]), _strip_path(skipped[i], paths[i])) for i in sorted(skipped)]
        return FeatureSet(out, kept, reasons, computed, total - computed, time.time() - start)


def _strip_path(message: str, path: Path) -> str:
    """ImageError messages start with the file name; metrics.json keeps path and reason apart."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message
