"""Flags and output helpers shared by the commands, so one flag means one thing everywhere.

--json       machine-readable result on stdout (one document; `run`: one object per line).
             Progress and log lines go to stderr then, so `edgetl X --json | jq` always parses.
--out, -o    where a command writes its output (run folder, bundle, .npz, report folder).
--data       a folder of <class>/<images>.
--format     a model format name from the bundle table (tflite-int8, onnx, ...).
--threads    interpreter threads, wherever a TFLite/ONNX interpreter runs.
--seed       wherever something is sampled.
--no-report  skip report.html/report.md after train, export and validate.

Imports only click and the format table at module import: the device commands must not pull in TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from edgetl.runtime.formats import FORMATS

EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "some items failed (images not classified; doctor: broken install)",
    2: "usage or input error (bad flag, missing file, bad data)",
    3: "accuracy gate failed, or update-head refused the new head",
    70: "internal error: a bug; --debug shows the traceback",
    130: "interrupted (Ctrl-C)",
}
INTERNAL_ERROR = 70

FORMAT_HELP = ", ".join(FORMATS)


def exit_code_epilog() -> str:
    """The exit-code table for `edgetl --help` (\\b keeps click from re-wrapping it)."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())


def with_default(help: str, default: Any) -> str:
    """Help text showing a default that lives in a config dataclass (the flag itself defaults to None)."""
    return f"{help} [default: {default}]"


def given(**flags: Any) -> dict[str, Any]:
    """The flags typed on the command line (None: not given), to build a config over its own defaults."""
    return {k: v for k, v in flags.items() if v is not None}


def json_option(help: str = "Print the result as JSON on stdout (logs go to stderr).") -> Callable:
    return click.option("--json", "as_json", is_flag=True, help=help)


THREADS_OPTION = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Interpreter threads (default: all cores but one, at least 1).",
)
REPORT_OPTION = click.option(
    "--report/--no-report",
    "make_report",
    default=True,
    show_default=True,
    help="Write report.html + report.md (see `edgetl report`).",
)


def _split_formats(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f.strip() for v in value for f in v.split(",") if f.strip())


def formats_option(help: str) -> Callable:
    """--format NAME, repeatable or comma-separated (`--formats a,b` is the same option)."""
    return click.option(
        "--format",
        "--formats",
        "formats",
        multiple=True,
        callback=_split_formats,
        metavar="FORMAT",
        help=f"{help} Repeatable or comma-separated: {FORMAT_HELP}.",
    )


def echo_json(data: Any) -> None:
    """The one JSON style of every --json: indent 2, non-JSON values (paths, numpy scalars) as str."""
    click.echo(json.dumps(data, indent=2, default=str))


def log_to(as_json: bool) -> Callable[[str], None]:
    """Where progress lines go: stdout for people, stderr when stdout carries JSON."""
    return (lambda s: click.echo(s, err=True)) if as_json else click.echo


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Library code that prints (Keras, warnings) must not corrupt the JSON on stdout."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def try_report(folder: str | Path, as_json: bool = False) -> Path | None:
    """Write report.html/.md into `folder`; a failure is one warning line, never a lost run or bundle.

    The caller's exit code stands either way: the report is a view of files already written.
    """
    from edgetl.report.writer import write_report

    try:
        html_path, _ = write_report(folder)
    except Exception as exc:  # noqa: BLE001 - any report bug must not fail a finished train/export
        click.echo(
            f"warning: report not written ({type(exc).__name__}: {exc}); retry with `edgetl report {folder}`", err=True
        )
        return None
    log_to(as_json)(f"report: {html_path}")
    return html_path
