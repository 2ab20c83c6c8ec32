"""CLI commands around the pipeline: `edgetl doctor` (environment check), `edgetl report`."""

from __future__ import annotations

import click

from edgetl.cli.common import echo_json, json_option


@click.command(short_help="Check installed versions for known-broken combinations.")
@json_option("Print {python, packages, environment, ok, findings} as JSON.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Show installed versions and flag combinations known to break.

    Exit code 0 when no known-broken combination is found, 1 otherwise.
    """
    from edgetl.doctor import current_env, format_text, report

    doc = report(current_env())
    echo_json(doc) if as_json else click.echo(format_text(doc))
    ctx.exit(0 if doc["ok"] else 1)


@click.command("report", short_help="Write report.html + report.md for a run or bundle.")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder for report.html, report.md and its images (default: PATH itself).")
@json_option("Print {html, md} paths as JSON.")
def report_cmd(path: str, out: str | None, as_json: bool) -> None:
    """Write report.html (self-contained) and report.md for a run folder or a bundle folder.

    train, export and validate write these on their own (unless --no-report); use this
    command for an older folder or a different --out.
    """
    from edgetl.report.writer import write_report

    html_path, md_path = write_report(path, out)
    if as_json:
        echo_json({"html": str(html_path), "md": str(md_path)})
        return
    click.echo(f"wrote {html_path}")
    click.echo(f"wrote {md_path}")


COMMANDS = [doctor, report_cmd]
