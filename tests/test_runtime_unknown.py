"""edgetl.runtime.unknown: fused Mahalanobis + energy score on Gaussian blobs, softmax and sigmoid heads."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgetl.runtime.head import NumpyHead
from edgetl.runtime.retrain import RetrainConfig, train_head
from edgetl.runtime.unknown import UnknownDetector, fit_unknown, head_id

D = 24


def blobs(centres: np.ndarray, per: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(len(centres)), per)
    return (centres[y] + rng.normal(0, 1.0, (len(y), centres.shape[1]))).astype(np.float32), y


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    centres = 4.0 + rng.normal(0, 2.5, (4, D))  # classes 0-2 known, class 3 never seen in training
    x, y = blobs(centres[:3], 300, rng)
    held, held_y = blobs(centres[:3], 300, rng)
    test, test_y = blobs(centres[:3], 400, rng)
    novel, _ = blobs(centres[3:], 400, rng)
    weights, biases = train_head(x, y, 3, RetrainConfig(data="-", epochs=40, seed=0))
    head = NumpyHead(["a", "b", "c"], "none", "softmax", "linear", weights, biases)
    return dict(rng=rng, centres=centres, x=x, y=y, held=held, test=test, test_y=test_y, novel=novel, head=head)


def accepted(det: UnknownDetector, head: NumpyHead, x: np.ndarray) -> float:
    return float(np.mean(~det.is_unknown(x, head.logits(x))))


def test_threshold_accepts_95_percent_of_held_out_and_fresh_in_distribution(world):
    det = fit_unknown(world["head"], world["x"], world["y"], world["held"], rank=8)
    assert accepted(det, world["head"], world["held"]) == pytest.approx(0.95, abs=0.005)
    assert 0.92 <= accepted(det, world["head"], world["test"]) <= 0.98  # fresh draws, same distribution
    assert det.basis.shape == (D, 8) and det.means.shape == (3, D)


def test_far_and_novel_inputs_are_rejected(world):
    head = world["head"]
    det = fit_unknown(head, world["x"], world["y"], world["held"], rank=8)
    assert accepted(det, head, world["novel"]) < 0.05  # an unseen class (its own blob)
    far = world["rng"].normal(0, 1, (50, D)) * 4.0  # another direction than every class
    assert det.is_unknown(far, head.logits(far)).all()
    confident = far + 40.0 * head.weights[0][:, 0]  # far away but "very much class a" to the head
    assert (head.predict(confident).max(1) > 0.999).all() and det.is_unknown(confident, head.logits(confident)).all()
    scores_in = det.score(world["test"], head.logits(world["test"]))
    scores_novel = det.score(world["novel"], head.logits(world["novel"]))
    assert np.median(scores_novel) > np.quantile(scores_in, 0.99)


def test_feature_term_alone_still_separates(world):
    det = fit_unknown(world["head"], world["x"], world["y"], world["held"], rank=8, energy_weight=0.0)
    assert accepted(det, world["head"], world["novel"]) < 0.05
    assert det.weights.tolist() == [1.0, 0.0]


def test_two_class_sigmoid_head(world):
    rng = world["rng"]
    x, y = blobs(world["centres"][:2], 300, rng)
    held, _ = blobs(world["centres"][:2], 300, rng)
    w = (world["centres"][1] - world["centres"][0])[:, None].astype(np.float32) * 0.1  # boundary at the midpoint
    b = -np.array([(world["centres"][1] ** 2 - world["centres"][0] ** 2).sum() * 0.05], np.float32)
    head = NumpyHead(["a", "b"], "none", "sigmoid", "linear", [w], [b])
    assert (head.predict(x).argmax(1) == y).mean() > 0.98
    det = fit_unknown(head, x, y, held, rank=8)
    assert accepted(det, head, held) == pytest.approx(0.95, abs=0.005)
    novel = world["novel"]
    assert accepted(det, head, novel) < 0.05


def test_save_load_round_trip_without_pickle(world, tmp_path):
    head = world["head"]
    det = fit_unknown(head, world["x"], world["y"], world["held"], rank=8, temperature=1.7)
    path = det.save(tmp_path / "unknown.npz")
    again = UnknownDetector.load(path)
    t = world["test"]
    np.testing.assert_allclose(again.score(t, head.logits(t)), det.score(t, head.logits(t)), rtol=1e-4, atol=1e-4)
    assert again.classes == ["a", "b", "c"] and again.temperature == 1.7 and again.fits(head)
    buf = io.BytesIO()  # the arrays can ride along in another npz (e.g. head.npz) under a prefix
    np.savez(buf, W0=np.zeros(2), **det.to_arrays("u_"))
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as data:
        assert UnknownDetector.from_arrays(data, "u_").threshold == pytest.approx(det.threshold)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(Exception, match="not a readable edgetl unknown detector"):
        UnknownDetector.load(tmp_path / "bad.npz")


def test_head_change_detected_and_add_class(world):
    head = world["head"]
    det = fit_unknown(head, world["x"], world["y"], world["held"], rank=8)
    changed = NumpyHead(
        head.classes, head.pooling, head.output, head.activation, [head.weights[0] * 1.01], list(head.biases)
    )
    assert det.fits(head) and not det.fits(changed) and head_id(head) != head_id(changed)
    shots = world["novel"][:5]
    more = det.add_class("d", shots)
    assert more.classes == ["a", "b", "c", "d"] and more.means.shape == (4, D)
    # with the energy term off, the new class's own images are no longer unknown
    feature_only = fit_unknown(head, world["x"], world["y"], world["held"], rank=8, energy_weight=0.0)
    plus = feature_only.add_class("d", shots)
    novel = world["novel"][5:]
    assert accepted(feature_only, head, novel) < 0.05 and accepted(plus, head, novel) > 0.85
    with pytest.raises(ValueError, match="already known"):
        more.add_class("a", shots)


def test_head_identity_is_its_content_not_numpys_npz_bytes(world, monkeypatch):
    """A Pi keeps NumPy 1.24 (apt's Picamera2), the workstation has NumPy 2: both serialise the same
    head.npz arrays to different bytes. The statistics must still recognise the exported head there."""
    import dataclasses
    import hashlib

    head = world["head"]
    det = fit_unknown(head, world["x"], world["y"], world["held"], rank=8)
    legacy = hashlib.sha256(head.to_bytes()).hexdigest()
    monkeypatch.setattr(NumpyHead, "to_bytes", lambda self: b"another NumPy's npz bytes")  # as on the device
    assert det.fits(head) and head_id(head) == det.head_sha256
    copy = NumpyHead(
        list(head.classes),
        "none",
        "softmax",
        "linear",
        [w.astype(np.float64) for w in head.weights],
        [b.copy() for b in head.biases],
    )
    assert head_id(copy) == head_id(head)  # the same numbers in another dtype or array are the same head
    renamed = NumpyHead(["a", "b", "x"], "none", "softmax", "linear", head.weights, head.biases)
    assert head_id(renamed) != head_id(head)
    monkeypatch.undo()
    old = dataclasses.replace(det, head_sha256=legacy)  # bundles exported before the change
    assert old.fits(head)


def test_bad_input_refused(world):
    head = world["head"]
    with pytest.raises(ValueError, match="every class"):
        fit_unknown(head, world["x"][world["y"] < 2], world["y"][world["y"] < 2], world["held"])
    with pytest.raises(ValueError, match="20 held-out"):
        fit_unknown(head, world["x"], world["y"], world["held"][:5])
    with pytest.raises(ValueError, match="accept"):
        fit_unknown(head, world["x"], world["y"], world["held"], accept=1.0)


def test_mahalanobis_matches_the_explicit_covariance(world):
    det = fit_unknown(world["head"], world["x"], world["y"], world["held"], rank=5)
    v = det.basis
    cov = v @ np.diag(1 / det.inv_sd**2) @ v.T + det.residual_var * (np.eye(D) - v @ v.T)
    prec = np.linalg.inv(cov)
    x = np.concatenate([world["test"][:50], world["novel"][:50]]).astype(np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    explicit = np.min([np.einsum("ij,jk,ik->i", u - m, prec, u - m) for m in det.means], axis=0)
    np.testing.assert_allclose(det.mahalanobis(x), explicit, rtol=2e-3, atol=1e-2 * explicit.mean())
