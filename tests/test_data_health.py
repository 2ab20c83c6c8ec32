"""Data health: planted duplicates and a planted mislabelled image are found, on features and end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

from edgetl.train.data_health import check_data

from conftest import make_dataset


def _blobs(rng, n_per_class: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(centres)), n_per_class)
    return centres[labels] + rng.normal(0, 3.0, (len(labels), centres.shape[1])), labels


def test_planted_duplicates_and_a_mislabelled_point_are_found():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6.0, (3, 32))
    x_train, y_train = _blobs(rng, 30, centres)
    x_val, y_val = _blobs(rng, 10, centres)
    x_val[4] = x_train[7] * 1.0001  # a near copy of a training image in val
    y_train = y_train.copy()
    y_train[50] = 0  # a class-1 point labelled class 0
    train = {
        "paths": [f"t{i}" for i in range(90)],
        "labels": list(y_train),
        "features": x_train,
        "hashes": [f"h{i}" for i in range(90)],
    }
    val = {
        "paths": [f"v{i}" for i in range(30)],
        "labels": list(y_val),
        "features": x_val,
        "hashes": [f"h{100 + i}" for i in range(30)],
    }
    val["hashes"][9] = "h3"  # the same bytes as training file t3
    report = check_data(["a", "b", "c"], train, val, [("bad.jpg", "cannot decode")])
    assert report["exact_duplicates"] == [{"a": "t3", "b": "v9", "where": "train-val"}]
    assert report["num_exact_across_splits"] == 1
    assert report["near_duplicates"][0]["train"] == "t7" and report["near_duplicates"][0]["val"] == "v4"
    assert report["num_near_duplicates"] == 1  # nothing else is that close
    assert report["label_issues"][0] == {**report["label_issues"][0], "path": "t50", "label": "a", "predicted": "b"}
    assert report["num_label_issues"] <= 3  # and few false alarms on clean blobs
    assert report["undecodable"] == [{"path": "bad.jpg", "reason": "cannot decode"}]
    assert report["imbalance"]["imbalanced"] is False


def test_imbalance_is_flagged():
    from edgetl.train.data_health import imbalance

    assert imbalance({"a": 100, "b": 40})["imbalanced"] and imbalance({"a": 100, "b": 40})["smallest"] == "b"
    assert not imbalance({"a": 100, "b": 90})["imbalanced"]


def test_check_data_command_finds_a_planted_duplicate_and_mislabel(tmp_path):
    from edgetl.cli import main

    data = make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=12, val_per_class=4, layout="split")
    shutil.copy(data / "train" / "red" / "red_000.png", data / "val" / "red" / "copied.png")  # leaks into val
    shutil.move(data / "train" / "blue" / "blue_003.png", data / "train" / "green" / "actually_blue.png")
    config = tmp_path / "c.yaml"
    config.write_text("base: mobilenet_v2\nweights: none\ninput_size: 32\ncut_layer: block_2_add\n")
    out = tmp_path / "health"
    args = [
        "check-data",
        "--data",
        str(data),
        "--config",
        str(config),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num_exact_across_splits"] == 1 and report["exact_duplicates"][0]["b"].endswith("copied.png")
    assert report["label_issues"][0]["path"].endswith("actually_blue.png")
    assert report["label_issues"][0]["predicted"] == "blue"
    html = (out / "report.html").read_text()
    assert "Data health" in html and "data:image/png;base64" in html  # thumbnails inline
    assert json.loads((out / "data_health.json").read_text()) == report
