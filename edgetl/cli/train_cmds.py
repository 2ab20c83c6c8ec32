"""CLI commands of the train stage: train, layers, classify, features.

`edgetl train` gets one flag per TrainConfig field, generated from `edgetl.train.config.FIELDS`
(bools as --x/--no-x, tuples as comma lists, choices as click.Choice). Every flag defaults
to None, meaning "not given": only flags typed on the command line override the YAML.

Weight initialisation: `--weights imagenet|none|FILE.h5` initialises the base; fine-tuning
(`--fine-tune-layers N`) starts from those pretrained weights and the freshly trained head.
"""

from __future__ import annotations

import typing
from pathlib import Path

import click

from edgetl.cli.common import REPORT_OPTION, echo_json, json_option, log_to, stdout_to_stderr, try_report
from edgetl.models.bases import BASES
from edgetl.train.config import _HINTS, FIELDS

BASE_OPTION = click.option(
    "--base",
    type=click.Choice(list(BASES)),
    default=FIELDS["base"].default,
    show_default=True,
    help="Pretrained base (the registry, edgetl.models.bases).",
)
POOLINGS = ("avg", "max", "none")  # edgetl.models.classifier.feature_model: pooled vectors, or the map
SHORT = {"out": ("-o",)}  # short aliases of config flags; -o means --out in every command


def _flag_type(name: str):
    meta = FIELDS[name].metadata
    if meta.get("choices"):
        return click.Choice(meta["choices"])
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args and typing.get_origin(hint) is not tuple else hint
    return {int: int, float: float}.get(target, str)


def config_options(func):
    """Add `--<field>` for every TrainConfig field (applied in reverse so --help keeps field order)."""
    for name in reversed(list(FIELDS)):
        meta = FIELDS[name].metadata
        flag = name.replace("_", "-")
        if _HINTS[name] is bool:
            func = click.option(f"--{flag}/--no-{flag}", name, default=None, help=meta["help"])(func)
        else:
            default = FIELDS[name].default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            names = (f"--{flag}", *SHORT.get(name, ()))
            func = click.option(
                *names, name, type=_flag_type(name), default=None, help=f"{meta['help']} [default: {shown}]"
            )(func)
    return func


@click.command(short_help="Train a classifier into a run folder (--out).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of TrainConfig keys.")
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue from RUN/checkpoints when it was written by the same config and data.",
)
@REPORT_OPTION
@json_option("Print metrics.json (+ run, report paths) as JSON on stdout; progress goes to stderr.")
@config_options
def train(config_file, resume, make_report, as_json, **flags):
    """Train a classifier: frozen pretrained base + new head (+ optional fine-tuning).

    Writes the run folder --out (model.keras, metrics.json, ...) and report.html/report.md in it.
    """
    from edgetl.train.config import load_config
    from edgetl.train.trainer import train as run_training

    config = load_config(config_file, flags)
    log = log_to(as_json)
    log(f"edgetl train: {config.base} @ {config.input_size}px, weights={config.weights}, data={config.data}")
    with stdout_to_stderr(as_json):
        metrics = run_training(config, resume=resume, echo=log)
    out = Path(config.out).expanduser()
    log(
        f"val_accuracy {metrics['val_accuracy']:.4f}  val_loss {metrics['val_loss']:.4f}  "
        f"train {metrics['num_train']} / val {metrics['num_val']} images  "
        f"skipped {len(metrics['skipped'])}  {metrics['train_seconds']:.1f}s"
    )
    log(f"run folder: {out}")
    html = try_report(out, as_json) if make_report and metrics.get("chief", True) else None  # multi_worker: chief only
    if as_json:
        echo_json({**metrics, "run": str(out), "report": str(html) if html else None})


@click.command(short_help="List a base's layers to pick --cut-layer.")
@BASE_OPTION
@click.option("--input-size", type=int, default=None, help="Input size (default: the base's own).")
@click.option("--include-top", is_flag=True, help="Also list the classifier top's layers (a cut may be inside it).")
@json_option("Print a JSON list of {name, type, output_shape}.")
def layers(base, input_size, include_top, as_json):
    """List the layers of a base (name, type, output shape) to pick --cut-layer.

    A base known to lose accuracy in full int8 gets a `note:` line on stderr saying why.
    """
    from edgetl.models.bases import get_base, layer_table

    spec = get_base(base)
    if spec.int8_note:
        click.echo(f"note: {spec.name}: {spec.int8_note}", err=True)
    rows = layer_table(spec, input_size or spec.default_size, include_top)
    if as_json:
        echo_json([{"name": n, "type": t, "output_shape": list(s)} for n, t, s in rows])
        return
    for name, kind, shape in rows:
        click.echo(f"{name:40s} {kind:28s} {tuple(shape)}")


def read_labels(path: str | None, num_outputs: int) -> list[str]:
    """Label lines for a classifier with num_outputs classes; a leading 'background' line is dropped.

    Without a file, a 1000-way classifier gets the ImageNet names shipped with edgetl.
    """
    from edgetl.errors import ConfigError
    from edgetl.models.imagenet import NUM_CLASSES, imagenet_classes

    if path is None:
        return list(imagenet_classes()) if num_outputs == NUM_CLASSES else [f"class_{k}" for k in range(num_outputs)]
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror}") from None
    if len(lines) == num_outputs + 1:  # TF-slim style: line 0 is 'background', Keras class k is line k+1
        return lines[1:]
    if len(lines) != num_outputs:
        raise ConfigError(
            f"labels file {path} has {len(lines)} lines; the model has {num_outputs} classes "
            f"(expected {num_outputs} or {num_outputs + 1} with 'background' first)"
        )
    return lines


@click.command(short_help="Classify images with a plain ImageNet model.")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@BASE_OPTION
@click.option(
    "--weights", default=FIELDS["weights"].default, show_default=True, help="imagenet or a .h5 file WITH the top."
)
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(dir_okay=False),
    help="One class per line (1000 or 1001) [default: the ImageNet names shipped with edgetl].",
)
@click.option("--top-k", type=click.IntRange(1, 1000), default=5, show_default=True)
@json_option("Print a JSON list of {path, top: [{index, label, score}]} (or {path, error}).")
@click.pass_context
def classify(ctx, images, base, weights, labels_file, top_k, as_json):
    """Classify images with a plain ImageNet model (include_top=True).

    Exit code 1 if any image could not be decoded (an `error:` line each on stderr).
    """
    from edgetl.errors import ImageError
    from edgetl.models.bases import build_base, get_base
    from edgetl.runtime.image import load_rgb, preprocess

    spec = get_base(base)
    model = build_base(spec, spec.default_size, weights, include_top=True)
    labels = read_labels(labels_file, int(model.output.shape[-1]))
    results, failed = [], 0
    for image in images:
        try:
            pixels = load_rgb(image, spec.default_size)
        except ImageError as exc:
            failed += 1
            results.append({"path": image, "error": str(exc)})
            click.echo(f"error: {exc}", err=True)
            continue
        probs = model.predict(preprocess(pixels[None], spec.scale, spec.offset), verbose=0)[0]
        top = [{"index": int(k), "label": labels[k], "score": float(probs[k])} for k in probs.argsort()[::-1][:top_k]]
        results.append({"path": image, "top": top})
        if not as_json:
            click.echo(f"{image}: " + ", ".join(f"{t['label']} ({100 * t['score']:.1f} %)" for t in top))
    if as_json:
        echo_json(results)
    if failed:
        ctx.exit(1)


@click.command(short_help="Extract base features of a dataset into an .npz.")
@click.option("--data", required=True, type=click.Path(), help="Class-per-folder images (flat or train/ + val/).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output .npz file.")
@BASE_OPTION
@click.option("--weights", default=FIELDS["weights"].default, show_default=True, help="imagenet | none | .h5 file.")
@click.option("--input-size", type=int, default=None, help="Default: the base's own size.")
@click.option("--cut-layer", default=None, help="Layer whose output is the feature (see `edgetl layers`).")
@click.option("--pooling", type=click.Choice(POOLINGS), default=POOLINGS[0], show_default=True)
@click.option("--cache-dir", default=FIELDS["cache_dir"].default, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 64),
    default=64,
    show_default=True,
    help="Images per base call (smaller: less memory for large bases and inputs).",
)
@json_option("Print {out, shape, num_images, classes, skipped} as JSON.")
def features(data, out, base, weights, input_size, cut_layer, pooling, cache_dir, batch_size, as_json):
    """Extract base features of every image into an .npz (features, labels, paths, splits, classes)."""
    import numpy as np

    from edgetl.models.bases import build_base, get_base
    from edgetl.runtime import atomic
    from edgetl.train.data import all_images
    from edgetl.train.extract import FeatureExtractor

    spec = get_base(base)
    size = input_size or spec.default_size
    root, classes, items = all_images(data)
    model = build_base(spec, size, weights, cut_layer)
    cache = FeatureExtractor(
        model,
        base_name=spec.name,
        cut_layer=cut_layer,
        input_size=size,
        scale=spec.scale,
        offset=spec.offset,
        pooling=pooling,
        cache_dir=cache_dir,
        batch_size=batch_size,
    )
    with stdout_to_stderr(as_json):
        result = cache.extract([p for p, _, _ in items], 0, desc="features")
    for path, reason in result.skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    kept = [items[i] for i in result.kept]
    arrays = {
        "features": result.features[:, 0].astype(np.float32),
        "labels": np.array([y for _, y, _ in kept], dtype=np.int64),
        "paths": np.array([p.relative_to(root).as_posix() for p, _, _ in kept], dtype=np.str_),
        "splits": np.array([s for _, _, s in kept], dtype=np.str_),
        "classes": np.array(classes, dtype=np.str_),
        "root": np.array(str(root)),
    }
    with atomic.atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    if as_json:
        echo_json(
            {
                "out": str(out),
                "shape": list(arrays["features"].shape),
                "num_images": len(kept),
                "classes": classes,
                "skipped": [{"path": str(p), "reason": r} for p, r in result.skipped],
            }
        )
        return
    click.echo(
        f"wrote {out}: features {arrays['features'].shape} for {len(kept)} images, "
        f"{len(classes)} classes, {len(result.skipped)} skipped"
    )


COMMANDS = [train, layers, classify, features]
