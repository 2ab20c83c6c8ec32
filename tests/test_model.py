"""Head shapes, the fused model, and unfreezing exactly N layers for fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.models.classifier import build_classifier, head_to_numpy, output_kind
from edgetl.train.config import build_config


@pytest.mark.parametrize("num_classes, units, activation", [(2, 1, "sigmoid"), (3, 3, "softmax"), (5, 5, "softmax")])
def test_head_output_shape(num_classes, units, activation):
    config = build_config({"weights": "none", "input_size": 32, "dense_units": [8]})
    fused, base, head = build_classifier(config, num_classes)
    assert output_kind(num_classes) == (activation, units)
    assert head.output.shape[-1] == units and base.name == "base" and head.name == "head"
    assert head.get_layer("predictions").activation.__name__ == activation
    probs = fused.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert probs.shape == (2, units)
    assert not base.trainable


def test_numpy_head_matches_keras_head():
    config = build_config({"weights": "none", "input_size": 32, "cut_layer": "Conv1_relu", "dense_units": [8]})
    _, base, head = build_classifier(config, 3)
    features = np.random.default_rng(0).uniform(0, 6, (4, *base.output.shape[1:])).astype(np.float32)
    expected = head.predict(features, verbose=0)
    numpy_head = head_to_numpy(head, ["a", "b", "c"], "avg", "relu")
    np.testing.assert_allclose(numpy_head.predict(features), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [1, 5, 30])
def test_fine_tuning_unfreezes_exactly_n_layers(n):
    from edgetl._tf import keras
    from edgetl.train.finetune import trainable_layer_names, unfreeze_top

    config = build_config({"weights": "none", "input_size": 32})
    _, base, _ = build_classifier(config, 2)
    names = unfreeze_top(base, n)
    assert trainable_layer_names(base) == names and len(names) == n
    candidates = [
        layer.name
        for layer in base.layers
        if not isinstance(layer, (keras.layers.InputLayer, keras.layers.BatchNormalization))
        and not layer.name.startswith("taps_")
    ]
    assert base.layers[-1].name == "taps_concat"  # the default taps: their pooling is not counted
    assert names == candidates[-n:] and names[-1] == "out_relu"
    assert all(not layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert base.trainable
    assert unfreeze_top(base, 0) == []


def test_default_taps_join_the_pooled_stride_16_stage_to_the_last_layer():
    from edgetl._tf import keras

    config = build_config({"weights": "none", "input_size": 64})
    _, base, head = build_classifier(config, 3)
    assert base.output.shape[1:] == (576 + 1280,) and head.input.shape[1:] == (1856,)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    maps = keras.Model(base.input, [base.get_layer(n).output for n in ("block_13_expand_relu", "out_relu")])
    stage, last = maps.predict(x, verbose=0)
    expected = np.concatenate([stage.mean(axis=(1, 2)), last.mean(axis=(1, 2))], axis=1)
    np.testing.assert_allclose(base.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # none, or an explicit cut layer: the map of one layer, as before
    assert build_classifier(config.replace(taps="none"), 3)[1].output.shape[1:] == (2, 2, 1280)
    cut = config.replace(cut_layer="block_6_expand_relu")
    assert build_classifier(cut, 3)[1].output.shape[1:] == (8, 8, 192)
    two = config.replace(taps="block_6_expand_relu, block_13_expand_relu", pooling="max")
    assert build_classifier(two, 3)[1].output.shape[1:] == (192 + 576 + 1280,)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"taps": "block_99_relu"}, "tap 'block_99_relu' is not a layer of mobilenet_v2"),
        ({"taps": "block_13_expand_relu", "pooling": "flatten"}, "taps need pooling avg or max"),
    ],
)
def test_bad_taps_are_one_line_config_errors(changes, message):
    from edgetl.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_classifier(build_config({"weights": "none", "input_size": 32, **changes}), 2)


def test_taps_are_part_of_the_feature_cache_key(tmp_path):
    from edgetl._tf import set_seed
    from edgetl.train.extract import FeatureExtractor

    def digest(config):
        set_seed(0)  # the same random weights every build: only the taps differ
        return FeatureExtractor.for_config(config, build_classifier(config, 2)[1]).digest

    config = build_config({"weights": "none", "input_size": 32, "cache_dir": str(tmp_path)})
    assert digest(config) == digest(config)
    assert (
        len({digest(c) for c in (config, config.replace(taps="none"), config.replace(taps="block_6_expand_relu"))}) == 3
    )


def test_layers_command_lists_cut_candidates():
    import json

    from click.testing import CliRunner

    from edgetl.cli import main

    result = CliRunner().invoke(main, ["layers", "--base", "mobilenet_v2", "--input-size", "32", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_name = {row["name"]: row for row in rows}
    assert by_name["Conv1_relu"]["output_shape"] == [None, 16, 16, 32]
    assert rows[-1]["output_shape"][-1] == 1280 and len(rows) > 150


def test_read_labels_handles_background_line(tmp_path):
    from edgetl.cli.train_cmds import read_labels
    from edgetl.errors import ConfigError

    path = tmp_path / "labels.txt"
    path.write_text("background\n" + "".join(f"c{i}\n" for i in range(1000)))
    assert read_labels(str(path), 1000)[:2] == ["c0", "c1"]
    path.write_text("".join(f"c{i}\n" for i in range(1000)))
    assert read_labels(str(path), 1000)[999] == "c999"
    with pytest.raises(ConfigError, match="has 3 lines"):
        path.write_text("a\nb\nc\n")
        read_labels(str(path), 1000)


def test_classify_reports_bad_images_and_exits_1(tmp_path):
    import json

    from click.testing import CliRunner
    from PIL import Image

    from edgetl.cli import main

    good = tmp_path / "good.png"
    Image.new("RGB", (50, 40), (200, 10, 10)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    result = CliRunner().invoke(main, ["classify", str(good), str(bad), "--weights", "none", "--top-k", "3", "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    from edgetl.models.imagenet import imagenet_classes

    assert len(out[0]["top"]) == 3 and out[0]["top"][0]["label"] == imagenet_classes()[out[0]["top"][0]["index"]]
    assert imagenet_classes()[285] == "Egyptian cat" and imagenet_classes()[0] == "tench"
    assert sum(t["score"] for t in out[0]["top"]) <= 1.0 + 1e-6
    assert "error" in out[1] and "bad.jpg" in result.stderr
