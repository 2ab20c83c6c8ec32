"""edgetl.runtime.imprint: a class added from a few vectors, old predictions kept, sigmoid -> softmax."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.runtime.head import NumpyHead
from edgetl.runtime.imprint import ClassGaussians, as_softmax, imprint
from edgetl.runtime.retrain import RetrainConfig, train_head
from edgetl.runtime.unknown import fit_unknown

D = 24


def blobs(centres, per, rng):
    y = np.repeat(np.arange(len(centres)), per)
    return (centres[y] + rng.normal(0, 1.0, (len(y), centres.shape[1]))).astype(np.float32), y


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(5)
    centres = 4.0 + rng.normal(0, 2.0, (4, D))
    x, y = blobs(centres[:3], 200, rng)
    held, _ = blobs(centres[:3], 100, rng)
    test, test_y = blobs(centres[:3], 300, rng)
    novel, _ = blobs(centres[3:], 300, rng)
    w, b = train_head(x, y, 3, RetrainConfig(data="-", epochs=40, seed=0))
    head = NumpyHead(["a", "b", "c"], "none", "softmax", "linear", w, b)
    detector = fit_unknown(head, x, y, held, rank=8)
    return dict(
        rng=rng,
        centres=centres,
        x=x,
        y=y,
        held=held,
        test=test,
        test_y=test_y,
        novel=novel,
        head=head,
        detector=detector,
    )


@pytest.mark.parametrize("shots", [5, 20])
def test_new_class_found_and_old_predictions_kept(world, shots):
    head, novel = world["head"], world["novel"]
    new = imprint(head, "d", novel[:shots], world["detector"].gaussians())
    assert new.classes == ["a", "b", "c", "d"] and new.output == "softmax"
    np.testing.assert_array_equal(new.weights[0][:, :3], head.weights[0])  # old outputs untouched
    rest = novel[shots:]
    assert (new.predict(rest).argmax(1) == 3).mean() >= 0.95
    before = head.predict(world["test"]).argmax(1)
    after = new.predict(world["test"]).argmax(1)
    assert (after == before).mean() >= 0.99
    assert (after == world["test_y"]).mean() >= (before == world["test_y"]).mean() - 0.01


def test_budget_trades_new_class_recall_for_old_accuracy(world):
    head = world["head"]
    rng = np.random.default_rng(0)
    # a hard new class: 30 % of the way from one old class to another
    centre = 0.7 * world["centres"][0] + 0.3 * world["centres"][1]
    hard = (centre + rng.normal(0, 1.0, (300, D))).astype(np.float32)

    def found_and_moved(**settings):
        new = imprint(head, "d", hard[:5], world["detector"].gaussians(), **settings)
        predicted_hard, predicted_old = new.predict(hard[5:]).argmax(1), new.predict(world["test"]).argmax(1)
        return (predicted_hard == 3).mean(), (predicted_old == 3).mean()

    recalls, moved = zip(*[found_and_moved(budget=budget) for budget in (0.001, 0.01, 0.1)])
    assert recalls[0] < recalls[1] < recalls[2] and moved[0] <= moved[1] <= moved[2]
    assert moved[0] < 0.03
    # the default norm (half the old classes') trades better than the full norm, as on the photo sets
    full_norm = found_and_moved(budget=0.01, scale=1.0)
    assert recalls[1] > full_norm[0] + 0.2 and moved[1] <= full_norm[1]


def test_sigmoid_head_becomes_an_equal_softmax_then_three_classes(world):
    rng = world["rng"]
    x, y = blobs(world["centres"][:2], 200, rng)
    held, _ = blobs(world["centres"][:2], 100, rng)
    c0, c1 = world["centres"][0], world["centres"][1]
    head = NumpyHead(
        ["a", "b"],
        "none",
        "sigmoid",
        "linear",
        [((c1 - c0) * 0.1)[:, None].astype(np.float32)],
        [np.array([-((c1**2).sum() - (c0**2).sum()) * 0.05], np.float32)],
    )
    soft = as_softmax(head)
    assert soft.weights[0].shape == (D, 2)
    np.testing.assert_allclose(soft.predict(x), head.predict(x), atol=1e-6)  # logits [0, z] == sigmoid(z)
    np.testing.assert_allclose(soft.logits(x)[:, 0], 0.0)
    detector = fit_unknown(head, x, y, held, rank=8)
    new = imprint(head, "d", world["novel"][:5], detector.gaussians())
    assert new.classes == ["a", "b", "d"]
    assert (new.predict(world["novel"][5:]).argmax(1) == 2).mean() >= 0.95
    assert (new.predict(x).argmax(1) == head.predict(x).argmax(1)).mean() >= 0.99


def test_gaussian_quadratic_form():
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    g = ClassGaussians(np.zeros((1, 6)), basis, np.array([4.0, 2.0]), 0.5)
    cov = basis @ np.diag([4.0, 2.0]) @ basis.T + 0.5 * (np.eye(6) - basis @ basis.T)
    v = rng.normal(size=(3, 6))
    np.testing.assert_allclose(g.quadratic(v), np.einsum("ij,jk,ik->i", v, cov, v))
    for ridge in (0.0, 30.0):  # the imprinted direction: the ridged covariance's inverse applied to v
        np.testing.assert_allclose((cov + ridge * 0.5 * np.eye(6)) @ g.solve(v[0], ridge), v[0], atol=1e-12)


def test_refusals(world):
    head, g = world["head"], world["detector"].gaussians()
    with pytest.raises(ValueError, match="already has"):
        imprint(head, "a", world["novel"][:5], g)
    with pytest.raises(ValueError, match="feature vectors"):
        imprint(head, "d", world["novel"][:5, :10], g)
    mlp = NumpyHead(
        ["a", "b", "c"], "none", "softmax", "relu", [np.zeros((D, 4)), np.zeros((4, 3))], [np.zeros(4), np.zeros(3)]
    )
    with pytest.raises(ValueError, match="single-layer"):
        imprint(mlp, "d", world["novel"][:5], g)
    with pytest.raises(ValueError, match="refit"):
        imprint(head, "d", world["novel"][:5], ClassGaussians(g.means[:2], g.basis, g.variances, g.residual_var))
