"""CLI commands of the device stage that manage a bundle: update-head, rollback-head, bench.

They only parse flags and call edgetl.runtime (imported inside each command), so none of
them pulls in TensorFlow: this is what runs on the Pi / Jetson.
"""

from __future__ import annotations

import dataclasses
import sys

import click

from edgetl.cli.common import THREADS_OPTION as THREADS
from edgetl.cli.common import echo_json, formats_option, given, json_option, with_default
from edgetl.runtime.imprint import DEFAULT_BUDGET
from edgetl.runtime.retrain import RetrainConfig

RETRAIN = RetrainConfig(data="")  # its defaults, shown in --help


@click.command("update-head", short_help="Retrain a bundle's head on the device, or add a class from a few images.")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--data", type=click.Path(), default=None, help="Folder of <class>/<images> to retrain on.")
@click.option(
    "--add-class",
    "add",
    type=(str, click.Path(file_okay=False)),
    default=None,
    metavar="NAME DIR",
    help="Add class NAME from the images in DIR (5 are enough) by weight imprinting, no training.",
)
@click.option(
    "--imprint-budget",
    type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
    default=None,
    help="Share of old-class images the new class may take (higher: found more often, old classes lose "
    f"more) [default: {DEFAULT_BUDGET}].",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=with_default("Epochs.", RETRAIN.epochs))
@click.option(
    "--holdout",
    type=float,
    default=None,
    help=with_default("Fraction held out per class to compare heads.", RETRAIN.holdout),
)
@click.option("--force", is_flag=True, help="Swap in the new head even if it is less accurate.")
@click.option("--allow-new-classes", is_flag=True, help="Accept class folders the current head does not know.")
@click.option(
    "--hidden",
    type=click.IntRange(min=0),
    default=None,
    help=with_default("Hidden units (0: softmax regression).", RETRAIN.hidden),
)
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=with_default("Learning rate.", RETRAIN.learning_rate),
)
@click.option(
    "--seed", type=int, default=None, help=with_default("Seed of the holdout split and initialisation.", RETRAIN.seed)
)
@click.option(
    "--base-format", default=None, help="Base model to extract features with (default: base-tflite-int8 or best)."
)
@THREADS
@json_option("Print the result (accuracies, counts, head record) as JSON.")
def update_head_cmd(
    bundle,
    data,
    add,
    imprint_budget,
    epochs,
    holdout,
    force,
    allow_new_classes,
    hidden,
    learning_rate,
    seed,
    base_format,
    threads,
    as_json,
):
    """Retrain BUNDLE's head on the device (numpy) and swap it in if it is at least as accurate;
    or, with --add-class, add a class from a few images (weight imprinting) if the old classes keep
    their accuracy on the device's cached images.

    Exit code 3 when the new head is less accurate on the held-out images (kept the current one).
    """
    from edgetl.errors import ConfigError
    from edgetl.runtime.add_class import AddClass, add_class
    from edgetl.runtime.retrain import update_head

    if (data is None) == (add is None):
        raise ConfigError("give --data DIR (retrain) or --add-class NAME DIR (add a class), one of the two")

    cfg = RetrainConfig(
        data=data or "",
        force=force,
        allow_new_classes=allow_new_classes,
        **given(
            epochs=epochs,
            holdout=holdout,
            hidden=hidden,
            learning_rate=learning_rate,
            seed=seed,
            threads=threads,
            base_format=base_format,
        ),
    )
    if add is not None:
        result = add_class(bundle, AddClass(add[0], add[1], **given(budget=imprint_budget)), cfg, err=sys.stderr)
    else:
        result = update_head(bundle, cfg, err=sys.stderr)  # looked up now: the default was bound at import
    if as_json:
        echo_json(dataclasses.asdict(result))
    else:
        _print_update(result, add[0] if add else None)


def _print_update(result, added: str | None) -> None:
    click.echo(
        f"features: {result.new_images} new, {result.cached_images} cached, {result.failed_images} failed; "
        f"train {result.num_train}, holdout {result.num_holdout}"
    )
    record = result.record
    if added is not None:
        old = (
            f"{record['old_before']:.1%} -> {record['old_after']:.1%} on {record['old_images']} cached images"
            if record["old_images"]
            else "no cached images to check them on"
        )
        click.echo(
            f"added {added}: leave-one-out accuracy {record['new_class_loo_accuracy']:.0%} of "
            f"{record['shots']} images; old classes {old}"
        )
    else:
        click.echo(f"held-out accuracy: current {result.current_accuracy:.1%}, new {result.new_accuracy:.1%}")
    click.echo(f"swapped in device head {record['file']} ({', '.join(result.classes)})")


@click.command("rollback-head", short_help="Go back to a bundle's previous head.")
@click.argument("bundle", type=click.Path(file_okay=False))
@json_option("Print {head: record of the head now in use, or null for the exported one} as JSON.")
def rollback_head_cmd(bundle, as_json):
    """Point BUNDLE back to its previous head (or the exported one)."""
    from edgetl.runtime import headstore
    from edgetl.runtime.bundle import load_bundle

    loaded = load_bundle(bundle)
    with headstore.exclusive(loaded):
        record = headstore.rollback(loaded)
    if as_json:
        echo_json({"head": record})
        return
    click.echo(f"now using {'device head ' + record['file'] if record else 'the exported head (fused model)'}")


@click.command("bench", short_help="Size, accuracy, latency and memory per format.")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--data", default=None, type=click.Path(), help="Folder of <class>/<images> for accuracy.")
@THREADS
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Timed calls per format.")
@formats_option("Only these formats.")
@json_option("Print JSON instead of a table.")
def bench_cmd(bundle, data, threads, runs, formats, as_json):
    """Size, accuracy, latency, cold start and peak memory of each format in BUNDLE."""
    from edgetl.runtime import bench

    results = bench.bench_bundle(bundle, data, threads, runs, list(formats) or None)
    echo_json(results) if as_json else click.echo(bench.table(results))


COMMANDS = [update_head_cmd, rollback_head_cmd, bench_cmd]
