"""`edgetl` command line: parse flags, build a config, call the library, map errors to exit codes.

Exit codes (edgetl.cli.common.EXIT_CODES, shown by `edgetl --help`): 0 success; 1 some items
failed (e.g. images that could not be classified); 2 a usage or input error (EdgetlError, and
click's own bad-flag errors); 3 the accuracy gate failed or update-head refused the new head;
70 internal error (a bug: one line, the traceback only with --debug); 130 interrupted;
141 stdout closed early (`edgetl run --json | head`).

Command modules import only click at import time; TensorFlow is imported inside the
training commands, so `edgetl run` on a device never needs it.
"""

from __future__ import annotations

import os
import sys

import click

from edgetl import __version__
from edgetl.cli.common import INTERNAL_ERROR, exit_code_epilog
from edgetl.errors import EdgetlError

# click's control flow (ctx.exit, usage errors, abort) travels as exceptions: never "internal".
_CLICK_FLOW = (click.exceptions.Exit, click.exceptions.Abort, click.ClickException)
# What the `train` extra adds; a device install has none of it.
WORKSTATION_MODULES = {
    "tensorflow",
    "tf_keras",
    "keras",
    "tensorflow_model_optimization",
    "tf2onnx",
    "onnx",
    "matplotlib",
    "tensorboard",
}


class EdgetlGroup(click.Group):
    """Turns EdgetlError into `error: <one line>` and an exit code; a bug into one line + exit 70.

    With --debug (or EDGETL_DEBUG=1) every exception propagates with its traceback.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _CLICK_FLOW:
            raise
        except EdgetlError as exc:
            if _debug(ctx):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `edgetl run ... | head`: the reader left; not an error of ours
            _silence_stdout()
            ctx.exit(141)  # what a process killed by SIGPIPE reports
        except Exception as exc:  # noqa: BLE001 - the last line of defence, see the class docstring
            if _debug(ctx):
                raise
            if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in WORKSTATION_MODULES:
                # a workstation command on a device install (numpy + an interpreter): say what to install
                click.echo(
                    f"error: `edgetl {ctx.invoked_subcommand}` runs on the workstation and needs {exc.name}, "
                    'which this install lacks: pip install ".[train]" (a device install has run, bench, '
                    "update-head and rollback-head)",
                    err=True,
                )
                ctx.exit(2)
            click.echo(
                f"error: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _silence_stdout() -> None:
    """After EPIPE, Python would complain again while flushing stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests): nothing to silence
        pass


@click.group(cls=EdgetlGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=exit_code_epilog())
@click.version_option(__version__, prog_name="edgetl")
@click.option("--debug", is_flag=True, envvar="EDGETL_DEBUG", help="Show full tracebacks (or set EDGETL_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Train image classifiers on a workstation, deploy them to a Raspberry Pi or a Jetson.

    \b
    Workstation:  check-data -> train -> export (TFLite/ONNX bundle, int8 gated) -> validate -> report
    Device:       run, bench, update-head, rollback-head (no TensorFlow needed)
    Every command takes -h; most take --json for scripts.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    from edgetl.cli import data_cmds, device_cmds, export_cmds, misc_cmds, run_cmds, train_cmds

    for module in (train_cmds, data_cmds, export_cmds, run_cmds, device_cmds, misc_cmds):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
