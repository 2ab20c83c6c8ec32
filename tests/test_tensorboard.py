"""`edgetl train --tensorboard`: event files with one scalar step per epoch and the confusion image."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest
from click.testing import CliRunner

from edgetl.cli import main

from conftest import make_dataset

pytest.importorskip("tensorboard")


def read_events(folder):
    """{tag: {step: (plugin, value)}} over every event file below `folder`."""
    from edgetl._tf import tf

    found = defaultdict(dict)
    for path in sorted(folder.rglob("*tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                found[value.tag][event.step] = (value.metadata.plugin_data.plugin_name, tensor)
    return found


@pytest.mark.parametrize("solver, head_epochs", [("keras", 3), ("logistic", 1)])
def test_tensorboard_scalars_per_phase_and_confusion_image(solver, head_epochs, tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=4, size=32)
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--weights",
        "none",
        "--input-size",
        "32",
        "--cut-layer",
        "Conv1_relu",
        "--learning-rate",
        "0.03",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--fine-tune-layers",
        "1",
        "--fine-tune-epochs",
        "2",
        "--fine-tune-learning-rate",
        "0.001",
        "--tensorboard",
        "--head-solver",
        solver,
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    history = list(csv.DictReader((out / "history.csv").open()))

    assert [r["phase"] for r in history] == ["head"] * head_epochs + ["refit"] * len(history[head_epochs:-2]) + [
        "fine_tune"
    ] * 2
    for phase in ("head", "refit", "fine_tune"):
        rows = [r for r in history if r["phase"] == phase]
        steps = [int(r["epoch"]) - 1 for r in rows]
        for split, prefix in (("train", ""), ("validation", "val_")):
            events = read_events(out / "tensorboard" / phase / split)
            for metric in ("loss", "accuracy"):
                scalars = events[f"epoch_{metric}"]
                assert sorted(scalars) == steps, (phase, split, metric)  # one step per epoch
                assert all(plugin == "scalars" for plugin, _ in scalars.values())
                logged = [float(scalars[s][1]) for s in steps]
                assert logged == pytest.approx([float(r[prefix + metric]) for r in rows], rel=1e-5)

    images = read_events(out / "tensorboard" / "confusion")["confusion_matrix"]
    last = len(history)  # the step after the last epoch's (epoch k is step k - 1)
    assert list(images) == [last]  # logged once, after training
    plugin, tensor = images[last]
    # image summaries hold [width, height, png bytes...]
    assert plugin == "images" and int(tensor[0]) > 100 and int(tensor[1]) > 100
    assert bytes(tensor[2])[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_tensorboard_folder_without_the_flag(tmp_path, tiny_config):
    from edgetl.train.trainer import train

    data = make_dataset(tmp_path, classes=("red", "green"), per_class=3, size=32)
    train(tiny_config(data, epochs=1), echo=lambda _: None)
    assert (tmp_path / "run" / "run.json").is_file() and not (tmp_path / "run" / "tensorboard").exists()
