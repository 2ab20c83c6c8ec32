"""What a long `edgetl run` watches after each image: the uncertain-image store and drift.

    Verdict --unknown, or top-2 margin < MonitorConfig.margin--> UncertainStore (bounded, atomic, with a sidecar)
            --unknown flag-------------------------------------> DriftDetector "unknown rate"
            --calibrated confidence < the head's cut-----------> DriftDetector "low-confidence rate"

The drift tests compare against the bundle's validation baseline (the unknown rate `edgetl
validate` measured on the val images, plus one standard error) when validation measured it
on at least MIN_BASELINE images; otherwise against the first images of the run (see
edgetl.runtime.drift for why a small held-out sample is not enough). A camera feeds them at
most one frame per `every` seconds: consecutive frames are not independent images. A drift
event is a `warning: drift: ...` line on stderr and, with --json, a {"event": "drift", ...}
line on stdout. A head swapped in meanwhile restarts both tests.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from edgetl.runtime.drift import DriftDetector, DriftEvent
from edgetl.runtime.predictor import Predictor, Verdict
from edgetl.runtime.results import margin, top_k
from edgetl.runtime.uncertain_store import UncertainStore

MIN_BASELINE = 300


@dataclass(frozen=True)
class MonitorConfig:
    """Attributes: save_uncertain (folder, None: off), save_max (items), save_max_mb, margin (top-2
    calibrated probability margin below which an image is uncertain), drift (on/off), every
    (seconds between camera frames fed to the drift tests)."""

    save_uncertain: str | None = None
    save_max: int = 500
    save_max_mb: float = 200.0
    margin: float = 0.1
    drift: bool = True
    every: float = 1.0


def validation_rate(predictor: Predictor) -> tuple[float, int] | None:
    """(unknown rate, images) that `edgetl validate` measured for the model in use, if it did."""
    summary = (predictor.bundle.manifest.get("validation") or {}).get("formats", {}).get(predictor.fmt, {})
    rate, count = summary.get("unknown_rate"), (predictor.bundle.manifest.get("validation") or {}).get("num_images")
    return (float(rate), int(count)) if rate is not None and count else None


class RunMonitor:
    def __init__(
        self,
        config: MonitorConfig,
        predictor: Predictor,
        out: TextIO,
        err: TextIO,
        as_json: bool,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config, self.out, self.err, self.as_json, self.clock = config, out, err, as_json, clock
        self.store = (
            UncertainStore(config.save_uncertain, config.save_max, int(config.save_max_mb * 2**20))
            if config.save_uncertain
            else None
        )
        self.saved = 0
        self._next_feed = 0.0
        self.head_changed(predictor)

    def head_changed(self, predictor: Predictor) -> None:
        """A new predictor (head swapped in): restart the drift tests against its own baseline."""
        self.predictor = predictor
        self.drift: list[DriftDetector] = []
        if self.config.drift and predictor.openworld is not None:
            baseline = validation_rate(predictor)
            p0 = None
            if baseline is not None and baseline[1] >= MIN_BASELINE:
                rate, n = baseline
                p0 = rate + math.sqrt(max(rate, 0.005) * (1 - rate) / n)
            self.drift = [DriftDetector("unknown", p0=p0), DriftDetector("low-confidence")]

    def observe(self, verdict: Verdict, name: str, image: Any, camera: bool = False) -> None:
        """After one image: maybe store it, maybe feed the drift tests. `image`: bytes, a path or a frame array."""
        uncertain = bool(verdict.unknown) or margin(verdict.probabilities) < self.config.margin
        if self.store is not None and uncertain:
            self._save(verdict, name, image)
        if self.drift and verdict.unknown is not None:
            now = self.clock()
            if camera and now < self._next_feed:
                return
            self._next_feed = now + self.config.every
            low = float(verdict.probabilities.max()) < self.predictor.openworld.confidence_cut
            for detector, event in zip(self.drift, (verdict.unknown, low)):
                self._report(detector.update(event))

    def _save(self, verdict: Verdict, name: str, image: Any) -> None:
        predictor = self.predictor
        if isinstance(image, str):
            try:
                with open(image, "rb") as handle:
                    image = handle.read()
            except OSError as exc:
                print(f"warning: cannot keep {name} for labelling ({exc.strerror})", file=self.err, flush=True)
                return
        sidecar = {
            "source": str(name),
            "format": predictor.fmt,
            "head": predictor.head_description,
            "top_k": top_k(verdict.probabilities, predictor.classes, 3),
            "unknown": verdict.unknown,
            "unknown_score": verdict.unknown_score,
            "margin": round(margin(verdict.probabilities), 4),
        }
        if self.store.save(image, sidecar) is not None:
            self.saved += 1

    def _report(self, event: DriftEvent | None) -> None:
        if event is None:
            return
        print(f"warning: {event.message()}", file=self.err, flush=True)
        if self.as_json:
            print(json.dumps({"event": "drift", **asdict(event)}), file=self.out, flush=True)
