"""TrainConfig validation and the generated `edgetl train` flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.errors import ConfigError
from edgetl.train.config import FIELDS, build_config, dump_config, load_config


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epoch": 3}, "unknown config key 'epoch'"),
        ({"epochs": "ten"}, "must be an integer"),
        ({"epochs": 2.5}, "must be an integer"),
        ({"augment": "maybe"}, "true or false"),
        ({"learning_rate": [1]}, "must be a number"),
        ({"dense_units": "12,x"}, "list of integers"),
        ({"dropout": 1.5}, "between"),
        ({"input_size": 8}, "between"),
        ({"pooling": "mean"}, "must be one of"),
        ({"fill_mode": "wrap"}, "must be one of"),
        ({"dense_units": [0]}, "positive"),
    ],
)
def test_invalid_values_raise_one_line_config_error(values, message):
    with pytest.raises(ConfigError) as info:
        build_config(values)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_roundtrip_and_dash_keys(tmp_path):
    config = build_config({"dense-units": "1024,512", "augment": "yes", "epochs": 3})
    assert config.dense_units == (1024, 512) and config.augment is True
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_names_a_registered_base(path):
    from edgetl.models.bases import BASES

    config = load_config(path)
    assert config.base in BASES and config.data is None  # data comes from --data


def test_shipped_configs_say_what_they_mirror():
    root = CONFIGS[0].parent
    names = {
        "mobilenet_v2.yaml",
        "tutorial_mobilenet_v2.yaml",
        "lessons_inception_v3.yaml",
        "flowers_mobilenet_v2.yaml",
    }
    assert {p.name for p in CONFIGS} >= names
    mobilenet = load_config(root / "tutorial_mobilenet_v2.yaml")
    assert (mobilenet.input_size, mobilenet.pooling, mobilenet.dropout, mobilenet.optimizer) == (
        160,
        "avg",
        0.2,
        "adam",
    )
    assert mobilenet.learning_rate == pytest.approx(1e-4) and mobilenet.horizontal_flip and mobilenet.augment
    inception = load_config(root / "lessons_inception_v3.yaml")
    for reference in (mobilenet, inception):  # the references keep their own recipe: edgetl's head recipe is off
        assert (reference.lr_schedule, reference.label_smoothing, reference.l2_c, reference.holdout) == (
            "constant",
            0,
            0,
            0,
        )
        assert not (reference.standardize or reference.refit or reference.min_steps or reference.patience)
        assert reference.class_weight == "none"
    default = load_config(root / "mobilenet_v2.yaml")  # edgetl's own recipe: TrainConfig's defaults
    assert (default.learning_rate, default.lr_schedule, default.label_smoothing) == (1e-3, "cosine", 0.1)
    assert default.holdout > 0 and default.refit and default.standardize and default.input_size == 160
    assert (inception.input_size, inception.cut_layer, inception.pooling, inception.dense_units) == (
        150,
        "mixed7",
        "flatten",
        (1024,),
    )
    assert (inception.rotation, inception.width_shift, inception.zoom, inception.optimizer) == (40, 0.2, 0.2, "rmsprop")
    flowers = load_config(root / "flowers_mobilenet_v2.yaml")
    assert (flowers.input_size, flowers.fine_tune_layers, flowers.fine_tune_epochs) == (224, 30, 3)
    assert flowers.fine_tune_learning_rate == pytest.approx(1e-5) and flowers.augment


def test_cli_flags_override_yaml_and_only_given_flags_count(tmp_path, monkeypatch):
    seen = {}

    def fake_train(config, resume=True, **_):
        seen["config"], seen["resume"] = config, resume
        return {"val_accuracy": 1.0, "val_loss": 0.0, "num_train": 1, "num_val": 1, "skipped": [], "train_seconds": 0.0}

    monkeypatch.setattr("edgetl.train.trainer.train", fake_train)
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\ninput_size: 96\naugment: true\nrotation: 10\ndense_units: [64]\n")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--config",
            str(path),
            "--epochs",
            "3",
            "--no-augment",
            "--dense-units",
            "32,16",
            "--pooling",
            "max",
            "--no-resume",
        ],
    )
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.epochs, config.augment, config.dense_units, config.pooling) == (3, False, (32, 16), "max")
    assert (config.input_size, config.rotation) == (96, 10.0)  # from YAML, not overridden
    assert seen["resume"] is False
    assert "run folder:" in result.output


def test_every_field_is_a_flag():
    from edgetl.cli.train_cmds import train

    names = {p.name for p in train.params}
    assert set(FIELDS) <= names


def test_cli_rejects_bad_choice_and_bad_yaml(tmp_path):
    result = CliRunner().invoke(main, ["train", "--pooling", "mean"])
    assert result.exit_code == 2 and "mean" in result.output
    path = tmp_path / "c.yaml"
    path.write_text("learning_rat: 0.1\n")
    result = CliRunner().invoke(main, ["train", "--config", str(path)])
    assert result.exit_code == 2 and "unknown config key 'learning_rat'" in result.output
