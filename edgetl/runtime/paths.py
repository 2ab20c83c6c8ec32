"""Image paths to classify: files, folders, globs, and `-` (paths read from stdin).

Paths are expanded lazily, so `find ... | edgetl run BUNDLE -` streams and a folder of a
million images is never listed twice in memory. A SOURCE that matches nothing becomes a
per-item error (reported, run continues), like a corrupt image.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from edgetl.runtime.image import list_images

GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class PathItem:
    """One SOURCE entry: a path to classify, or the reason it cannot be (reported per item)."""

    path: str
    error: str | None = None


def _expand_one(source: str) -> Iterator[PathItem]:
    if os.path.isdir(source):
        found = list_images(source)
        if not found:
            yield PathItem(source, "a folder with no image files")
        for path in found:
            yield PathItem(str(path))
    elif os.path.exists(source) or os.path.islink(source):
        yield PathItem(source)  # an explicit file is always tried, whatever its suffix
    elif GLOB_CHARS & set(source):
        matches = sorted(glob.iglob(source, recursive=True))
        if not matches:
            yield PathItem(source, "no files match this pattern")
        for match in matches:
            if os.path.isdir(match):
                yield from _expand_one(match)
            elif not os.path.basename(match).startswith("."):
                yield PathItem(match)
    else:
        yield PathItem(source, "no such file or folder")


def iter_paths(sources: Iterable[str], stdin: TextIO | None = None) -> Iterator[PathItem]:
    """SOURCE arguments -> PathItems in order; `-` reads one path per line from stdin."""
    for source in sources:
        if source == "-":
            for line in stdin if stdin is not None else sys.stdin:
                line = line.rstrip("\r\n")
                if line.strip():
                    yield from _expand_one(line)
        else:
            yield from _expand_one(source)
