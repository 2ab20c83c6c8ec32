"""What `edgetl run` prints for one image or frame: a line for people, or one JSON object per line."""

from __future__ import annotations

import json

import numpy as np


def top_k(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[: max(1, k)]
    return [{"label": classes[i], "score": round(float(probs[i]), 6)} for i in order]


def format_result(
    key: str, name, probs: np.ndarray, classes: list[str], k: int, latency_ms: float, as_json: bool
) -> str:
    best = top_k(probs, classes, k)
    if as_json:
        return json.dumps(
            {
                key: name,
                "label": best[0]["label"],
                "score": best[0]["score"],
                "top_k": best,
                "latency_ms": round(latency_ms, 3),
            }
        )
    line = f"{name}  {best[0]['label']}  {best[0]['score']:.3f}  ({latency_ms:.1f} ms)"
    if len(best) > 1:
        line += "  [" + ", ".join(f"{b['label']} {b['score']:.3f}" for b in best[1:]) + "]"
    return line
