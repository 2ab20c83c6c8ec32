"""edgetl.runtime.drift: Bernoulli CUSUM fires on a risen event rate, stays quiet on a stationary stream."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgetl.runtime.drift import DriftConfig, DriftDetector


def feed(detector: DriftDetector, events) -> list:
    return [e for e in (detector.update(x) for x in events) if e is not None]


@pytest.mark.parametrize("rate", [0.03, 0.07, 0.15])
def test_quiet_on_long_stationary_streams(rate):
    rng = np.random.default_rng(int(rate * 100))
    detector = DriftDetector("unknown")
    n = 400_000
    alarms = feed(detector, rng.random(n) < rate)
    spread = math.sqrt(rate * (1 - rate) / 1000)
    assert abs(detector.p0 - (rate + spread)) < 3 * spread  # measured on the first 1000 images, + 1 s.e.
    assert len(alarms) <= 4, f"{len(alarms)} false alarms in {n} stationary images"  # ~1 per 1e5 expected


def test_reference_rate_error_is_what_causes_false_alarms():
    """A p0 given up front that is 40 % too low alarms again and again on a stationary stream."""
    rng = np.random.default_rng(1)
    stream = rng.random(100_000) < 0.07
    assert len(feed(DriftDetector("unknown", p0=0.05), stream)) > 20
    assert len(feed(DriftDetector("unknown"), stream)) <= 1


@pytest.mark.parametrize("shifted", [0.14, 0.25, 1.0])
def test_fires_soon_after_the_rate_rises(shifted):
    rng = np.random.default_rng(2)
    delays, early = [], 0
    for _ in range(20):
        detector = DriftDetector("unknown")
        early += len(feed(detector, rng.random(3000) < 0.07))  # ~1 false alarm per 1e5 images: rare
        after = rng.random(20_000) < shifted
        events = feed(detector, after)
        assert events, "no drift event on a shifted stream"
        delays.append(events[0].sample - 3000)
    p0 = detector.p0
    p1 = 2 * p0
    step = shifted * math.log(p1 / p0) + (1 - shifted) * math.log((1 - p1) / (1 - p0))
    assert early <= 2
    assert np.median(delays) <= 2.0 * 8.0 / step + 5  # Wald: ~threshold / mean step
    first = events[0]
    assert first.name == "unknown" and first.recent_rate > first.reference_rate
    assert "unknown rate" in first.message() and f"{first.reference_rate:.1%}" in first.message()


def test_all_events_fire_after_threshold_over_log_ratio():
    detector = DriftDetector("unknown", p0=0.05)
    events = feed(detector, [True] * 30)
    assert events[0].sample == math.floor(8.0 / math.log(2.0)) + 1  # 12 events: 12 * log 2 > 8
    assert events[0].recent_images == 12 and events[0].recent_rate == 1.0


def test_one_sided_and_restart():
    rng = np.random.default_rng(3)
    detector = DriftDetector("unknown", DriftConfig(reference=500))
    feed(detector, rng.random(500) < 0.2)
    assert detector.p0 == pytest.approx(0.2 + math.sqrt(0.2 * 0.8 / 500), abs=0.05)
    assert feed(detector, rng.random(50_000) < 0.02) == []  # a fall is not drift
    detector.restart()
    assert detector.p0 is None and feed(detector, [True] * 400) == []  # re-measuring: no events
    assert feed(DriftDetector("x", DriftConfig(reference=10)), [False] * 10 + [True] * 3) == []  # floor on p0


def test_config_checked():
    for bad in (dict(reference=0), dict(margin=-1), dict(ratio=1.0), dict(threshold=0), dict(min_rate=0.6)):
        with pytest.raises(ValueError, match="drift needs"):
            DriftConfig(**bad)
