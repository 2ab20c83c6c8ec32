"""Finding the images of a run and splitting them, before any TensorFlow work starts.

Two layouts are accepted:

    DIR/train/<class>/*.jpg + DIR/val/<class>/*.jpg   (or DIR/validation/)  -> used as given
    DIR/<class>/*.jpg                                                       -> seeded stratified split

Everything that makes a dataset unusable (missing folder, empty class, a single class,
train and val with different classes) is a DataError here, so a run fails in seconds rather
than after feature extraction. Undecodable files are found later, while decoding, and are
skipped and reported (see `edgetl.train.extract`), never fatal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.errors import DataError
from edgetl.runtime.folders import scan_class_folders

VAL_DIRS = ("val", "validation")
Item = tuple[Path, int]


@dataclass(frozen=True)
class Dataset:
    """Absolute image paths with label indices into `classes` (sorted class-folder names)."""

    root: Path
    classes: list[str]
    train: list[Item]
    val: list[Item]
    layout: str = "flat"  # flat | split
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), filled by the caller

    def counts(self, split: str) -> dict[str, int]:
        items = self.train if split == "train" else self.val
        out = {name: 0 for name in self.classes}
        for _, label in items:
            out[self.classes[label]] += 1
        return out

    def keep(self, train_kept: list[int], val_kept: list[int], skipped: list[tuple[str, str]]) -> Dataset:
        """This dataset without the files that could not be decoded; an error when a class or the val split empties."""
        kept = dataclasses.replace(
            self, train=[self.train[i] for i in train_kept], val=[self.val[i] for i in val_kept], skipped=list(skipped)
        )
        missing = [name for name, n in kept.counts("train").items() if n == 0]
        if missing:
            raise DataError(
                f"no readable training images left for class(es) {', '.join(missing)} "
                f"({len(skipped)} file(s) skipped); add images"
            )
        if not kept.val:
            raise DataError(f"no readable validation images left ({len(skipped)} file(s) skipped); add images")
        return kept

    def relative(self, split: str) -> list[list]:
        """[[posix path relative to root, label], ...] for splits.json."""
        items = self.train if split == "train" else self.val
        return [[p.relative_to(self.root).as_posix(), int(label)] for p, label in items]


def find_layout(root: Path) -> tuple[str, Path | None, Path | None]:
    """('split', train_dir, val_dir) when both exist, else ('flat', None, None)."""
    train_dir = root / "train"
    val_dir = next((root / name for name in VAL_DIRS if (root / name).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        return "split", train_dir, val_dir
    return "flat", None, None


def _check_classes(classes: dict[str, list[Path]], where: Path) -> None:
    if len(classes) < 2:
        only = ", ".join(classes) or "none"
        raise DataError(f"{where} has a single class ({only}); a classifier needs at least 2 class folders")


def stratified_split(classes: dict[str, list[Path]], val_split: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Per class, shuffle with a seeded generator and hold out round(n * val_split) images.

    A class with >= 2 images keeps at least one image in each split.
    """
    train: list[Item] = []
    val: list[Item] = []
    for label, name in enumerate(sorted(classes)):
        files = sorted(classes[name])
        order = np.random.default_rng([seed, label]).permutation(len(files))
        n_val = int(round(len(files) * val_split))
        if len(files) >= 2:
            n_val = min(max(n_val, 1), len(files) - 1)
        else:
            n_val = 0
        held = set(order[:n_val].tolist())
        for i, path in enumerate(files):
            (val if i in held else train).append((path, label))
    return train, val


def load_dataset(path: str | Path | None, val_split: float = 0.2, seed: int = 42) -> Dataset:
    """Scan a dataset folder and return its train / val split (no image is decoded here)."""
    if not path:
        raise DataError("no dataset given; pass --data DIR (class-per-folder images) or set `data:` in the config")
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise DataError(f"data folder not found: {path}")
    layout, train_dir, val_dir = find_layout(root)
    if layout == "split":
        train_classes = scan_class_folders(train_dir)
        val_classes = scan_class_folders(val_dir)
        _check_classes(train_classes, train_dir)
        if set(train_classes) != set(val_classes):
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            raise DataError(
                f"{train_dir} and {val_dir} have different classes (only in train: {only_train or '-'}, "
                f"only in val: {only_val or '-'}); give both the same class folders"
            )
        names = sorted(train_classes)
        train = [(p, i) for i, n in enumerate(names) for p in train_classes[n]]
        val = [(p, i) for i, n in enumerate(names) for p in val_classes[n]]
        return Dataset(root, names, train, val, "split")
    classes = scan_class_folders(root)
    _check_classes(classes, root)
    if val_split <= 0:
        raise DataError(f"{root} has no train/ and val/ folders and val_split is 0; set --val-split (e.g. 0.2)")
    train, val = stratified_split(classes, val_split, seed)
    if not val:
        raise DataError(f"val_split {val_split} leaves no validation images in {root}; add images or raise --val-split")
    return Dataset(root, sorted(classes), train, val, "flat")


def all_images(path: str | Path) -> tuple[Path, list[str], list[tuple[Path, int, str]]]:
    """Every image of a dataset as (path, label, split name), for `edgetl features`."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise DataError(f"data folder not found: {path}")
    layout, train_dir, val_dir = find_layout(root)
    if layout == "split":
        ds = load_dataset(root, 0.2, 0)
        items = [(p, y, "train") for p, y in ds.train] + [(p, y, "val") for p, y in ds.val]
        return root, ds.classes, items
    classes = scan_class_folders(root)
    names = sorted(classes)
    return root, names, [(p, i, "all") for i, n in enumerate(names) for p in classes[n]]
