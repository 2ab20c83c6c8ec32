"""Feature extraction: run the frozen base over every image once, keep the result on disk.

    image file --sha256--> key  ---- in the store? ----> features
         |                              | no
         +-- load_rgb -> augment(view) -> preprocess -> base (batched) -> pool -> FeatureStore

With a frozen base, its output for an image never changes, so the head can be trained for
any number of epochs on cached features instead of re-running the base every epoch. View 0
is the clean image, views 1..K are augmented copies (train split only).

Cache layout: CACHE_DIR/features/<model digest>/ is a FeatureStore (edgetl.runtime.feature_store,
the chunked .npz store the device's update-head uses too). The model digest covers the base
name, a sha256 of the base's actual weight values (so `imagenet`, a local .h5 and a random
init can never be confused), the cut layer and taps, input size, preprocessing, pooling and
CACHE_VERSION. Inside, each row is keyed by `<sha256 of the file bytes>:<view>:<augment
digest>` (the augment digest covers every augmentation range, fill mode and the seed; it is
'-' for the clean view). A changed image, base, weight, cut, size or augmentation therefore
gets new keys and is recomputed; nothing is ever served stale. Features are stored as
float16 for feature maps (pooling 'none') and float32 for pooled vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.errors import ImageError
from edgetl.models.bases import get_base
from edgetl.models.classifier import config_taps, feature_model, traced_forward, weights_digest
from edgetl.runtime import atomic
from edgetl.runtime.feature_store import FeatureStore
from edgetl.runtime.image import load_rgb, preprocess
from edgetl.testhooks import slow_step
from edgetl.train.augment import AugmentParams, augment, view_rng

CACHE_VERSION = 1

EXTRACT_BATCH = 64  # images per base call, default and most (bounds memory for large bases and inputs)
POOLINGS = ("avg", "max", "none")


@dataclass
class FeatureSet:
    """features[i, v] is view v of image kept[i] (whose bytes have sha256 hashes[i]); skipped holds
    (path, reason) of undecodable files."""

    features: np.ndarray
    kept: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    hashes: list[str] = field(default_factory=list)


class FeatureExtractor:
    """Computes base features for image files, serving what it can from the on-disk store."""

    def __init__(
        self,
        base,
        *,
        base_name: str,
        cut_layer: str | None,
        input_size: int,
        scale: float,
        offset: float,
        pooling: str,
        cache_dir: str | Path,
        batch_size: int = EXTRACT_BATCH,
        taps: tuple[str, ...] = (),
    ):
        self.model = feature_model(base, pooling)
        self._forward = traced_forward(self.model)
        self.input_size, self.scale, self.offset = input_size, scale, offset
        self.batch_size = max(1, min(batch_size, EXTRACT_BATCH))
        dtype = np.float16 if pooling == "none" else np.float32
        identity = {
            "version": CACHE_VERSION,
            "base": base_name,
            "cut": cut_layer,
            **({"taps": list(taps)} if taps else {}),  # absent without taps: older caches stay valid
            "size": input_size,
            "scale": scale,
            "offset": offset,
            "pooling": pooling,
            "weights": weights_digest(base),
            "dtype": np.dtype(dtype).name,
        }
        self.digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
        self.store = FeatureStore(Path(cache_dir).expanduser() / "features" / self.digest, dtype)
        self.folder = self.store.folder
        self.feature_shape = tuple(int(d) for d in self.model.output.shape[1:])
        self.base_calls = 0

    @classmethod
    def for_config(cls, config, base, **overrides) -> FeatureExtractor:
        """The extractor of `base` (built from `config` by config_base) into config.cache_dir;
        `overrides` replace any of the settings (e.g. batch_size)."""
        spec = get_base(config.base)
        settings = dict(
            base_name=spec.name,
            cut_layer=config.cut_layer,
            input_size=config.input_size,
            scale=spec.scale,
            offset=spec.offset,
            pooling=config.pooling if config.pooling in ("avg", "max") else "none",
            cache_dir=config.cache_dir,
            taps=config_taps(config),
        )
        return cls(base, **{**settings, **overrides})

    def reload(self) -> None:
        """Pick up chunks other processes wrote since (multi-worker: the other workers' shards)."""
        self.store.reload()

    def _predict(self, batch: list[np.ndarray]) -> np.ndarray:
        self.base_calls += 1
        x = preprocess(np.stack(batch), self.scale, self.offset)
        out = self._forward(x).numpy().astype(np.float32, copy=False)
        slow_step()
        return out

    def extract(
        self,
        paths: list[Path],
        views: int = 0,
        params: AugmentParams | None = None,
        seed: int = 0,
        desc: str = "features",
    ) -> FeatureSet:
        """Features of `paths` for view 0 (clean) and views 1..`views` (augmented with params)."""
        if views and params is None:
            raise ValueError("augmented views need AugmentParams")
        start = time.time()
        aug = params.digest(seed) if views and params is not None else "-"
        hashes, skipped = hash_files(paths)

        def key(i: int, v: int) -> str:
            return f"{hashes[i]}:{v}:{aug if v else '-'}"

        todo = [i for i in hashes if any(key(i, v) not in self.store for v in range(views + 1))]
        missing = [(i, [v for v in range(views + 1) if key(i, v) not in self.store]) for i in todo]
        computed = self._compute(paths, missing, key, params, seed, skipped, desc)
        kept = [i for i in range(len(paths)) if i not in skipped]
        rows = self.store.get(key(i, v) for i in kept for v in range(views + 1))
        out = rows.reshape(len(kept), views + 1, *self.feature_shape)
        reasons = [(str(paths[i]), _strip_path(skipped[i], paths[i])) for i in sorted(skipped)]
        cached = len(kept) * (views + 1) - computed
        return FeatureSet(out, kept, reasons, computed, cached, time.time() - start, [hashes[i] for i in kept])

    def _compute(
        self,
        paths: list[Path],
        missing: list[tuple[int, list[int]]],
        key,
        params,
        seed: int,
        skipped: dict[int, str],
        desc: str,
    ) -> int:
        """Run the base on every missing (image, view); undecodable images go into `skipped`."""
        from tqdm import tqdm

        computed = 0
        batch_keys: list[str] = []
        batch: list[np.ndarray] = []

        def flush_batch() -> None:
            nonlocal computed
            for k, f in zip(batch_keys, self._predict(batch) if batch else []):
                self.store.add(k, f)
            computed += len(batch)
            batch_keys.clear()
            batch.clear()

        with tqdm(total=len(missing), desc=desc, unit="img", disable=None) as bar:
            for i, views_of_i, error in decoded_views(
                paths, missing, self.input_size, params, seed, key, self.batch_size
            ):
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
        self.store.flush()
        return computed


def hash_files(paths: list[Path]) -> tuple[dict[int, str], dict[int, str]]:
    """-> ({index: sha256 of the file}, {index: why it cannot be read})."""
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
    return hashes, skipped


def decoded_views(
    paths: list[Path], missing: list[tuple[int, list[int]]], size: int, params, seed: int, key, batch_size: int
) -> Iterator[tuple[int, list | None, str | None]]:
    """(image index, [(key, uint8 pixels of each missing view)], error) for each image, in order.

    A block is decoded on every core, then the caller runs the base on it with the cores to
    itself: TF's intra-op threads stall when decoder threads preempt them (20 s vs 14 s on 2
    cores; even at the lowest thread priority, overlapping them was slower).
    """

    def prepare(item: tuple[int, list[int]]):
        i, views = item
        try:
            pixels = load_rgb(paths[i], size)
        except ImageError as exc:
            return i, None, str(exc)
        sha = key(i, 0).split(":", 1)[0]
        return (
            i,
            [(key(i, v), pixels if v == 0 else augment(pixels, params, view_rng(seed, sha, v))) for v in views],
            None,
        )

    block = max(4 * batch_size, 128)
    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        for start in range(0, len(missing), block):
            yield from pool.map(prepare, missing[start : start + block])


def _strip_path(message: str, path: Path) -> str:
    """ImageError messages start with the file name; metrics.json keeps path and reason apart."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
