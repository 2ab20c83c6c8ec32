"""Drift on the device: a CUSUM (Page's test) on the rate of a per-image event.

    per image: x = 1 if the event happened (image flagged unknown; confidence below a cut), else 0
    first `reference` images (or a rate given up front): p0 = their event rate + `margin` standard errors
    then:  S = max(0, S + x * log(p1 / p0) + (1 - x) * log((1 - p1) / (1 - p0))),  p1 = ratio * p0
           S > threshold -> DriftEvent, S = 0

The Bernoulli CUSUM (Reynolds & Stoumbos 1999) is the sequential likelihood-ratio test of
"the rate went from p0 to p1"; it needs no assumption about score distributions because any
score becomes a 0/1 event. Memory is constant: S, two counters and a running rate.

Why a reference window: the rate an export-time threshold gives on held-out training images
(5 % unknown by construction) is not the rate on the camera. Measured on flowers (250
held-out images), the val unknown rate was 6.5-10.7 % depending on the split, and a CUSUM
against the nominal 5 % raised 13-364 false alarms per 1e5 stationary images. Taking p0 from
the first `reference` images after start (or after the head changed) removes that error; the
one-standard-error margin covers the reference window's own sampling error (simulated: 2.4-2.9
false alarms per 1e5 images without it, 0.5-1.0 with it, for rates of 3-15 %). Pass `p0` only
when it was measured on many images of the deployment's own stream. A doubling of the rate is
found after a median of ~900 / 250 / 125 images at 3 / 7 / 15 %, a stream of unknown images
after ~12. On real flowers streams (unknown rate 6.5-10.7 % on val): 0.1 false alarms per 1e5
stationary images; cats/dogs images mixed in at 100 / 25 / 10 % found after 12 / 53 / 184
images, blurred images after 59, darkened (x0.5) after ~2400 (the rate rises only 1.4x).
Consecutive camera frames are not independent: feed about one frame a second, or false alarms
come sooner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DriftConfig:
    """Attributes: reference (images whose event rate becomes p0), margin (standard errors of that
    rate added to it), ratio (p1 = ratio * p0, the rise to detect), threshold of the CUSUM,
    min_rate (floor of p0: a reference window with no events would otherwise alarm on the first one)."""

    reference: int = 1000
    margin: float = 1.0
    ratio: float = 2.0
    threshold: float = 8.0
    min_rate: float = 0.005

    def __post_init__(self):
        if (
            self.reference < 1
            or self.margin < 0
            or self.ratio <= 1.0
            or self.threshold <= 0
            or not 0 < self.min_rate < 0.5
        ):
            raise ValueError(
                f"drift needs reference >= 1, margin >= 0, ratio > 1, threshold > 0, 0 < min_rate < 0.5; got {self}"
            )


@dataclass(frozen=True)
class DriftEvent:
    """Attributes: stream name, images seen when it fired, the reference rate p0, the event
    rate since the CUSUM last stood at zero, and how many images that was."""

    name: str
    sample: int
    reference_rate: float
    recent_rate: float
    recent_images: int

    def message(self) -> str:
        return (
            f"drift: {self.name} rate {self.recent_rate:.1%} over the last {self.recent_images} images "
            f"(reference {self.reference_rate:.1%}), at image {self.sample}"
        )


class DriftDetector:
    """`update(event: bool)` per image; returns a DriftEvent when the rate has risen, else None."""

    def __init__(self, name: str, config: DriftConfig = DriftConfig(), p0: float | None = None):
        self.name, self.config = name, config
        self.seen = 0
        self.statistic = 0.0
        self._ref_n = self._ref_events = 0
        self._run_n = self._run_events = 0
        self.p0: float | None = None
        if p0 is not None:
            self._set_rate(p0)

    def _set_rate(self, p0: float) -> None:
        cfg = self.config
        self.p0 = min(max(float(p0), cfg.min_rate), 0.5 / cfg.ratio)
        p1 = self.p0 * cfg.ratio
        self._up = math.log(p1 / self.p0)
        self._down = math.log((1.0 - p1) / (1.0 - self.p0))

    def restart(self) -> None:
        """Measure a new reference rate (after the head or the threshold changed)."""
        self.p0 = None
        self.statistic = 0.0
        self._ref_n = self._ref_events = self._run_n = self._run_events = 0

    def update(self, event: bool) -> DriftEvent | None:
        event = bool(event)
        self.seen += 1
        if self.p0 is None:  # still measuring the reference rate
            self._ref_n += 1
            self._ref_events += event
            if self._ref_n >= self.config.reference:
                rate = self._ref_events / self._ref_n
                spread = math.sqrt(max(rate, self.config.min_rate) * (1.0 - rate) / self._ref_n)
                self._set_rate(rate + self.config.margin * spread)
            return None
        self.statistic = max(0.0, self.statistic + (self._up if event else self._down))
        if self.statistic == 0.0:
            self._run_n = self._run_events = 0
            return None
        self._run_n += 1
        self._run_events += event
        if self.statistic <= self.config.threshold:
            return None
        fired = DriftEvent(self.name, self.seen, self.p0, self._run_events / self._run_n, self._run_n)
        self.statistic = 0.0
        self._run_n = self._run_events = 0
        return fired
