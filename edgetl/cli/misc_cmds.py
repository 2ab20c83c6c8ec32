"""CLI commands around the pipeline: `edgetl doctor` (environment check), `edgetl report`."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of text.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Show installed versions and flag combinations known to break.

    Exit code 0 when no known-broken combination is found, 1 otherwise.
    """
    from edgetl.doctor import current_env, format_text, report

    doc = report(current_env())
    click.echo(json.dumps(doc, indent=2) if as_json else format_text(doc))
    ctx.exit(0 if doc["ok"] else 1)


@click.command("report")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder for report.html, report.md and its images (default: PATH itself).")
def report_cmd(path: str, out: str | None) -> None:
    """Write report.html (self-contained) and report.md for a run folder or a bundle folder."""
    from edgetl.report import write_report

    html_path, md_path = write_report(path, out)
    click.echo(f"wrote {html_path}")
    click.echo(f"wrote {md_path}")


COMMANDS = [doctor, report_cmd]
