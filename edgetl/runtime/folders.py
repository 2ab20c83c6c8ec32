"""Class-per-folder datasets: `root/<class>/**/<image>`. Shared by `train` and `update-head`."""

from __future__ import annotations

from pathlib import Path

from edgetl.errors import DataError
from edgetl.runtime.image import list_images


def scan_class_folders(root: str | Path, allow_empty: bool = False) -> dict[str, list[Path]]:
    """{class name: sorted image paths}; classes sorted by name. Hidden folders are ignored.

    An empty class folder is a DataError unless allow_empty (callers then report it).
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data path is not a folder: {root}")
    try:
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except PermissionError:
        raise DataError(f"cannot read data folder {root}: permission denied") from None
    if not class_dirs:
        raise DataError(f"{root} has no class folders; expected {root}/<class>/<image files>")
    classes = {d.name: list_images(d) for d in class_dirs}
    empty = [name for name, files in classes.items() if not files]
    if empty and not allow_empty:
        raise DataError(f"class folder(s) with no images in {root}: {', '.join(empty)}")
    return classes
