"""A running camera picks up the head that `update-head` or `rollback-head` swapped in."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from edgetl.errors import EdgetlError
from edgetl.runtime import headstore
from edgetl.runtime.predictor import Predictor, open_predictor

# Seconds between checks (one stat() each) for a head swapped in by update-head / rollback-head.
HEAD_CHECK_SECONDS = 2.0


class HeadWatch:
    """Lets a running camera pick up a head that `update-head` or `rollback-head` swapped in.

    A service classifying a camera should not need a restart to use the head just retrained
    on the device. The head pointer is replaced atomically (a new inode each time), so a
    change means a complete new head; checking is one stat() every `every` seconds. The new
    predictor is opened in full before it replaces the running one, and if it cannot be
    opened the running one goes on (with a warning). Create it before opening the predictor,
    so a swap in between is not missed.
    """

    def __init__(
        self,
        bundle_dir,
        fmt: str | None,
        threads: int | None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options,
    ):
        """`options`: more open_predictor keywords (unknown, unknown_threshold), used for every new head."""
        self.bundle_dir, self.fmt, self.threads, self.clock, self.options = bundle_dir, fmt, threads, clock, options
        self.pointer = Path(bundle_dir) / headstore.HEADS_DIR / headstore.POINTER
        self.every = HEAD_CHECK_SECONDS if every is None else every
        self._state = self._pointer_state()
        self._next = clock() + self.every

    def _pointer_state(self) -> tuple | None:
        try:
            info = os.stat(self.pointer)
        except FileNotFoundError:
            return None  # the exported head
        except OSError as exc:
            return ("unreadable", exc.errno)
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def check(self, predictor: Predictor, err: TextIO) -> Predictor:
        """The predictor to use from now on: `predictor`, or a new one if the head changed."""
        now = self.clock()
        if now < self._next:
            return predictor
        self._next = now + self.every
        state = self._pointer_state()
        if state == self._state:
            return predictor
        self._state = state
        try:
            new = open_predictor(self.bundle_dir, self.fmt, self.threads, **self.options)
        except EdgetlError as exc:
            print(
                f"warning: the bundle's head changed but cannot be used ({exc}); "
                f"still using {predictor.head_description}",
                file=err,
                flush=True,
            )
            return predictor
        print(
            f"note: head changed; now using {new.head_description} ({new.fmt}, classes: {', '.join(new.classes)})",
            file=err,
            flush=True,
        )
        return new
