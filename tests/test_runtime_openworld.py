"""edgetl.runtime.openworld: temperature + unknown detector + confidence cut, fitted and stored together."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.errors import BundleError
from edgetl.runtime.head import NumpyHead
from edgetl.runtime.imprint import imprint
from edgetl.runtime.openworld import OpenWorld, fit_openworld, stats_path
from edgetl.runtime.retrain import RetrainConfig, train_head

D = 16


def blobs(centres, per, rng, noise=1.0):
    y = np.repeat(np.arange(len(centres)), per)
    return (centres[y] + rng.normal(0, noise, (len(y), centres.shape[1]))).astype(np.float32), y


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(9)
    centres = 3.0 + rng.normal(0, 1.2, (4, D))
    x, y = blobs(centres[:3], 200, rng)
    held, held_y = blobs(centres[:3], 150, rng)
    w, b = train_head(x, y, 3, RetrainConfig(data="-", epochs=60, seed=0, l2=0.0))
    head = NumpyHead(["a", "b", "c"], "avg", "softmax", "linear", w, b)
    return dict(rng=rng, centres=centres, x=x, y=y, held=held, held_y=held_y, head=head)


def test_fit_judge_and_flags(world):
    head = world["head"]
    ow = fit_openworld(head, world["x"], world["y"], world["held"], world["held_y"], rank=6)
    assert 0.1 < ow.temperature < 10
    j = ow.judge(head, world["held"])
    np.testing.assert_allclose(j.probabilities.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(j.probabilities.argmax(1), head.predict(world["held"]).argmax(1))
    assert j.unknown.mean() == pytest.approx(0.05, abs=0.01)
    assert j.low_confidence.mean() == pytest.approx(0.2, abs=0.01)
    maps = np.repeat(np.repeat(world["held"][:, None, None, :], 2, 1), 2, 2)  # (N, 2, 2, D) maps pool back
    np.testing.assert_allclose(ow.judge(head, maps).unknown_score, j.unknown_score, rtol=1e-5, atol=1e-5)
    novel, _ = blobs(world["centres"][3:], 200, world["rng"])
    assert ow.judge(head, novel).unknown.mean() > 0.8  # an unseen class next to the known ones


def test_save_load_and_paths(world, tmp_path):
    head = world["head"]
    ow = fit_openworld(head, world["x"], world["y"], world["held"], world["held_y"], rank=6)
    path = ow.save(stats_path(tmp_path / "heads" / "ab12cd34.npz"))
    assert path.name == "ab12cd34.openworld.npz"
    again = OpenWorld.load(path)
    assert again.temperature == pytest.approx(ow.temperature) and again.confidence_cut == pytest.approx(
        ow.confidence_cut
    )
    assert again.fits(head)
    np.testing.assert_allclose(
        again.judge(head, world["held"]).unknown_score,
        ow.judge(head, world["held"]).unknown_score,
        rtol=1e-4,
        atol=1e-4,
    )
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(BundleError, match="not readable open-world statistics"):
        OpenWorld.load(path)


def test_imprinted_class_is_known_afterwards(world):
    head = world["head"]
    ow = fit_openworld(head, world["x"], world["y"], world["held"], world["held_y"], rank=6)
    far_centre = world["centres"][3] + 6.0 * np.sign(world["rng"].normal(size=D))
    shots, _ = blobs(far_centre[None], 8, world["rng"])
    rest, _ = blobs(far_centre[None], 200, world["rng"])
    new_head = imprint(head, "d", shots, ow.detector.gaussians())
    assert not ow.fits(new_head)
    ow2 = ow.with_class("d", shots, new_head)
    assert ow2.fits(new_head) and ow2.detector.classes == ["a", "b", "c", "d"]
    j = ow2.judge(new_head, rest)
    assert (j.probabilities.argmax(1) == 3).mean() > 0.95
    assert ow.judge(head, rest).unknown.mean() > 0.95  # before: all unknown
    assert j.unknown.mean() < 0.5  # after: mostly known (the energy term still sees the new logits as unusual)
