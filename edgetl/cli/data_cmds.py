"""CLI command of the data stage: `edgetl check-data` (edgetl.train.data_health)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgetl.cli.common import echo_json, json_option, log_to, stdout_to_stderr, try_report
from edgetl.models.bases import BASES
from edgetl.train.config import FIELDS


@click.command("check-data", short_help="Duplicates, likely mislabelled images, imbalance, undecodable files.")
@click.option("--data", required=True, type=click.Path(), help="Class-per-folder images (flat or train/ + val/).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML of TrainConfig keys (base, ...).")
@click.option("--base", type=click.Choice(list(BASES)), default=None, help="Base whose features are compared.")
@click.option("--weights", default=None, help="imagenet | none | .h5 file [default: the config's].")
@click.option("--input-size", type=int, default=None, help="Input size [default: the config's].")
@click.option("--cache-dir", default=None, help=f"Feature cache [default: {FIELDS['cache_dir'].default}].")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Write data_health.json and report.html (thumbnails) into this folder.",
)
@json_option("Print data_health.json on stdout; progress goes to stderr.")
def check_data(data, config_file, base, weights, input_size, cache_dir, out, as_json):
    """Check a dataset before (or after) training: exact and near duplicates across train and val,
    likely mislabelled images (confident learning on out-of-fold predictions), class imbalance and
    undecodable files. It uses the base features of `edgetl train`'s cache, so after a training run
    with the same base it takes seconds.
    """
    from edgetl.train.config import load_config
    from edgetl.train.data_health import check_folder, summary_line

    given = {"data": data, "base": base, "weights": weights, "input_size": input_size, "cache_dir": cache_dir}
    config = load_config(config_file, given)
    log = log_to(as_json)
    with stdout_to_stderr(as_json):
        health = check_folder(config, log)
    log(summary_line(health))
    if out is not None:
        from edgetl.runtime import atomic

        atomic.write_text(Path(out) / "data_health.json", json.dumps(health, indent=1))
        try_report(out, as_json)
    if as_json:
        echo_json(health)
        return
    for issue in health["label_issues"][:10]:
        click.echo(
            f"likely mislabelled: {issue['path']} ({issue['label']}; looks like {issue['predicted']} "
            f"{issue['confidence']:.2f})"
        )
    for dup in health["exact_duplicates"][:10] + health["near_duplicates"][:10]:
        click.echo(f"duplicate: {dup.get('a', dup.get('train'))} ~ {dup.get('b', dup.get('val'))}")


COMMANDS = [check_data]
