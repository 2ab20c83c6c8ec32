"""head_solver logistic: scikit-learn's logistic regression, written into the Keras head, exports unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_dataset


@pytest.mark.parametrize("num_classes", [2, 3])
def test_logistic_head_predicts_as_sklearn_and_survives_folding_into_the_exported_head(num_classes, tiny_config):
    """The Keras head fitted by fit_logistic gives scikit-learn's probabilities (StandardScaler +
    LogisticRegression at the same C), before and after the standardization is folded into its Dense
    layer (the exported form) and as the device's numpy head."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from edgetl.models.classifier import build_head, fold_standardization, head_to_numpy
    from edgetl.train.head_fit import fit_logistic, head_data, standardization

    rng = np.random.default_rng(num_classes)
    y = np.repeat(np.arange(num_classes), 40)
    x = (rng.normal(size=(len(y), 6)) * [1, 5, 0.1, 2, 1, 3] + y[:, None] * [1, 0, 0.05, 0, -1, 0]).astype(np.float32)
    x += 10  # an offset the standardization has to remove
    config = tiny_config("unused", head_solver="logistic", dropout=0.3, l2_c=0.05)
    data = head_data(x, y, num_classes, "none")
    stats = standardization(x)
    model = build_head((6,), num_classes, config, stats)
    fit_logistic(model, data, config.l2_c, len(x))

    reference = LogisticRegression(C=0.05, max_iter=3000, tol=1e-8)
    scaler = StandardScaler().fit(x.astype(np.float64))
    reference.fit(scaler.transform(x.astype(np.float64)), y)
    expected = reference.predict_proba(scaler.transform(x.astype(np.float64)))
    probs = model.predict(x, verbose=0)
    if num_classes == 2:  # one sigmoid unit: P(class 1)
        assert probs.shape == (len(x), 1)
        probs = np.concatenate([1 - probs, probs], axis=1)
    np.testing.assert_allclose(probs, expected, atol=2e-3)
    assert np.mean(probs.argmax(1) == expected.argmax(1)) == 1.0

    plain = build_head((6,), num_classes, config)  # the exported head: no standardization layer
    plain.set_weights(fold_standardization(model, stats))
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    classes = [f"c{k}" for k in range(num_classes)]
    device = head_to_numpy(plain, classes, "avg", "relu").predict(x)
    np.testing.assert_allclose(device, probs, atol=1e-5)


def test_logistic_c_is_the_keras_solvers_c_whatever_the_views_per_image(tiny_config):
    """C penalises |W|^2 / (2 C N) with N images: three identical views of each image fit the same head."""
    from edgetl.models.classifier import build_head
    from edgetl.train.head_fit import fit_logistic, head_data

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    x = (rng.normal(size=(60, 5)) + y[:, None]).astype(np.float32)
    config = tiny_config("unused", head_solver="logistic", dropout=0.0)
    one, three = build_head((5,), 3, config), build_head((5,), 3, config)
    fit_logistic(one, head_data(x, y, 3, "none"), 0.01, 60)
    fit_logistic(three, head_data(np.repeat(x, 3, axis=0), np.repeat(y, 3), 3, "none"), 0.01, 60)
    for a, b in zip(one.get_weights(), three.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4)
    loose = build_head((5,), 3, config)
    fit_logistic(loose, head_data(x, y, 3, "none"), 1.0, 60)
    assert np.abs(loose.get_weights()[0]).sum() > 2 * np.abs(one.get_weights()[0]).sum()  # larger C: less L2


def test_logistic_head_rejects_hidden_layers(tiny_config):
    from edgetl.errors import ConfigError

    with pytest.raises(ConfigError, match="logistic fits a linear head"):
        tiny_config("unused", head_solver="logistic", dense_units=(16,))


def test_auto_solver_is_logistic_for_a_linear_penalized_head_and_is_recorded():
    """The no-config default and configs/mobilenet_v2.yaml fit a linear head by logistic regression;
    hidden layers or no L2 (the tutorial recipe) take Keras' solver; config.yaml records the choice."""
    import yaml

    from edgetl.train.config import build_config, dump_config, load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    assert build_config({}).head_solver == "logistic"
    assert load_config(configs / "mobilenet_v2.yaml").head_solver == "logistic"
    assert load_config(configs / "tutorial_mobilenet_v2.yaml").head_solver == "keras"
    assert build_config({"dense_units": [16]}).head_solver == "keras"
    assert build_config({"l2_c": 0}).head_solver == "keras"
    assert yaml.safe_load(dump_config(build_config({})))["head_solver"] == "logistic"


def test_train_with_the_logistic_solver_writes_a_normal_run(tmp_path, tiny_config):
    """One history row per phase, the solver in config.yaml, and model.keras scoring as metrics.json says."""
    import yaml

    from edgetl.train.trainer import train

    data = make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=12, size=32)
    out = tmp_path / "run"
    config = tiny_config(data, out=str(out), head_solver="logistic", l2_c=1.0, holdout=0.25)
    metrics = train(config, echo=lambda _: None)
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in history[1:]] == ["head", "refit"]
    assert yaml.safe_load((out / "config.yaml").read_text())["head_solver"] == "logistic"
    assert metrics["val_accuracy"] == 1.0  # colours: a linear head separates them
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["val_accuracy"] == metrics["val_accuracy"] and saved["head"]["refit_epochs"] == 1
