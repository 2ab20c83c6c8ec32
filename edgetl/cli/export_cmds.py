"""CLI commands of the export stage: `edgetl export`, `edgetl validate`, `edgetl labels`.

They parse flags, build an ExportOptions, call the library and print; errors are
EdgetlErrors that the group turns into `error: ...` and an exit code (3: gate failed).
"""

from __future__ import annotations

import json

import click

FLAG_FORMATS = {"float32": "tflite-float32", "float16": "tflite-float16", "dynamic": "tflite-dynamic",
                "int8": "tflite-int8", "onnx": "onnx", "onnx_int8": "onnx-int8"}


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=1, default=str))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--int8", is_flag=True, help="Full-integer TFLite (calibrated on the training split).")
@click.option("--float16", is_flag=True, help="TFLite with float16 weights.")
@click.option("--dynamic", is_flag=True, help="TFLite with int8 weights, float activations.")
@click.option("--float32", is_flag=True, help="Float TFLite.")
@click.option("--onnx", is_flag=True, help="Float ONNX (opset 17).")
@click.option("--onnx-int8", is_flag=True, help="Static QDQ int8 ONNX (onnxruntime.quantization).")
@click.option("--format", "extra", multiple=True, help="Format by name (tflite-int8, onnx, ...); repeatable.")
@click.option("--io", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True,
              help="Input/output dtype of int8 TFLite models.")
@click.option("--calibration", type=int, default=200, show_default=True, help="Calibration images (class-stratified).")
@click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="ONNX int8 calibration method.")
@click.option("--split/--no-split", default=True, show_default=True, help="Also write base models + head.npz.")
@click.option("--archive", is_flag=True, help="Also write BUNDLE.tar.gz.")
@click.option("--out", type=click.Path(), default=None, help="Bundle folder [bundles/<run name>].")
@click.option("--max-drop", type=float, default=1.0, show_default=True, help="Max accuracy drop (pp) of int8 formats.")
@click.option("--no-validate", is_flag=True, help="Skip validation and the gate.")
@click.option("--qat-epochs", type=click.IntRange(0), default=0, help="Quantization-aware training of the head (tflite-qat-int8).")
@click.option("--mediapipe-metadata", is_flag=True,
              help="Write standard TFLite metadata for MediaPipe Tasks (needs scripts/setup_mediapipe_venv.sh).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(run_dir, extra, io, calibration, calibration_method, split, archive, out, max_drop, no_validate,
           qat_epochs, mediapipe_metadata, seed, as_json, **flags):
    """Export RUN_DIR to a bundle of TFLite/ONNX models with a manifest; validate and gate int8."""
    from edgetl.export import ExportOptions, export_run

    formats = tuple(FLAG_FORMATS[k] for k, v in flags.items() if v) + tuple(extra)
    options = ExportOptions(formats=formats or ExportOptions.formats, io=io, calibration=calibration,
                            calibration_method=calibration_method, split=split, archive=archive, out=out,
                            max_drop=max_drop, validate=not no_validate, qat_epochs=qat_epochs, seed=seed,
                            mediapipe_metadata=mediapipe_metadata)
    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    result = export_run(run_dir, options, log)
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"bundle: {result['bundle']}" + (f" (archive {result['archive']})" if result["archive"] else ""))


@click.command()
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Class-per-folder images to validate on.")
@click.option("--max-drop", type=float, default=1.0, show_default=True, help="Max accuracy drop (pp) of int8 formats.")
@click.option("--formats", default=None, help="Comma-separated formats to measure (default: all in the bundle).")
@click.option("--json", "as_json", is_flag=True, help="Print validation.json.")
def validate(bundle_dir, data, max_drop, formats, as_json):
    """Measure every format of BUNDLE_DIR on --data against the float model; exit 3 if int8 drops > --max-drop."""
    from edgetl.runtime.bundle import load_bundle
    from edgetl.validate import check_gate, eval_set_from_folder, table, validate_bundle

    bundle = load_bundle(bundle_dir)
    evalset = eval_set_from_folder(data, bundle.classes, bundle.input_size, bundle.scale, bundle.offset)
    if evalset.skipped:
        click.echo(f"warning: {len(evalset.skipped)} image(s) could not be decoded and were skipped", err=True)
    chosen = [f.strip() for f in formats.split(",") if f.strip()] if formats else None
    report = validate_bundle(bundle_dir, evalset, max_drop, chosen,
                             log=lambda s: click.echo(s, err=True))
    _echo_json(report) if as_json else click.echo(table(report))
    check_gate(report)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print everything embedded (classes, preprocessing) as JSON.")
def labels(model, as_json):
    """Print the class names embedded in a .tflite or .onnx file, one per line."""
    from edgetl.metadata import read_info

    info = read_info(model)
    _echo_json(info) if as_json else click.echo("\n".join(info["classes"]))


COMMANDS = [export, validate, labels]
