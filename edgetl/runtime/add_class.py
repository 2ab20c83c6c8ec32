"""`edgetl update-head BUNDLE --add-class NAME DIR`: a new class from a few images, with no training.

    DIR's images --base model (feature store, as update-head)--> pooled features (the shots)
    active head + its open-world statistics (class means, shared covariance) --imprint--> head + NAME
    statistics --with_class--> the detector knows NAME too
    check: leave-one-out accuracy of NAME (imprinted from the other shots) and the old classes'
           accuracy on the device's cached images before and after -> swap in (atomic), or refuse

Weight imprinting (edgetl.runtime.imprint): the shots' mean, relative to the old class means,
becomes the new class's weights, and its bias is set so that the new class takes at most a
small share (`budget`) of the old classes' images under the shared-covariance model. It needs
the head's open-world statistics (export fits them; update-head refits them). A two-class
sigmoid head becomes a three-class softmax head. rollback-head undoes it like any head change.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgetl.errors import DataError, GateError
from edgetl.runtime import headstore
from edgetl.runtime.bundle import load_bundle
from edgetl.runtime.folders import scan_class_folders
from edgetl.runtime.imprint import DEFAULT_BUDGET, imprint
from edgetl.runtime.predictor import choose_base_format
from edgetl.runtime.retrain import RetrainConfig, UpdateResult, _features, accuracy

MAX_OLD_LOSS_PP = 2.0  # the old classes may lose this much accuracy on the cached images, else refuse


@dataclass(frozen=True)
class AddClass:
    """Attributes: name of the new class, folder of its images, budget (imprint.DEFAULT_BUDGET)."""

    name: str
    folder: str
    budget: float = DEFAULT_BUDGET


def add_class(bundle_dir, request: AddClass, cfg: RetrainConfig, err: TextIO = sys.stderr) -> UpdateResult:
    bundle = load_bundle(bundle_dir)
    folder = Path(request.folder)
    images = scan_class_folders(folder.parent, allow_empty=True).get(folder.name) if folder.is_dir() else None
    if not images:
        raise DataError(f"--add-class {request.name}: {folder} holds no images; give a folder of images of the class")
    with headstore.exclusive(bundle):
        active = headstore.active_head(bundle)
        if request.name in active.head.classes:
            raise DataError(f"the head already has a class {request.name!r}; use --data to retrain it instead")
        if active.openworld is None:
            raise DataError(
                "--add-class needs the head's open-world statistics (re-export the bundle with "
                "edgetl >= 0.2, or run update-head --data once)"
            )
        base_fmt = choose_base_format(bundle, None, active.record.get("base") if active.record else None)
        store, shots_now, new, failed = _features(
            bundle, base_fmt, active.head, {request.name: images}, cfg.threads, err
        )
        if len(shots_now) < 2:
            raise DataError(f"--add-class {request.name} needs at least 2 readable images; found {len(shots_now)}")
        shots = store.get(sorted(shots_now))
        world = active.openworld
        head = imprint(active.head, request.name, shots, world.detector.gaussians(), request.budget)
        check = _check(active.head, head, world, shots, request, store)
        if check["old_loss_pp"] > MAX_OLD_LOSS_PP and not cfg.force:
            raise GateError(
                f"imprinting {request.name} costs the old classes {check['old_loss_pp']:.1f} pp on "
                f"{check['old_images']} cached images (> {MAX_OLD_LOSS_PP}); kept the current head "
                "(--force to swap anyway, or lower --imprint-budget)"
            )
        extra = {"imprinted": request.name, "shots": len(shots), **check}
        record = headstore.swap_in(bundle, head, None, base_fmt, extra, world.with_class(request.name, shots, head))
        headstore.prune(bundle)
    return UpdateResult(
        True,
        check["old_before"],
        check["old_after"],
        len(shots),
        0,
        new,
        len(shots) - new,
        failed,
        list(head.classes),
        record,
    )


def _check(old, new, world, shots: np.ndarray, request: AddClass, store) -> dict[str, Any]:
    """Leave-one-out accuracy of the new class; old classes' accuracy on the device's cached images."""
    gaussians = world.detector.gaussians()
    hits = 0
    for i in range(len(shots)):
        rest = np.delete(shots, i, axis=0)
        trial = imprint(old, request.name, rest, gaussians, request.budget)
        hits += int(trial.classes[int(trial.predict(shots[i : i + 1]).argmax())] == request.name)
    keys = [k for k, label in store.labels.items() if label in old.classes]
    x = store.get(keys) if keys else np.zeros((0, shots.shape[1]), np.float32)
    names = [store.labels[k] for k in keys]
    before = accuracy(old, x, names) if keys else None
    after = accuracy(new, x, names) if keys else None
    loss = round(100 * (before - after), 3) if keys else 0.0
    return {
        "new_class_loo_accuracy": round(hits / len(shots), 4),
        "old_images": len(keys),
        "old_before": before,
        "old_after": after,
        "old_loss_pp": loss,
    }
