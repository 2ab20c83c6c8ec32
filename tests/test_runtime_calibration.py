"""edgetl.runtime.calibration: temperature fit, ECE and reliability bins on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.runtime.calibration import calibrated_probabilities, class_logits, ece, fit_temperature, nll, reliability


def sampled(true_logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels drawn from softmax(true_logits): the true logits are calibrated by construction."""
    probs = calibrated_probabilities(true_logits)
    cumulative = probs.cumsum(axis=1)
    return (rng.random((len(probs), 1)) > cumulative).sum(axis=1).clip(0, probs.shape[1] - 1)


@pytest.mark.parametrize("true_t", [0.5, 2.5, 4.0])
def test_recovers_a_known_temperature_softmax(true_t):
    rng = np.random.default_rng(0)
    calibrated = rng.normal(0, 2.0, (20000, 5))
    labels = sampled(calibrated, rng)
    logits = calibrated * true_t  # over-confident when true_t > 1
    t = fit_temperature(logits, labels)
    assert abs(t - true_t) / true_t < 0.05
    before = ece(calibrated_probabilities(logits), labels)
    after = ece(calibrated_probabilities(logits, t), labels)
    assert after < 0.015
    if true_t != 1.0:
        assert after < before
    assert nll(logits, labels, t) <= nll(logits, labels, 1.0)


def test_recovers_a_known_temperature_sigmoid_single_logit():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2.5, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-z))).astype(int)
    t = fit_temperature((3.0 * z)[:, None], labels)  # (N, 1): the one logit of a sigmoid head
    assert abs(t - 3.0) < 0.15
    probs = calibrated_probabilities((3.0 * z)[:, None], t)
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + np.exp(-3.0 * z / t)), rtol=1e-9)
    assert ece(probs, labels) < 0.015


def test_class_logits_of_a_sigmoid_reproduce_it():
    z = np.array([-3.0, 0.0, 2.0])
    p = calibrated_probabilities(z)
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(class_logits(z[:, None]), [[0, -3], [0, 0], [0, 2]])
    multi = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(class_logits(multi), multi)  # softmax logits pass through


def test_temperature_keeps_the_predicted_class():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (500, 4))
    for t in (0.3, 1.0, 7.0):
        np.testing.assert_array_equal(calibrated_probabilities(logits, t).argmax(1), logits.argmax(1))


def test_ece_and_bins_on_hand_made_cases():
    probs = np.array([[0.9, 0.1]] * 10 + [[0.3, 0.7]] * 10)
    labels = np.array([0] * 9 + [1] + [1] * 7 + [0] * 3)  # 90 % right at 0.9, 70 % right at 0.7
    assert ece(probs, labels) == pytest.approx(0.0)
    rel = reliability(probs, labels, bins=10)
    rows = rel.rows()
    assert [(r["count"], round(r["confidence"], 6), round(r["accuracy"], 6)) for r in rows] == [
        (10, 0.7, 0.7),
        (10, 0.9, 0.9),
    ]
    assert rel.counts.sum() == 20 and np.isnan(rel.accuracy[0])
    wrong = np.array([1] * 10 + [0] * 10)  # everything wrong
    assert ece(probs, wrong) == pytest.approx((0.9 * 10 + 0.7 * 10) / 20)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="0..1"):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))
