"""Per-epoch training state, so `edgetl train` resumes after a crash or kill -9.

RUN/checkpoints/state.npz is replaced atomically after every completed epoch and holds the
model's weights, the optimizer's variables (Adam moments, iteration count), the phase
('head' or 'fine_tune'), the last completed epoch, the history so far and a digest of
everything that determines the result (config minus output-only fields, the exact splits,
the base weights). A re-run with the same digest continues after the saved epoch; anything
else starts fresh. Because each epoch reseeds itself (see `edgetl.train.trainer.fit_epoch`), a
resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.runtime import atomic

STATE_FILE = "state.npz"
OUTPUT_ONLY = ("out", "tensorboard", "cache_dir")


def run_digest(config, splits: dict, weights_id: str) -> str:
    values = {k: v for k, v in config.to_dict().items() if k not in OUTPUT_ONLY}
    text = json.dumps({"config": values, "splits": splits, "weights": weights_id}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class State:
    phase: str
    epoch: int  # last completed epoch (0-based, counted across phases)
    history: list[dict]
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    stop: dict = field(default_factory=dict)  # early stopping: best loss, best epoch, epochs without improvement
    best: list[np.ndarray] = field(default_factory=list)  # the best epoch's weights so far


def save_state(folder: Path, digest: str, state: State) -> Path:
    arrays = {f"w{i}": w for i, w in enumerate(state.weights)}
    arrays.update({f"o{i}": o for i, o in enumerate(state.optimizer)})
    arrays.update({f"b{i}": b for i, b in enumerate(state.best)})
    meta = {
        "stop": state.stop,
        "n_best": len(state.best),
        "digest": digest,
        "phase": state.phase,
        "epoch": state.epoch,
        "history": state.history,
        "n_weights": len(state.weights),
        "n_optimizer": len(state.optimizer),
    }
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return atomic.write_bytes(Path(folder) / STATE_FILE, buf.getvalue())


def load_state(folder: Path, digest: str) -> State | None:
    """The saved state if it belongs to this exact run, else None."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("digest") != digest:
                return None
            weights = [data[f"w{i}"] for i in range(meta["n_weights"])]
            optimizer = [data[f"o{i}"] for i in range(meta["n_optimizer"])]
            best = [data[f"b{i}"] for i in range(meta.get("n_best", 0))]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # zip CRCs catch bit rot
        print(f"warning: ignoring unreadable checkpoint {path} ({type(exc).__name__}); starting fresh")
        return None
    return State(
        meta["phase"], int(meta["epoch"]), list(meta["history"]), weights, optimizer, meta.get("stop", {}), best
    )


def optimizer_values(optimizer) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in optimizer.variables]


def restore(model, optimizer, state: State) -> None:
    """Put saved weights and optimizer variables back (the model must be compiled)."""
    model.set_weights(state.weights)
    optimizer.build(model.trainable_variables)
    for var, value in zip(optimizer.variables, state.optimizer):
        var.assign(value)
