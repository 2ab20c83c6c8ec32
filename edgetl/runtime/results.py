"""What `edgetl run` prints for one image or frame: a line for people, or one JSON object per line.

    {"path": "a.jpg", "label": "roses", "score": 0.93, "top_k": [...], "latency_ms": 1.2,
     "unknown": false, "unknown_score": -0.4}
    {"path": "b.jpg", "label": null, "unknown": true, "nearest": "tulips", "score": 0.41, ...}

"unknown" and "unknown_score" are there when the bundle has open-world statistics (and
--unknown is on); scores are then calibrated probabilities. An unknown image has no label:
"nearest" is the class it is closest to, "score" that class's probability.
"""

from __future__ import annotations

import json

import numpy as np

from edgetl.runtime.predictor import Verdict


def top_k(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[: max(1, k)]
    return [{"label": classes[i], "score": round(float(probs[i]), 6)} for i in order]


def format_result(
    key: str, name, verdict: Verdict, classes: list[str], k: int, latency_ms: float, as_json: bool
) -> str:
    best = top_k(verdict.probabilities, classes, k)
    if as_json:
        row = {
            key: name,
            "label": best[0]["label"],
            "score": best[0]["score"],
            "top_k": best,
            "latency_ms": round(latency_ms, 3),
        }
        if verdict.unknown is not None:
            row.update(unknown=bool(verdict.unknown), unknown_score=round(float(verdict.unknown_score), 4))
            if verdict.unknown:
                row.update(label=None, nearest=best[0]["label"])
        return json.dumps(row)
    if verdict.unknown:
        line = f"{name}  unknown (nearest: {best[0]['label']} {best[0]['score']:.3f})  ({latency_ms:.1f} ms)"
    else:
        line = f"{name}  {best[0]['label']}  {best[0]['score']:.3f}  ({latency_ms:.1f} ms)"
    if len(best) > 1:
        line += "  [" + ", ".join(f"{b['label']} {b['score']:.3f}" for b in best[1:]) + "]"
    return line


def margin(probs: np.ndarray) -> float:
    """Top-1 minus top-2 probability: small when the model hesitates between two classes."""
    if len(probs) < 2:
        return 1.0
    second, first = np.partition(probs, -2)[-2:]
    return float(first - second)
