"""End-to-end training on tiny synthetic data: run folder contents, determinism, resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.train.run_folder import open_run
from edgetl.train.trainer import train

from conftest import make_dataset

RUN_FILES = (
    "model.keras",
    "labels.txt",
    "config.yaml",
    "splits.json",
    "metrics.json",
    "history.csv",
    "curves.png",
    "confusion.png",
    "run.json",
)
TIMING_KEYS = ("train_seconds", "feature_seconds", "head_seconds", "fine_tune_seconds", "cache", "resumed_from_epoch")


def test_cli_train_writes_every_run_file(tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=6, size=40, fmt="jpeg")
    bad = data / "red" / "zz_truncated.jpg"
    bad.write_bytes((data / "red" / "red_000.jpg").read_bytes()[:40])
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
        "0.05",
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--augment",
        "--augment-views",
        "1",
        "--rotation",
        "20",
        "--horizontal-flip",
        "--val-split",
        "0.34",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"run folder: {out}" in result.output and "skipped" in result.output
    for name in RUN_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "checkpoints" / "state.npz").is_file()

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped"] and metrics["skipped"][0]["path"] == str(bad) and metrics["skipped"][0]["reason"]
    assert (metrics["num_train"], metrics["num_val"], metrics["num_train_views"]) == (8, 4, 16)
    assert metrics["classes"] == ["green", "red"] and metrics["val_counts"] == {"green": 2, "red": 2}
    for key in ("val_accuracy", "val_loss", "train_seconds", "feature_seconds", "seed"):
        assert key in metrics
    assert metrics["val_accuracy"] == 1.0

    run = open_run(out)
    assert run.classes == ["green", "red"] and run.input_size == 32
    assert run.info["output"] == "sigmoid" and run.info["feature_shape"] == [16, 16, 32]
    assert run.scale == pytest.approx(1 / 127.5) and run.offset == -1.0
    assert (out / "labels.txt").read_text() == "green\nred\n"
    files = run.files("train") + run.files("val")
    assert len(files) == 12 and bad not in [p for p, _ in files] and all(p.is_file() for p, _ in files)
    assert run.config().augment and run.config().rotation == 20
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["epoch"] for r in rows] == [str(i + 1) for i in range(len(rows))] and rows[0]["phase"] == "head"
    head = metrics["head"]  # 1 of 4 images per class held out: early stopping, then a refit on all 8
    assert head["holdout_images"] == 2 and {r["phase"] for r in rows} == {"head", "refit"}
    assert sum(r["phase"] == "refit" for r in rows) == head["refit_epochs"] == head["best_epoch"] <= 6

    # the saved fused model reproduces the reported validation accuracy from images
    from edgetl.runtime.image import load_rgb, preprocess

    model = run.load_model()
    x = np.stack([preprocess(load_rgb(p, 32), run.scale, run.offset) for p, _ in run.files("val")])
    predicted = (model.predict(x, verbose=0)[:, 0] > 0.5).astype(int)
    labels = np.array([y for _, y in run.files("val")])
    assert np.mean(predicted == labels) == metrics["val_accuracy"]


def _strip(metrics):
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


class Stop(Exception):
    pass


def test_seeded_runs_are_identical_and_resume_continues_exactly(tmp_path, tiny_config):
    data = make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=5, size=32)
    settings = dict(
        epochs=3,
        augment=True,
        augment_views=1,
        zoom=0.2,
        dropout=0.5,
        fine_tune_layers=2,
        fine_tune_epochs=1,
        fine_tune_learning_rate=0.001,
    )
    first = train(tiny_config(data, out=str(tmp_path / "a"), **settings), echo=lambda _: None)
    second = train(tiny_config(data, out=str(tmp_path / "b"), **settings), echo=lambda _: None)
    assert _strip(first) == _strip(second)
    phases = [r["phase"] for r in csv.DictReader((tmp_path / "a" / "history.csv").open())]
    assert phases[0] == "head" and "refit" in phases and phases[-1] == "fine_tune"  # 3 of 15 images held out
    assert first["epochs_run"] == len(phases) and first["val_accuracy"] > 0.5

    # one run folder killed in each phase in turn (early-stopping state, the holdout head's statistics, the
    # phase's epochs): each rerun starts right after the epoch it was killed in and goes exactly where the
    # uninterrupted run went (the epochs it runs, then the final numbers). One chained folder instead of a
    # fresh folder per kill point: 4 train() calls instead of 6, every resume is still from a kill.
    config = tiny_config(data, out=str(tmp_path / "c"), **settings)
    expected = [(phase, epoch) for epoch, phase in enumerate(phases)]
    kills = (1, phases.index("refit"), phases.index("fine_tune"))
    resumed_from = 0
    for kill_at in kills:
        seen = []

        def stop_there(phase, epoch, kill_at=kill_at, seen=seen):
            seen.append((phase, epoch))
            if epoch == kill_at:
                raise Stop

        with pytest.raises(Stop):
            train(config, epoch_hook=stop_there, echo=lambda _: None)
        assert seen == expected[resumed_from : kill_at + 1]  # resumed where the last kill left off
        assert not (tmp_path / "c" / "run.json").exists()  # interrupted: the folder is not complete
        resumed_from = kill_at + 1
    seen = []
    resumed = train(config, epoch_hook=lambda phase, epoch: seen.append((phase, epoch)), echo=lambda _: None)
    assert resumed["resumed_from_epoch"] == kills[-1] + 1
    assert seen == expected[kills[-1] + 1 :]
    assert _strip(resumed) == _strip(first)  # tolerance: exact
    assert (tmp_path / "c" / "history.csv").read_text() == (tmp_path / "a" / "history.csv").read_text()
    fresh = train(config, resume=False, echo=lambda _: None)
    assert fresh["resumed_from_epoch"] == 0 and _strip(fresh) == _strip(first)


def test_clear_errors_before_training(tmp_path):
    data = make_dataset(tmp_path, classes=("red",), per_class=3, size=16)
    result = CliRunner().invoke(main, ["train", "--data", str(data), "--weights", "none", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "single class" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "missing"), "--weights", "none"])
    assert result.exit_code == 2 and "not found" in result.output
    args = ["train", "--data", str(data), "--augment", "--rotation", "0", "--no-horizontal-flip", "--weights", "none"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "every augmentation range is 0" in result.output


def test_tensorboard_writes_head_and_confusion_logs(tmp_path, tiny_config):
    pytest.importorskip("tensorboard")  # part of the train extra, so CI has it
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=3, size=32)
    train(tiny_config(data, tensorboard=True, epochs=1), echo=lambda _: None)
    logs = tmp_path / "run" / "tensorboard"
    assert list((logs / "head" / "train").glob("*tfevents*")) and list((logs / "confusion").glob("*tfevents*"))


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, tiny_config, monkeypatch):
    import importlib.util

    from edgetl.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=3, size=32)
    with pytest.raises(ConfigError, match="tensorboard: true needs the tensorboard package; `pip install tensorboard`"):
        train(tiny_config(data, tensorboard=True, epochs=1), echo=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_mirrored_strategy_trains_and_resumes(tmp_path, tiny_config):
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=4, size=32)
    config = tiny_config(data, strategy="mirrored", epochs=2)
    with pytest.raises(Stop):
        train(config, epoch_hook=lambda phase, epoch: (_ for _ in ()).throw(Stop()), echo=lambda _: None)
    metrics = train(config, echo=lambda _: None)
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_run"] == 2 + metrics["head"]["refit_epochs"]
    assert 0.0 <= metrics["val_accuracy"] <= 1.0


@pytest.mark.parametrize("min_steps, expected_rows", [(0, 45), (500, 400)])  # a partial last batch; repeats
def test_one_fit_head_phase_matches_one_fit_per_epoch(tmp_path, min_steps, expected_rows):
    """run_head_phase (all epochs in one fit) must train exactly what run_phase (a fit per epoch) trains."""
    from edgetl.models.classifier import build_head
    from edgetl.train.config import build_config
    from edgetl.train.epochs import HeadData, Loop, compile_model, epoch_rows, run_head_phase, run_phase

    config = build_config(
        {
            "base": "mobilenet_v2",
            "input_size": 32,
            "dropout": 0.3,
            "batch_size": 8,
            "learning_rate": 0.01,
            "seed": 5,
            "min_steps": min_steps,
        }
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(45, 16)).astype(np.float32)
    y = rng.integers(0, 3, 45).astype(np.float32)
    validation = (rng.normal(size=(10, 16)).astype(np.float32), rng.integers(0, 3, 10).astype(np.float32))
    weights = rng.uniform(0.5, 2.0, 45).astype(np.float32)  # per-row loss weights (class weights) in both
    rows = epoch_rows(config, len(x))  # min_steps 500 over 10 epochs: 50 batches of 8 an epoch, rows repeated
    assert rows == expected_rows
    results, initial = [], None
    for name, phase in (("one_fit", run_head_phase), ("per_epoch", None)):
        head = build_head((16,), 3, config)
        initial = initial or head.get_weights()
        head.set_weights(initial)
        optimizer = compile_model(head, config, 3, config.learning_rate, steps_per_execution=4)
        history: list[dict] = []
        loop = Loop(config, tmp_path / name, "d", history, None, lambda line: None)
        if phase is run_head_phase:
            run_head_phase("head", head, optimizer, 1, 4, HeadData(x, y, weights), validation, loop, [])
        else:
            run_phase("head", head, optimizer, 1, 4, lambda e: (x, y), validation, loop, [], None, weights, rows)
        results.append((head.get_weights(), history))
    (w_one, h_one), (w_each, h_each) = results
    assert [row["epoch"] for row in h_one] == [2, 3, 4]
    assert h_one == h_each
    for a, b in zip(w_one, w_each):
        np.testing.assert_array_equal(a, b)
