"""Device heads: retrained heads beside the exported one, switched by an atomic pointer.

    BUNDLE/head.npz                      the exported head, never modified
    BUNDLE/head.openworld.npz            its open-world statistics (edgetl.runtime.openworld), if exported
    BUNDLE/device/heads/<sha8>.npz       retrained heads (written atomically + fsync)
    BUNDLE/device/heads/<sha8>.openworld.npz   their statistics, refitted by update-head
    BUNDLE/device/heads/CURRENT.json     {"file", "sha256", "previous": {...}|null, "classes",
                                          "accuracy", "base", "created", "openworld": {"file", "sha256"}}

A swap writes the new head file first and only then replaces CURRENT.json with os.replace,
so a power cut at any moment leaves either the old pointer or the new one, each naming a
complete file. A reader still verifies the pointed file's sha256 and walks back through
"previous" (then the exported head) if a file is missing or corrupt, saying so on stderr.
No CURRENT.json means the exported head (and the fused model) is in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl.errors import BundleError
from edgetl.runtime import atomic
from edgetl.runtime.bundle import Bundle
from edgetl.runtime.head import NumpyHead
from edgetl.runtime.openworld import OpenWorld

HEADS_DIR = Path("device") / "heads"
LOCK = Path("device") / ".lock"  # held while update-head or rollback-head changes the head
POINTER = "CURRENT.json"
MAX_HISTORY = 10  # depth of the "previous" chain kept in the pointer


@dataclass
class ActiveHead:
    head: NumpyHead
    record: dict[str, Any] | None  # None: the exported head
    description: str
    openworld: OpenWorld | None = None  # its calibration and unknown statistics, when it has them

    @property
    def is_device_head(self) -> bool:
        return self.record is not None


def heads_dir(bundle: Bundle) -> Path:
    return bundle.root / HEADS_DIR


def pointer_path(bundle: Bundle) -> Path:
    return heads_dir(bundle) / POINTER


def original_head(bundle: Bundle) -> NumpyHead:
    if "head" not in bundle.manifest:
        raise BundleError(f"{bundle.root} has no head.npz in its manifest; re-export with the split (base + head) form")
    return NumpyHead.load(bundle.path_of(bundle.manifest["head"]))


def _openworld(bundle: Bundle, head: NumpyHead, record: dict[str, Any] | None) -> OpenWorld | None:
    """The statistics of a head (the exported one when record is None); a bad file is a warning, not a lost head."""
    entry = (record or bundle.manifest).get("openworld")
    if not isinstance(entry, dict):
        return None
    try:
        if record is None:
            path = bundle.path_of(entry)
        else:
            path = _checked(bundle, entry, "open-world statistics")
        stats = OpenWorld.load(path)
    except BundleError as exc:
        print(f"warning: {exc}; running without unknown detection", file=sys.stderr)
        return None
    if not stats.fits(head):
        print(
            "warning: the open-world statistics belong to another head; running without unknown detection",
            file=sys.stderr,
        )
        return None
    return stats


def _checked(bundle: Bundle, entry: dict[str, Any], what: str) -> Path:
    """A file in heads/ named by a record entry, present and matching its sha256."""
    name = entry.get("file")
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise BundleError(f"head pointer names an invalid file {name!r}")
    path = heads_dir(bundle) / name
    if not path.is_file():
        raise BundleError(f"{what} {name} is missing")
    if atomic.sha256_file(path) != entry.get("sha256"):
        raise BundleError(f"{what} {name} does not match its sha256 (corrupt)")
    return path


def read_pointer(bundle: Bundle) -> dict[str, Any] | None:
    """The pointer record, or None (exported head). An unreadable pointer is reported and ignored."""
    path = pointer_path(bundle)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"warning: {path} is unreadable ({type(exc).__name__}); using the exported head", file=sys.stderr)
        return None
    return record if isinstance(record, dict) else None


def _load_record(bundle: Bundle, record: dict[str, Any]) -> NumpyHead:
    """Load the head a record names, checking it lives in heads/ and matches its sha256."""
    return NumpyHead.load(_checked(bundle, record, "device head"))


def active_head(bundle: Bundle) -> ActiveHead:
    """The head to use: the pointer's, else the newest valid previous one, else the exported head."""
    record = read_pointer(bundle)
    while record is not None:
        try:
            head = _load_record(bundle, record)
            return ActiveHead(head, record, f"device head {record['file']}", _openworld(bundle, head, record))
        except BundleError as exc:
            print(f"warning: {exc}; falling back to the previous head", file=sys.stderr)
            prev = record.get("previous")
            record = prev if isinstance(prev, dict) else None
    head = original_head(bundle)
    return ActiveHead(head, None, "exported head.npz", _openworld(bundle, head, None))


@contextlib.contextmanager
def exclusive(bundle: Bundle) -> Iterator[None]:
    """One head change at a time per bundle (update-head, rollback-head).

    Two at once could lose one of the swaps, or one could prune the head file the other is
    about to point at. The kernel drops a flock when its holder dies, so a killed update leaves
    no stale lock behind.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    path = bundle.root / LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as exc:
        raise BundleError(f"cannot change the head of {bundle.root}: {exc.strerror or exc}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(
                f"another update-head or rollback-head is changing the head of {bundle.root}; "
                "run this again when it has finished"
            ) from None
        except OSError:  # a filesystem without locks: go on unlocked
            pass
        yield


def _trim(record: dict[str, Any] | None, depth: int = MAX_HISTORY) -> dict[str, Any] | None:
    if record is None or depth <= 0:
        return None
    return {**record, "previous": _trim(record.get("previous"), depth - 1)}


def _write_once(bundle: Bundle, data: bytes, suffix: str) -> dict[str, str]:
    """heads/<sha8><suffix> holding `data` (written atomically unless already there) -> {"file", "sha256"}."""
    digest = hashlib.sha256(data).hexdigest()
    target = heads_dir(bundle) / f"{digest[:8]}{suffix}"
    if not (target.is_file() and atomic.sha256_file(target) == digest):
        atomic.write_bytes(target, data)
    return {"file": target.name, "sha256": digest}


def swap_in(
    bundle: Bundle,
    head: NumpyHead,
    accuracy: float | None,
    base_format: str,
    extra: dict[str, Any] | None = None,
    openworld: OpenWorld | None = None,
) -> dict[str, Any]:
    """Write `head` (and its statistics) and point CURRENT at it (the previous pointer becomes "previous")."""
    written = _write_once(bundle, head.to_bytes(), ".npz")  # 1: the complete head file, fsynced
    stats = _write_once(bundle, openworld.to_bytes(), ".openworld.npz") if openworld is not None else None
    record = {
        **written,
        "previous": _trim(read_pointer(bundle)),
        "classes": list(head.classes),
        "accuracy": accuracy,
        "base": base_format,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"openworld": stats} if stats else {}),
        **(extra or {}),
    }
    atomic.write_text(pointer_path(bundle), json.dumps(record, indent=2))  # 2: os.replace of the pointer
    return record


def rollback(bundle: Bundle) -> dict[str, Any] | None:
    """Point CURRENT back to the previous head; with no previous, back to the exported head.

    Returns the record now in use (None: the exported head).
    """
    record = read_pointer(bundle)
    if record is None:
        raise BundleError(f"{bundle.root} already uses its exported head; nothing to roll back")
    previous = record.get("previous")
    if isinstance(previous, dict):
        atomic.write_text(pointer_path(bundle), json.dumps(previous, indent=2))
        return previous
    path = pointer_path(bundle)
    os.unlink(path)
    atomic._fsync_dir(path.parent)
    return None


def referenced_files(record: dict[str, Any] | None) -> set[str]:
    names: set[str] = set()
    while isinstance(record, dict):
        for entry in (record, record.get("openworld")):
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                names.add(entry["file"])
        record = record.get("previous")
    return names


def prune(bundle: Bundle) -> int:
    """Delete head files no pointer in the history names (after a successful swap)."""
    keep = referenced_files(read_pointer(bundle))
    removed = 0
    folder = heads_dir(bundle)
    for path in folder.glob("*.npz") if folder.is_dir() else ():
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
