"""kill -9 a real `edgetl train` process in each phase; re-running the same command finishes the job.

One run folder is killed four times (during feature extraction once a cache chunk exists,
during head training once a checkpoint exists, during the refit, during fine-tuning), then completed. Each
re-run must reuse what the killed one finished (cache chunks untouched, checkpoint loaded)
and the final metrics.json / history.csv must equal an uninterrupted run's with the same
seed. Tolerance: exact equality (every epoch reseeds itself, optimizer state is
checkpointed, features are deterministic), timing fields excluded.

EDGETL_TEST_SLOW_STEP (edgetl/testhooks.py) slows every base batch and every epoch so the
kills land inside the phase they aim at on any machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgetl.runtime.atomic import sha256_file

from conftest import make_dataset

pytestmark = pytest.mark.slow

TIMING_KEYS = ("train_seconds", "feature_seconds", "head_seconds", "fine_tune_seconds", "cache", "resumed_from_epoch")
SLOW = "0.05"
ROOT = Path(__file__).resolve().parents[1]


def _command(data: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from edgetl.cli import main; main()",
        "train",
        "--data",
        str(data),
        "--weights",
        "none",
        "--input-size",
        "32",
        "--cut-layer",
        "Conv1_relu",
        "--head-solver",
        "keras",  # several head epochs to kill between (the logistic solver fits in one)
        "--learning-rate",
        "0.03",
        "--batch-size",
        "8",
        "--epochs",
        "5",
        "--augment",
        "--augment-views",
        "1",
        "--horizontal-flip",
        "--dropout",
        "0.3",
        "--fine-tune-layers",
        "2",
        "--fine-tune-epochs",
        "3",
        "--fine-tune-learning-rate",
        "0.001",
        "--seed",
        "3",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
    ]


def _env(slow: bool) -> dict:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("EDGETL_TEST_SLOW_STEP", None)
    if slow:
        env["EDGETL_TEST_SLOW_STEP"] = SLOW
    return env


def _chunks(cache: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in cache.glob("features/*/chunk-*.npz")}


def _state(out: Path) -> dict | None:
    path = out / "checkpoints" / "state.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError, EOFError):
        return None


def _kill_when(cmd: list[str], ready, timeout: float = 120.0) -> str:
    """Start `cmd`, SIGKILL it as soon as ready() is true; return its output. Fails if it ends first."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(slow=True), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"train ended (rc {proc.returncode}) before the kill point:\n{proc.stdout.read()}")
            if time.time() > deadline:
                pytest.fail("kill point never reached")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return out


def _finish(cmd: list[str], slow: bool = False) -> str:
    done = subprocess.run(
        cmd, cwd=ROOT, env=_env(slow), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout
    return done.stdout


def _features_line(output: str) -> tuple[int, int]:
    match = re.search(r"features: (\d+) computed, (\d+) from cache", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


def test_kill_9_in_every_phase_then_resume_matches_an_uninterrupted_run(tmp_path):
    # 2 x 150 images -> 240 train (x2 views) + 60 val = 540 feature rows: chunk 1 lands after 256
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=150, size=32)
    reference, out, cache = tmp_path / "reference", tmp_path / "run", tmp_path / "cache"

    _finish(_command(data, reference, tmp_path / "ref_cache"))
    expected = json.loads((reference / "metrics.json").read_text())
    assert expected["epochs_run"] == 11 and expected["num_train"] == 240  # 5 head + 3 refit + 3 fine-tune

    cmd = _command(data, out, cache)
    # 1. during feature extraction, once a chunk exists
    _kill_when(cmd, lambda: bool(_chunks(cache)))
    first_chunks = _chunks(cache)
    assert not (out / "run.json").exists() and _state(out) is None

    # 2. during head training, once checkpoint k exists
    log = _kill_when(cmd, lambda: (s := _state(out)) is not None and s["phase"] == "head" and s["epoch"] >= 1)
    computed, cached = _features_line(log)
    assert cached == 256 * len(first_chunks) and computed == 540 - cached  # nothing recomputed
    assert {k: v for k, v in _chunks(cache).items() if k in first_chunks} == first_chunks  # chunks untouched
    head_state = _state(out)
    assert head_state["phase"] == "head" and 1 <= head_state["epoch"] < 4  # killed inside the head phase

    # 3. during the refit on every training image (after early stopping picked the epoch count)
    log = _kill_when(cmd, lambda: (s := _state(out)) is not None and s["phase"] == "refit")
    assert _features_line(log) == (0, 540)
    assert f"head epoch {head_state['epoch'] + 1} done" in log  # the checkpoint was loaded
    refit_state = _state(out)
    assert refit_state["phase"] == "refit" and 5 <= refit_state["epoch"] < 7

    # 4. during fine-tuning
    log = _kill_when(cmd, lambda: (s := _state(out)) is not None and s["phase"] == "fine_tune")
    assert _features_line(log) == (0, 540)
    assert f"refit epoch {refit_state['epoch'] + 1} done" in log
    ft_state = _state(out)
    assert ft_state["phase"] == "fine_tune" and 8 <= ft_state["epoch"] < 10
    assert not (out / "run.json").exists()

    # 5. the same command finishes the run
    log = _finish(cmd)
    assert _features_line(log) == (0, 540)
    assert f"resuming from {out / 'checkpoints'}: fine_tune epoch {ft_state['epoch'] + 1} done" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == ft_state["epoch"] + 1
    assert _strip(metrics) == _strip(expected)  # exact: same seed, same numbers
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert not list(out.glob(".*.tmp*"))  # no temporary file left behind in the run folder
    from edgetl.train.run_folder import open_run

    assert open_run(out).info["files"]["model.keras"]["size_bytes"] > 0
