"""CLI commands of the export stage: `edgetl export`, `edgetl validate`, `edgetl labels`.

They parse flags, build an ExportOptions, call the library and print; errors are
EdgetlErrors that the group turns into `error: ...` and an exit code (3: gate failed).
A bundle whose gate failed is still written, and so is its report: it shows why.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli.common import (
    REPORT_OPTION,
    echo_json,
    formats_option,
    given,
    json_option,
    log_to,
    try_report,
    with_default,
)
from edgetl.export.options import IO_TYPES, METHODS, ExportOptions
from edgetl.runtime.formats import FORMATS

FLAG_FORMATS = {fmt.flag: name for name, fmt in FORMATS.items() if fmt.flag}
DEFAULTS = ExportOptions()  # flags default to None ("not given"), so these defaults live only in ExportOptions


def format_flags(func):
    """`--int8`, `--onnx-int8`, ...: one flag per format of the table that has one."""
    for flag, name in reversed(list(FLAG_FORMATS.items())):
        func = click.option(
            f"--{flag}", flag.replace("-", "_"), is_flag=True, default=False, help=FORMATS[name].description
        )(func)
    return func


def _finish_bundle(bundle: Path, make_report: bool, archive: bool, as_json: bool) -> tuple[Path | None, Path | None]:
    """Report first, then the archive, so BUNDLE.tar.gz carries report.html too."""
    from edgetl.export.exporter import write_archive

    html = try_report(bundle, as_json) if make_report else None
    return html, (write_archive(bundle) if archive else None)


@click.command(short_help="Export a run folder to a TFLite/ONNX bundle.")
@click.argument("run_dir", type=click.Path(file_okay=False))
@format_flags
@formats_option("Format by name, added to the flags above.")
@click.option(
    "--io",
    type=click.Choice(IO_TYPES),
    default=None,
    help=with_default("Input/output dtype of int8 TFLite models.", DEFAULTS.io),
)
@click.option(
    "--calibration",
    type=int,
    default=None,
    help=with_default("Calibration images (class-stratified).", DEFAULTS.calibration),
)
@click.option(
    "--calibration-method",
    type=click.Choice(METHODS),
    default=None,
    help=with_default("ONNX int8 calibration method.", DEFAULTS.calibration_method),
)
@click.option(
    "--split/--no-split", default=None, help=with_default("Also write base models + head.npz.", DEFAULTS.split)
)
@click.option("--archive", is_flag=True, help="Also write BUNDLE.tar.gz.")
@click.option("--out", "-o", type=click.Path(), default=None, help="Bundle folder [default: bundles/<run name>].")
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help=with_default("Max accuracy drop (pp) of int8 formats.", DEFAULTS.max_drop),
)
@click.option("--no-validate", is_flag=True, help="Skip validation and the gate.")
@click.option(
    "--qat-epochs",
    type=click.IntRange(0),
    default=None,
    help="Quantization-aware training of the head (tflite-qat-int8) [default: off, or the run's config].",
)
@click.option(
    "--mediapipe-metadata",
    is_flag=True,
    help="Write standard TFLite metadata for MediaPipe Tasks (needs scripts/setup_mediapipe_venv.sh).",
)
@click.option("--seed", type=int, default=None, help=with_default("Seed of the calibration sample.", DEFAULTS.seed))
@REPORT_OPTION
@json_option("Print {bundle, manifest, validation, archive, report} as JSON; logs go to stderr.")
def export(
    run_dir,
    formats,
    io,
    calibration,
    calibration_method,
    split,
    archive,
    out,
    max_drop,
    no_validate,
    qat_epochs,
    mediapipe_metadata,
    seed,
    make_report,
    as_json,
    **flags,
):
    """Export RUN_DIR to a bundle of TFLite/ONNX models with a manifest; validate and gate int8.

    Exit code 3 when an int8 format drops more than --max-drop; the bundle, its
    validation.json and its report are written anyway.
    """
    from edgetl.errors import GateError
    from edgetl.export.exporter import export_run

    chosen = tuple(FLAG_FORMATS[k.replace("_", "-")] for k, v in flags.items() if v) + formats
    options = ExportOptions(
        **given(
            formats=chosen or None,
            io=io,
            calibration=calibration,
            calibration_method=calibration_method,
            split=split,
            out=out,
            max_drop=max_drop,
            qat_epochs=qat_epochs,
            seed=seed,
        ),
        archive=False,
        validate=not no_validate,
        mediapipe_metadata=mediapipe_metadata,
    )
    try:
        result = export_run(run_dir, options, log_to(as_json))
    except GateError as exc:  # the bundle is complete: report, archive and JSON as usual, then exit 3
        if exc.result is None:
            raise
        _print_result(exc.result, *_finish_bundle(Path(exc.result["bundle"]), make_report, archive, as_json), as_json)
        raise
    _print_result(result, *_finish_bundle(Path(result["bundle"]), make_report, archive, as_json), as_json)


def _print_result(result: dict, html: Path | None, tarball: Path | None, as_json: bool) -> None:
    result = {**result, "archive": str(tarball) if tarball else None, "report": str(html) if html else None}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"bundle: {result['bundle']}" + (f" (archive {result['archive']})" if result["archive"] else ""))


@click.command(short_help="Measure a bundle's formats on --data; gate int8.")
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Class-per-folder images to validate on.")
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help=with_default("Max accuracy drop (pp) of int8 formats.", DEFAULTS.max_drop),
)
@formats_option("Formats to measure (default: all in the bundle; split bundles also have base-<format>).")
@REPORT_OPTION
@json_option("Print validation.json on stdout; progress goes to stderr.")
def validate(bundle_dir, data, max_drop, formats, make_report, as_json):
    """Measure every format of BUNDLE_DIR on --data against the float model.

    Writes validation.json and report.html/report.md into the bundle. Exit code 3 if an
    int8 format drops more than --max-drop percentage points (the report is written first).
    """
    from edgetl.export.measure import eval_set_from_folder
    from edgetl.export.validate import check_gate, table, validate_bundle
    from edgetl.runtime.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    evalset = eval_set_from_folder(data, bundle.classes, bundle.input_size, bundle.scale, bundle.offset)
    if evalset.skipped:
        click.echo(f"warning: {len(evalset.skipped)} image(s) could not be decoded and were skipped", err=True)
        click.echo("".join(f"skipped {reason}\n" for reason in evalset.skipped), err=True, nl=False)
    max_drop = DEFAULTS.max_drop if max_drop is None else max_drop
    report = validate_bundle(
        bundle_dir, evalset, max_drop, list(formats) or None, log=lambda s: click.echo(s, err=True)
    )
    echo_json(report) if as_json else click.echo(table(report))
    if make_report:
        try_report(bundle_dir, as_json)
    check_gate(report)


@click.command(short_help="Print the class names embedded in a model file.")
@click.argument("model", type=click.Path(dir_okay=False))
@json_option("Print everything embedded (classes, preprocessing) as JSON.")
def labels(model, as_json):
    """Print the class names embedded in a .tflite or .onnx file, one per line."""
    from edgetl.export.metadata import read_info

    info = read_info(model)
    echo_json(info) if as_json else click.echo("\n".join(info["classes"]))


COMMANDS = [export, validate, labels]
