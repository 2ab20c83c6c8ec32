"""CLI command of the device: `edgetl run` (files, folders, globs, stdin, cameras; --self-test).

It only parses flags and calls edgetl.runtime (imported inside the command), so it never pulls
in TensorFlow: this is what runs on the Pi / Jetson.
"""

from __future__ import annotations

import sys

import click

from edgetl.cli.common import FORMAT_HELP, echo_json, given, json_option, with_default
from edgetl.cli.common import THREADS_OPTION as THREADS


def open_world_options(func):
    """--unknown, --unknown-threshold and the monitor's flags (defaults: edgetl.runtime.monitor.MonitorConfig)."""
    from edgetl.runtime.monitor import MonitorConfig

    default = MonitorConfig()
    options = [
        click.option(
            "--unknown",
            type=click.Choice(["on", "off"]),
            default="on",
            show_default=True,
            help="Say `unknown` for images unlike every class (needs the bundle's open-world statistics).",
        ),
        click.option(
            "--unknown-threshold",
            type=float,
            default=None,
            help="Unknown above this score (see unknown_score in --json) [default: the bundle's, 95 % of "
            "held-out training images accepted].",
        ),
        click.option(
            "--save-uncertain",
            type=click.Path(file_okay=False),
            default=None,
            help="Keep images that are unknown or nearly tied (top-2 margin) here, each with a JSON sidecar.",
        ),
        click.option(
            "--save-max",
            type=click.IntRange(min=1),
            default=None,
            help=with_default("Most images kept (oldest dropped first).", default.save_max),
        ),
        click.option(
            "--save-max-mb",
            type=click.FloatRange(min=0.01),
            default=None,
            help=with_default("Most megabytes kept.", default.save_max_mb),
        ),
        click.option(
            "--uncertain-margin",
            "margin",
            type=click.FloatRange(0, 1),
            default=None,
            help=with_default("Top-2 probability margin below which an image is uncertain.", default.margin),
        ),
        click.option(
            "--drift/--no-drift",
            default=None,
            help=with_default("Warn when the unknown or low-confidence rate drifts.", default.drift),
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("run", short_help="Classify images or camera frames with a bundle.")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1)
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=1, show_default=True, help="Labels per image.")
@THREADS
@click.option(
    "--format",
    "fmt",
    default=None,
    metavar="FORMAT",
    help=f"Model format (default: best available, tflite-int8 first): {FORMAT_HELP}.",
)
@json_option("One JSON object per line (JSON lines), errors on stderr.")
@click.option(
    "--camera",
    default=None,
    metavar="SPEC",
    help="Camera: device index (0, 1, ...), 'picamera' (Picamera2), or with OpenCV a device path "
    "(/dev/video2), a video file (clip.mp4) or a stream URL (rtsp://host/stream).",
)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N camera frames.")
@click.option(
    "--fps-every",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between FPS reports on stderr (camera; 0: off).",
)
@click.option(
    "--self-test", is_flag=True, help="Check decoding and the models on the bundle's golden images, then exit."
)
@open_world_options
@click.pass_context
def run_cmd(
    ctx,
    bundle,
    sources,
    top_k,
    threads,
    fmt,
    as_json,
    camera,
    max_frames,
    fps_every,
    self_test,
    unknown,
    unknown_threshold,
    **watch,
):
    """Classify images (files, folders, globs, '-' = paths on stdin) or camera frames with BUNDLE.

    With --camera, each classification takes a live camera's newest frame (older ones are
    skipped and counted; a video file is read frame by frame), and a head swapped in by
    update-head or rollback-head is used within 2 s.

    With --self-test, checks instead that this device decodes the bundle's golden images and
    runs its models as the workstation did (exit code 1 if not).

    A bundle with open-world statistics reports calibrated scores and says `unknown` (JSON:
    "label": null, "unknown": true) for images unlike its classes; drift of the unknown and
    low-confidence rates is a `warning: drift:` line. --save-uncertain keeps the images to label.

    Exit code 1 if any image could not be classified (each gets an `error:` line on stderr).
    """
    from edgetl.errors import ConfigError

    if self_test:
        ctx.exit(_self_test(bundle, fmt, as_json))
    if camera is None and not sources:
        raise ConfigError(
            "give images, folders, globs or '-' (paths on stdin), or --camera N|picamera|/dev/videoN|FILE|URL"
        )
    if camera is not None and sources:
        raise ConfigError("use either image SOURCEs or --camera, not both")
    options = {"unknown": unknown == "on", "unknown_threshold": unknown_threshold}
    summary = _classify(bundle, sources, camera, fmt, threads, options, watch, top_k, as_json, max_frames, fps_every)
    if summary.failed and camera is None:
        click.echo(f"{summary.ok} classified, {summary.failed} failed", err=True)
        ctx.exit(1)


def _classify(bundle, sources, camera, fmt, threads, options, watch, top_k, as_json, max_frames, fps_every):
    from edgetl.runtime import cameras, headwatch, paths, runner
    from edgetl.runtime.monitor import MonitorConfig, RunMonitor
    from edgetl.runtime.predictor import open_predictor

    # made before the predictor opens, so that a head swapped in meanwhile is seen
    head_watch = headwatch.HeadWatch(bundle, fmt, threads, **options) if camera is not None else None
    predictor = open_predictor(bundle, fmt, threads, **options)
    monitor = RunMonitor(MonitorConfig(**given(**watch)), predictor, sys.stdout, sys.stderr, as_json)
    if camera is None:
        iterator = paths.iter_paths(sources)
        return runner.run_paths(predictor, iterator, sys.stdout, sys.stderr, top_k, as_json, monitor=monitor)
    source = cameras.open_camera(camera)
    return runner.run_camera(
        predictor,
        source,
        sys.stdout,
        sys.stderr,
        top_k,
        as_json,
        max_frames,
        fps_every,
        head_watch=head_watch,
        monitor=monitor,
    )


def _self_test(bundle: str, fmt: str | None, as_json: bool) -> int:
    from edgetl.runtime.bundle import load_bundle
    from edgetl.runtime.selftest import run_self_test

    result = run_self_test(load_bundle(bundle), [fmt] if fmt else None)
    echo_json(result.to_json()) if as_json else click.echo("\n".join(result.lines()))
    return 0 if result.passed else 1


COMMANDS = [run_cmd]
