"""`edgetl` command line: parse flags, build a config, call the library, map errors to exit codes.

Exit codes: 0 success; 1 some items failed (e.g. images that could not be classified);
2 a usage or input error (EdgetlError, bad flags); 3 the accuracy gate failed (validate);
130 interrupted (Ctrl-C). Tracebacks are shown only with --debug.

Command modules import only click at import time; TensorFlow is imported inside the
training commands, so `edgetl run` on a device never needs it.
"""

from __future__ import annotations

import sys

import click

from edgetl import __version__
from edgetl.errors import EdgetlError


class EdgetlGroup(click.Group):
    """Turns EdgetlError into `error: <one line>` and an exit code, unless --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgetlError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=EdgetlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetl")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Train image classifiers on a workstation, deploy them to a Raspberry Pi or a Jetson."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    from edgetl.cli import device_cmds, export_cmds, misc_cmds, train_cmds

    for module in (train_cmds, export_cmds, device_cmds, misc_cmds):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
