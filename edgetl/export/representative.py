"""Calibration images for full-integer export: the representative dataset.

A class-stratified sample of the run's TRAINING split, decoded and preprocessed exactly as in
training (`load_rgb` + `preprocess` with the run's scale/offset), never the validation images
the gate measures. Images are decoded lazily, so the ladder's "more calibration" rung only
decodes the extra ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.errors import ExportError, ImageError
from edgetl.runtime.image import load_rgb, preprocess

TINY_CALIBRATION = 100


@dataclass
class Calibration:
    """Candidate training images in stratified order, decoded lazily and cached."""

    files: list[tuple[Path, int]]
    size: int
    scale: float
    offset: float
    num_classes: int
    skipped: list[str] = field(default_factory=list)
    _images: list[np.ndarray] = field(default_factory=list)
    _labels: list[int] = field(default_factory=list)
    _next: int = 0

    @property
    def available(self) -> int:
        return len(self.files)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first n decodable images (N,S,S,3 float32) and labels; bad files are skipped and counted."""
        while len(self._images) < n and self._next < len(self.files):
            path, label = self.files[self._next]
            self._next += 1
            try:
                self._images.append(preprocess(load_rgb(path, self.size), self.scale, self.offset))
                self._labels.append(label)
            except (ImageError, OSError) as exc:
                self.skipped.append(str(exc).splitlines()[0] if str(exc) else str(path))
        if not self._images:
            raise ExportError(
                f"none of the {len(self.files)} calibration images could be decoded "
                f"(first error: {self.skipped[0] if self.skipped else 'no files'}); check the run's training data"
            )
        return np.stack(self._images[:n]), np.asarray(self._labels[:n])

    def warnings(self, n: int) -> list[str]:
        images, labels = self.take(n)
        out = []
        if len(images) < TINY_CALIBRATION:
            out.append(f"only {len(images)} calibration images (< {TINY_CALIBRATION}); int8 ranges may be poor")
        missing = sorted(set(range(self.num_classes)) - set(labels.tolist()))
        if missing:
            out.append(f"calibration sample has no images of class index(es) {missing}")
        if self.skipped:
            out.append(f"{len(self.skipped)} calibration image(s) failed to decode and were skipped")
        return out


def stratified(files: list[tuple[Path, int]], seed: int = 0) -> list[tuple[Path, int]]:
    """Shuffle each class, then interleave classes: any prefix is class-balanced."""
    rng = random.Random(seed)
    by_class: dict[int, list] = {}
    for item in files:
        by_class.setdefault(int(item[1]), []).append(item)
    queues = []
    for label in sorted(by_class):
        items = list(by_class[label])
        rng.shuffle(items)
        queues.append(items)
    out = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def calibration_from_run(run, seed: int = 0) -> Calibration:
    files = run.files("train")
    if not files:
        raise ExportError(f"run {run.root} has an empty training split; int8 export needs calibration images")
    return Calibration(stratified(files, seed), run.input_size, run.scale, run.offset, len(run.classes))
