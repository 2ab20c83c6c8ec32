"""The open-world statistics of one head, fitted together and stored in one file.

    held-out in-distribution vectors + labels (data the head did NOT train on)
        -> temperature        (calibration.fit_temperature on the head's held-out logits)
        -> UnknownDetector    (unknown.fit_unknown: class means, covariance, z-scores, threshold)
        -> confidence_cut     (the 20 % quantile of held-out calibrated confidence: a "low
                               confidence" event for the drift monitor and the uncertain store)
        -> msp_threshold      (the calibrated confidence that the same share of held-out images
                               reaches: the unknown test of a fused model, which gives no features)
    OpenWorld.judge(head, features) -> calibrated probabilities, unknown score, unknown flag, low flag

Written next to the head it belongs to (`<head>.openworld.npz`), with the head's sha256
inside, so a head swapped in without its statistics is noticed (`fits`), never silently used.
Export fits it on the workstation; update-head refits it from the device's feature cache;
adding a class by imprinting extends it (`with_class`).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.errors import BundleError
from edgetl.runtime import atomic
from edgetl.runtime.calibration import calibrated_probabilities, fit_temperature
from edgetl.runtime.head import NumpyHead
from edgetl.runtime.unknown import DEFAULT_ACCEPT, DEFAULT_RANK, UnknownDetector, fit_unknown, head_id

LOW_CONFIDENCE_QUANTILE = 0.2


@dataclass(frozen=True)
class Judgement:
    """Attributes: probabilities (N, C) at the fitted temperature, unknown scores (N,), unknown
    flags (N,), low-confidence flags (N,)."""

    probabilities: np.ndarray
    unknown_score: np.ndarray
    unknown: np.ndarray
    low_confidence: np.ndarray


@dataclass(frozen=True)
class OpenWorld:
    """Attributes: temperature of the head's logits, the unknown detector, confidence_cut, msp_threshold."""

    temperature: float
    detector: UnknownDetector
    confidence_cut: float
    msp_threshold: float = 0.0

    def fits(self, head: NumpyHead) -> bool:
        return self.detector.fits(head)

    def rebind(self, head: NumpyHead) -> OpenWorld:
        """The same statistics for `head`: a head retrained on the same data in the same way (a refit)."""
        return replace(self, detector=replace(self.detector, head_sha256=head_id(head), classes=list(head.classes)))

    def judge(self, head: NumpyHead, features: np.ndarray) -> Judgement:
        """Feature maps or pooled vectors of N images -> calibrated probabilities and open-world flags."""
        vectors = head.pool(features)
        logits = head.logits(vectors)
        probs = calibrated_probabilities(logits, self.temperature)
        score = self.detector.score(vectors, logits)
        return Judgement(probs, score, score > self.detector.threshold, probs.max(axis=1) < self.confidence_cut)

    def with_class(self, name: str, vectors: np.ndarray, head: NumpyHead) -> OpenWorld:
        """After imprinting `name` into `head` (the new head): the detector learns the class mean."""
        return replace(self, detector=self.detector.add_class(name, head.pool(vectors), head))

    def save(self, path: str | Path) -> Path:
        return atomic.write_bytes(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            temperature=np.array(self.temperature),
            confidence_cut=np.array(self.confidence_cut),
            msp_threshold=np.array(self.msp_threshold),
            **self.detector.to_arrays(),
        )
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | Path) -> OpenWorld:
        try:
            with np.load(path, allow_pickle=False) as data:
                msp = float(data["msp_threshold"]) if "msp_threshold" in data.files else 0.0
                detector = UnknownDetector.from_arrays(data)
                return cls(float(data["temperature"]), detector, float(data["confidence_cut"]), msp)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleError(
                f"{path}: not readable open-world statistics ({type(exc).__name__}: {str(exc)[:80]})"
            ) from None


def stats_path(head_path: str | Path) -> Path:
    """BUNDLE/head.npz -> BUNDLE/head.openworld.npz; device/heads/ab12cd34.npz -> ab12cd34.openworld.npz."""
    head_path = Path(head_path)
    return head_path.with_name(f"{head_path.stem}.openworld.npz")


def fit_openworld(
    head: NumpyHead,
    vectors: np.ndarray,
    labels: np.ndarray,
    heldout: np.ndarray,
    heldout_labels: np.ndarray,
    rank: int = DEFAULT_RANK,
    accept: float = DEFAULT_ACCEPT,
) -> OpenWorld:
    """Training vectors + labels (indices into head.classes) and held-out ones -> OpenWorld.

    The held-out images must not have been used to train the head, or the temperature comes out
    too low and the threshold too tight.
    """
    vectors, heldout = head.pool(vectors), head.pool(heldout)
    logits = head.logits(heldout)
    temperature = fit_temperature(logits, heldout_labels)
    detector = fit_unknown(head, vectors, labels, heldout, rank=rank, accept=accept)
    confidence = calibrated_probabilities(logits, temperature).max(axis=1)
    cut, msp = (float(np.quantile(confidence, q)) for q in (LOW_CONFIDENCE_QUANTILE, 1 - accept))
    return OpenWorld(temperature, detector, cut, msp)
