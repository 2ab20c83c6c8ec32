"""The CLI as a whole: help everywhere, one flag vocabulary, JSON that parses, exit codes, reports.

Per-command behaviour lives in each stage's tests; this file checks what must hold across
commands. The tiny TFLite bundle (tests/bundle_fixture.py) is built once per session.
"""

from __future__ import annotations

import json
import tarfile

import click
import pytest
from click.testing import CliRunner

from edgetl import __version__
from edgetl.cli import main
from edgetl.cli.common import EXIT_CODES, INTERNAL_ERROR

from bundle_fixture import make_dataset
from report_fixtures import make_run as make_report_run


def _leaves(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every command to run, by what one types after `edgetl` ("weights list" for a group's subcommand)."""
    out = {}
    for name, command in group.commands.items():
        out.update(
            _leaves(command, f"{prefix}{name} ") if isinstance(command, click.Group) else {prefix + name: command}
        )
    return out


LEAVES = _leaves(main)
COMMANDS = sorted(LEAVES)
JSON_COMMANDS = {
    "train",
    "export",
    "validate",
    "run",
    "update-head",
    "rollback-head",
    "bench",
    "doctor",
    "layers",
    "classify",
    "features",
    "labels",
    "report",
    "weights list",
    "check-data",
}
THREAD_COMMANDS = {"run", "update-head", "bench"}
DATA_COMMANDS = {"train", "features", "validate", "update-head", "bench", "check-data"}
SEED_COMMANDS = {"train", "export", "update-head"}
OUT_COMMANDS = {"train", "features", "export", "report", "check-data"}


def cli(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="edgetl", **kwargs)


def options(command: str) -> dict[str, click.Option]:
    return {name: p for p in LEAVES[command].params if isinstance(p, click.Option) for name in p.opts}


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data", {"blue": 4, "red": 4}, seed=7)


# ------------------------------------------------------------------------------ help and flags
@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command):
    for flag in ("--help", "-h"):
        result = cli(*command.split(), flag)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"Usage: edgetl {command} ") and "--help" in result.output


def test_top_level_help_lists_commands_and_exit_codes():
    result = cli("--help")
    assert result.exit_code == 0
    listing = result.output.split("Commands:")[1].split("Exit codes:")[0]
    for command in main.commands:
        assert f"  {command} " in listing
    assert "..." not in listing  # no short help is truncated
    assert "Exit codes:" in result.output
    for code, text in EXIT_CODES.items():
        assert f"{code:<4} {text}" in result.output
    assert set(EXIT_CODES) == {0, 1, 2, 3, INTERNAL_ERROR, 130}
    assert all(len(line) <= 100 for line in result.output.splitlines())


def test_version():
    result = cli("--version")
    assert result.exit_code == 0 and result.output.strip() == f"edgetl, version {__version__}"


def test_one_flag_vocabulary():
    assert set(COMMANDS) == JSON_COMMANDS  # every command has --json
    for command in COMMANDS:
        opts = options(command)
        assert opts["--json"].is_flag and opts["--json"].name == "as_json", command
        assert ("--threads" in opts) == (command in THREAD_COMMANDS), command
        assert ("--data" in opts) == (command in DATA_COMMANDS), command
        assert ("--seed" in opts) == (command in SEED_COMMANDS), command
        assert ("--out" in opts) == (command in OUT_COMMANDS), command
        if "--out" in opts:
            assert opts["-o"] is opts["--out"], command  # -o everywhere --out exists, nowhere else
        else:
            assert "-o" not in opts, command
        assert "-j" not in opts, command
        if command in ("train", "export", "validate"):
            assert opts["--report"].default is True and opts["--report"].secondary_opts == ["--no-report"], command
    assert options("export")["--format"].multiple and options("bench")["--format"].multiple
    assert options("validate")["--format"] is options("validate")["--formats"]  # old spelling kept


def test_every_format_of_the_table_has_a_converter_and_a_flag():
    from edgetl.export.converters import CONVERTERS
    from edgetl.runtime.formats import FORMATS

    assert set(CONVERTERS) == set(FORMATS)
    flags = options("export")
    for fmt in FORMATS.values():
        assert fmt.flag is None or flags[f"--{fmt.flag}"].help == fmt.description, fmt.name


def test_bad_flag_is_a_usage_error():
    result = cli("run", "--no-such-flag")
    assert result.exit_code == 2 and "No such option" in result.output
    result = cli("bench", "b", "--threads", "0")
    assert result.exit_code == 2 and "--threads" in result.output


# ------------------------------------------------------------------------------ JSON outputs
def test_json_outputs_parse(bundle, data, tmp_path):
    image = sorted((data / "red").iterdir())[0]
    (data / "red" / "zz_broken.png").write_bytes(b"not a png")

    res = cli("run", bundle, image, data / "blue", "--json")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.exit_code == 0 and len(rows) == 5 and rows[0]["label"] == "red"

    res = cli("labels", bundle / "tflite_int8.tflite", "--json")  # built without edgetl: no metadata
    assert res.exit_code == 2 and "no embedded labels" in res.stderr and res.stdout == ""

    res = cli("validate", bundle, "--data", data, "--format", "tflite-int8,tflite-float32", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report == json.loads((bundle / "validation.json").read_text())
    assert set(report["formats"]) == {"tflite-int8", "tflite-float32"} and report["num_images"] == 8
    assert (bundle / "report.html").is_file() and (bundle / "report.md").is_file()
    assert "tflite-int8" in (bundle / "report.md").read_text()
    assert f"report: {bundle / 'report.html'}" in res.stderr

    res = cli("bench", bundle, "--format", "tflite-int8", "--runs", "2", "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    assert list(json.loads(res.stdout)["formats"]) == ["tflite-int8"]

    res = cli("update-head", bundle, "--data", data, "--epochs", "5", "--force", "--json")
    assert res.exit_code == 0, res.output
    updated = json.loads(res.stdout)
    assert updated["swapped"] is True and updated["classes"] == ["blue", "red"] and updated["failed_images"] == 1
    assert 0.0 <= updated["new_accuracy"] <= 1.0 and updated["record"]["file"]

    res = cli("rollback-head", bundle, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == {"head": None}

    res = cli("doctor", "--json")
    assert res.exit_code in (0, 1) and isinstance(json.loads(res.stdout)["ok"], bool)


def test_report_json_and_no_report(bundle, data, tmp_path):
    run = make_report_run(tmp_path / "run")
    res = cli("report", run, "-o", tmp_path / "r", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {
        "html": str(tmp_path / "r" / "report.html"),
        "md": str(tmp_path / "r" / "report.md"),
    }

    res = cli("validate", bundle, "--data", data, "--format", "tflite-int8", "--no-report")
    assert res.exit_code == 0, res.output
    assert (bundle / "validation.json").is_file() and not (bundle / "report.html").exists()


# ------------------------------------------------------------------------------ exit codes
def test_exit_codes(bundle, data, tmp_path):
    assert cli("run", bundle, sorted((data / "red").iterdir())[0]).exit_code == 0
    (data / "red" / "broken.png").write_bytes(b"not a png")
    res = cli("run", bundle, data / "red")
    assert res.exit_code == 1 and "1 failed" in res.stderr  # some items failed

    res = cli("run", tmp_path / "missing", data)
    assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1

    res = cli("validate", bundle, "--data", data, "--format", "tflite-int8", "--max-drop", "-1")
    assert res.exit_code == 3 and "accuracy gate failed" in res.stderr
    assert (bundle / "report.html").is_file()  # the report of a failed gate is written before exiting


def test_interrupt_is_130(bundle, data, monkeypatch):
    from edgetl.runtime import predictor

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predictor, "open_predictor", interrupted)
    res = cli("run", bundle, data)
    assert res.exit_code == 130 and res.output == "interrupted\n"


def test_internal_error_is_one_line_unless_debug(bundle, data, monkeypatch):
    from edgetl.runtime import predictor

    def bug(*args, **kwargs):
        raise RuntimeError("boom\n  in a second line")

    monkeypatch.setattr(predictor, "open_predictor", bug)
    res = cli("run", bundle, data)
    assert res.exit_code == INTERNAL_ERROR == 70
    assert res.output == (
        "error: internal error: RuntimeError: boom in a second line (run with --debug for the traceback)\n"
    )
    debug = cli("--debug", "run", bundle, data)
    assert isinstance(debug.exception, RuntimeError) and debug.exit_code == 1
    env = cli("run", bundle, data, env={"EDGETL_DEBUG": "1"})
    assert isinstance(env.exception, RuntimeError)


def test_missing_workstation_module_says_what_to_install(bundle, data, monkeypatch):
    """A device install has no TensorFlow: a workstation command says so in one line, exit 2."""
    from edgetl.runtime import predictor

    for name, code in (("tensorflow", 2), ("tf2onnx.convert", 2), ("not_ours", INTERNAL_ERROR)):

        def missing(*args, _name=name, **kwargs):
            raise ModuleNotFoundError(f"No module named '{_name}'", name=_name)

        monkeypatch.setattr(predictor, "open_predictor", missing)
        res = cli("run", bundle, data)
        assert res.exit_code == code and len(res.output.splitlines()) == 1, res.output
        if code == 2:
            assert res.output.startswith(f"error: `edgetl run` runs on the workstation and needs {name}, ")
            assert 'pip install ".[train]"' in res.output


def test_train_without_tensorflow_is_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    data = make_dataset(tmp_path / "data", {"blue": 3, "red": 3})
    code = (
        "import sys; sys.modules['tensorflow'] = None  # as on a device install\n"
        "from edgetl.cli import main\n"
        f"main(['train', '--data', {str(data)!r}, '--out', {str(tmp_path / 'run')!r}, '--weights', 'none'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: `edgetl train` runs on the workstation and needs tensorflow")
    )
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_report_failure_keeps_the_result_and_exit_code(bundle, data, monkeypatch):
    import edgetl.report.writer

    def broken(*args, **kwargs):
        raise ValueError("matplotlib exploded")

    monkeypatch.setattr(edgetl.report.writer, "write_report", broken)
    res = cli("validate", bundle, "--data", data, "--format", "tflite-int8", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["passed"] is True and (bundle / "validation.json").is_file()
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: report")]
    assert warnings == [
        f"warning: report not written (ValueError: matplotlib exploded); retry with `edgetl report {bundle}`"
    ]
    res = cli("validate", bundle, "--data", data, "--format", "tflite-int8", "--max-drop", "-1")
    assert res.exit_code == 3 and "warning: report not written" in res.stderr


# ------------------------------------------------------------------------------ train and export (TensorFlow)
def test_train_json_and_report(tmp_path):
    from conftest import make_dataset as make_train_data

    images = make_train_data(tmp_path, classes=("red", "green"), per_class=5, size=40)
    out = tmp_path / "run"
    res = cli(
        "train",
        "--data",
        images,
        "--weights",
        "none",
        "--input-size",
        "32",
        "--cut-layer",
        "Conv1_relu",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--no-augment",
        "-o",
        out,
        "--cache-dir",
        tmp_path / "cache",
        "--json",
    )
    assert res.exit_code == 0, res.output[-2000:]
    doc = json.loads(res.stdout)
    assert doc == {
        **json.loads((out / "metrics.json").read_text()),
        "run": str(out),
        "report": str(out / "report.html"),
    }
    assert "epoch 2" in res.stderr and (out / "report.html").is_file() and (out / "report.md").is_file()
    assert (out / "run.json").is_file()


def test_export_gate_failure_still_reports_and_archives(tmp_path, monkeypatch):
    import dataclasses

    from edgetl.export import converters

    from export_fixtures import make_run

    # no fallback ladder: with --max-drop -1 every rung would fail; one conversion is enough here
    monkeypatch.setitem(
        converters.CONVERTERS, "tflite-int8", dataclasses.replace(converters.CONVERTERS["tflite-int8"], ladder=None)
    )
    run = make_run(tmp_path, classes=("red", "blue"), per_class=6, val_per_class=2)
    out = tmp_path / "bundle"
    res = cli(
        "export",
        run,
        "--int8",
        "--no-split",
        "--calibration",
        "8",
        "--max-drop",
        "-1",
        "--archive",
        "-o",
        out,
        "--json",
    )
    assert res.exit_code == 3, res.output[-2000:]
    assert "accuracy gate failed" in res.stderr
    doc = json.loads(res.stdout)
    assert doc["bundle"] == str(out) and doc["validation"]["passed"] is False
    assert doc["report"] == str(out / "report.html") and doc["archive"] == str(tmp_path / "bundle.tar.gz")
    with tarfile.open(doc["archive"]) as tar:
        assert "bundle/report.html" in tar.getnames() and "bundle/manifest.json" in tar.getnames()
    assert "FAIL" in (out / "report.md").read_text()
    res = cli("labels", out / "model_int8.tflite", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["classes"] == ["red", "blue"]
