"""`update-head` / `rollback-head`: numpy training, acceptance gate, atomic swap, kills, rollback."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from edgetl.runtime import cameras, headstore, headwatch, runner
from edgetl.runtime import predictor as predict
from edgetl.runtime.atomic import sha256_file
from edgetl.runtime.bundle import load_bundle
from edgetl.runtime.retrain import RetrainConfig, stratified_split, train_head, update_head

from bundle_fixture import fresh_bundle, make_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain_data")
    return {
        "two": make_dataset(root / "two", {"blue": 10, "red": 10}, seed=11),
        "three": make_dataset(root / "three", {"blue": 10, "red": 10, "green": 10}, seed=12),
    }


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def pointer(bundle):
    path = bundle / "device" / "heads" / "CURRENT.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_softmax_regression_and_mlp_on_gaussian_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 20))
    y = np.repeat(np.arange(3), 100)
    x = (centres[y] + rng.normal(0, 1.0, (300, 20)) + 5).astype(np.float32)  # offset: tests the standardization fold
    train, hold = stratified_split(y, 0.25, seed=0)
    assert len(hold) == 75 and not set(train) & set(hold)
    assert np.bincount(y[hold]).tolist() == [25, 25, 25]
    np.testing.assert_array_equal(stratified_split(y, 0.25, seed=0)[1], hold)
    for hidden in (0, 16):
        cfg = RetrainConfig(data="-", epochs=30, hidden=hidden, seed=1)
        weights, biases = train_head(x[train], y[train], 3, cfg)
        h = x[hold]
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w + b
            h = np.maximum(h, 0) if i < len(weights) - 1 else h
        assert (h.argmax(axis=1) == y[hold]).mean() >= 0.97, hidden
    w1, _ = train_head(x[train], y[train], 3, RetrainConfig(data="-", epochs=3, seed=5))
    w2, _ = train_head(x[train], y[train], 3, RetrainConfig(data="-", epochs=3, seed=5))
    np.testing.assert_array_equal(w1[0], w2[0])  # seeded


def test_accepts_better_head_refuses_worse_and_caches_features(bundle, datasets):
    original = sha256_file(bundle / "head.npz")
    res = cli("update-head", bundle, "--data", datasets["three"], "--allow-new-classes")
    assert res.exit_code == 0, res.output
    record = pointer(bundle)
    assert record["classes"] == ["blue", "red", "green"] and record["accuracy"] == 1.0
    assert record["previous_accuracy"] <= 2 / 3 + 1e-9  # the exported head cannot say "green"
    assert "30 new, 0 cached" in res.stdout
    pred = predict.open_predictor(bundle)
    assert pred.head is not None and pred.fmt == "base-tflite-int8"
    greens = sorted((datasets["three"] / "green").iterdir())
    assert [pred.classes[int(np.argmax(pred.classify(p)))] for p in greens] == ["green"] * len(greens)

    before = (bundle / "device" / "heads" / "CURRENT.json").read_bytes()
    res = cli(
        "update-head", bundle, "--data", datasets["three"], "--epochs", "1", "--learning-rate", "1e-7", "--seed", "3"
    )
    assert res.exit_code == 3 and "kept the current head" in res.stderr
    assert (bundle / "device" / "heads" / "CURRENT.json").read_bytes() == before

    res = cli("update-head", bundle, "--data", datasets["two"], "--hidden", "8", "--epochs", "50")
    assert res.exit_code == 0, res.output
    assert "20 new, 30 cached" in res.stdout  # old data (cached) is trained on as well
    assert pointer(bundle)["previous"]["file"] == record["file"]
    assert sha256_file(bundle / "head.npz") == original


class GreenCamera:
    """The dataset's green images as camera frames; before frame n it runs `actions[n]()`."""

    def __init__(self, folder, actions):
        self.name, self.reads, self.actions = "green camera", 0, actions
        self.frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]

    def read(self):
        self.reads += 1
        if self.reads in self.actions:
            self.actions[self.reads]()
        return self.frames[self.reads % len(self.frames)]

    def close(self):
        pass


def swap_in_green(bundle, datasets):
    update_head(bundle, RetrainConfig(data=str(datasets["three"]), allow_new_classes=True), err=io.StringIO())


def test_a_running_camera_picks_up_the_head_swapped_in(bundle, datasets, monkeypatch):
    """`edgetl run --camera` as a service: update-head and rollback-head while it runs take effect
    from the next frame, without a restart."""
    camera = GreenCamera(
        datasets["three"] / "green",
        {4: lambda: swap_in_green(bundle, datasets), 8: lambda: headstore.rollback(load_bundle(bundle))},
    )
    monkeypatch.setattr(headwatch, "HEAD_CHECK_SECONDS", 0.0)
    monkeypatch.setattr(cameras, "open_camera", lambda spec: camera)
    res = cli("run", bundle, "--camera", "0", "--json", "--max-frames", "11")
    assert res.exit_code == 0, res.output
    labels = [json.loads(line)["label"] for line in res.stdout.splitlines()]
    # frames 1-4 by the exported fused model (no "green" class), 5-8 by the new head, 9-11 by the fused model again
    assert len(labels) == 11 and "green" not in labels[:4] + labels[8:] and labels[4:8] == ["green"] * 4, labels
    notes = [line for line in res.stderr.splitlines() if line.startswith("note: head changed")]
    assert len(notes) == 2 and "base-tflite-int8, classes: blue, red, green" in notes[0], res.stderr
    assert "now using fused model (tflite-int8, classes: blue, red)" in notes[1], res.stderr


def test_a_head_that_cannot_be_opened_leaves_the_running_one(bundle, datasets):
    def swap_in_a_head_whose_base_is_broken():
        swap_in_green(bundle, datasets)
        (bundle / "base_tflite_int8.tflite").write_bytes(b"not a model")

    camera = GreenCamera(datasets["three"] / "green", {2: swap_in_a_head_whose_base_is_broken})
    watch = headwatch.HeadWatch(bundle, None, None, every=0.0)
    predictor = predict.open_predictor(bundle)
    out, err = io.StringIO(), io.StringIO()
    summary = runner.run_camera(predictor, camera, out, err, as_json=True, max_frames=4, fps_every=0, head_watch=watch)
    assert summary.ok == 4 and pointer(bundle) is not None
    assert "green" not in [json.loads(line)["label"] for line in out.getvalue().splitlines()]
    assert "warning: the bundle's head changed but cannot be used (" in err.getvalue()
    assert "still using fused model" in err.getvalue()


def test_one_head_change_at_a_time(bundle, datasets):
    """While an update-head holds the bundle (here: this test holds its lock), another update-head
    or a rollback-head is refused in one line and changes nothing; once it is released both work."""
    import fcntl

    assert cli("update-head", bundle, "--data", datasets["two"], "--epochs", "20").exit_code == 0
    before = pointer(bundle)
    with open(bundle / headstore.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for args in (
            ("update-head", bundle, "--data", datasets["three"], "--allow-new-classes"),
            ("rollback-head", bundle),
        ):
            res = cli(*args)
            assert res.exit_code == 2, res.output
            assert res.stderr.strip().splitlines()[-1] == (
                f"error: another update-head or rollback-head is changing "
                f"the head of {bundle}; run this again when it has finished"
            )
            assert pointer(bundle) == before
    assert cli("rollback-head", bundle).exit_code == 0 and pointer(bundle) is None


def test_rollback_chain_and_corrupt_head_fallback(bundle, datasets, capsys):
    assert cli("update-head", bundle, "--data", datasets["two"], "--epochs", "20").exit_code == 0
    first = pointer(bundle)
    assert (
        cli("update-head", bundle, "--data", datasets["three"], "--allow-new-classes", "--epochs", "20").exit_code == 0
    )
    second = pointer(bundle)
    assert second["previous"]["file"] == first["file"]

    heads = bundle / "device" / "heads"
    (heads / second["file"]).write_bytes(b"garbage")  # corrupt: falls back to the previous head, loudly
    active = headstore.active_head(load_bundle(bundle))
    assert active.record["file"] == first["file"] and "falling back" in capsys.readouterr().err
    (heads / first["file"]).unlink()  # both gone: the exported head (fused model)
    assert predict.open_predictor(bundle).head is None
    assert "tflite-int8" == predict.open_predictor(bundle).fmt

    res = cli("rollback-head", bundle)
    assert res.exit_code == 0 and pointer(bundle)["file"] == first["file"]
    res = cli("rollback-head", bundle)
    assert res.exit_code == 0 and pointer(bundle) is None and "exported head" in res.stdout
    res = cli("rollback-head", bundle)
    assert res.exit_code == 2 and "nothing to roll back" in res.stderr


def test_bad_update_head_inputs_leave_the_head_untouched(bundle, datasets, tmp_path):
    assert cli("update-head", bundle, "--data", datasets["two"], "--epochs", "10").exit_code == 0
    before = (bundle / "device" / "heads" / "CURRENT.json").read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    single = make_dataset(tmp_path / "single", {"red": 1}, seed=1)
    thin = make_dataset(tmp_path / "thin", {"red": 3, "green": 1}, seed=2)
    (tmp_path / "emptyclass" / "red").mkdir(parents=True)
    for data, message, *extra in (
        (empty, "has no class folders"),
        (single, "at least 2 readable images"),
        (thin, "only one for green", "--allow-new-classes"),
        (tmp_path / "emptyclass", "with no images"),
        (datasets["three"], "--allow-new-classes"),
        (tmp_path / "missing", "not found"),
    ):
        res = cli("update-head", bundle, "--data", data, *extra)
        assert res.exit_code == 2, (data, res.output)
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (bundle / "device" / "heads" / "CURRENT.json").read_bytes() == before


KILLER = textwrap.dedent("""
    import os, signal, sys
    k, when = int(sys.argv[1]), sys.argv[2]
    real, calls = os.replace, [0]
    def replace(src, dst):
        calls[0] += 1
        if calls[0] == k and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
        if calls[0] == k and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    from edgetl.cli import main
    main(["update-head", sys.argv[3], "--data", sys.argv[4], "--allow-new-classes", "--epochs", "10"])
""")


def test_sigkill_at_every_write_leaves_a_working_head(tmp_path_factory, tmp_path, datasets):
    """update-head does 3 renames (feature chunk, head file, pointer); kill before/after each."""
    template = fresh_bundle(tmp_path_factory, tmp_path / "template")
    assert cli("update-head", template, "--data", datasets["two"], "--epochs", "10").exit_code == 0
    probe = sorted((datasets["three"] / "red").iterdir())[0]
    outcomes = []
    for k in (1, 2, 3):
        for when in ("before", "after"):
            bundle = tmp_path / f"b{k}{when}"
            shutil.copytree(template, bundle)
            proc = subprocess.run(
                [sys.executable, "-c", KILLER, str(k), when, str(bundle), str(datasets["three"])],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == -9, proc.stderr[-1500:]
            active = headstore.active_head(load_bundle(bundle))  # verifies pointer + sha256
            outcomes.append(len(active.head.classes))
            res = CliRunner().invoke(main, ["run", str(bundle), str(probe), "--json"])
            assert res.exit_code == 0 and "falling back" not in res.stderr, res.output
            assert json.loads(res.stdout)["label"] in active.head.classes
            res = cli("update-head", bundle, "--data", datasets["three"], "--allow-new-classes", "--epochs", "10")
            assert res.exit_code == 0, res.output  # leftovers (temp files, orphan heads) do not get in the way
    assert outcomes == [2, 2, 2, 2, 2, 3]  # the new 3-class head is live only once the pointer was replaced
