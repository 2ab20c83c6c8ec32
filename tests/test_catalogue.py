"""The bad-input catalogue, end to end through the real CLI (docs/bad_inputs.md is this table).

Each Case builds its bad input in tmp_path (nothing binary is stored in the repository), runs
one `edgetl` command with click's CliRunner (catch_exceptions=False: an escaping exception
fails the test) and checks the exit code, that the expected `error: ...` / `skipped ...` /
`warning: ...` line names the problem, and that no traceback reaches the user. One case runs
a subprocess with --debug and expects the traceback.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main

from bundle_fixture import cached_bundle, colour_image
from bundle_fixture import make_dataset as make_bundle_data
from conftest import make_dataset

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------- bad files
def _jpeg_bytes(size: int = 40) -> bytes:
    buf = io.BytesIO()
    colour_image("red", np.random.default_rng(0), size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(path: Path) -> Path:
    """A valid PNG header claiming 50000 x 50000 pixels (2.5 gigapixels) over a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )
    return path


def red(size: int = 40) -> Image.Image:
    return colour_image("red", np.random.default_rng(1), size)


BAD_FILES: dict[str, Callable[[Path], None]] = {  # name -> writer; each must be reported, never fatal
    "corrupt.jpg": lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4),
    "truncated.jpg": lambda p: p.write_bytes(_jpeg_bytes()[:200]),
    "truncated.png": lambda p: p.write_bytes(_png_bytes(red())[:150]),
    "empty.jpg": lambda p: p.write_bytes(b""),
    "notes.jpg": lambda p: p.write_text("this is a text file, not a photo\n"),
    "bomb.png": bomb_png,
    "loop.jpg": lambda p: os.symlink(p, p),  # a symlink to itself
    "fifo.jpg": lambda p: os.mkfifo(p),
}


def write_odd_images(folder: Path) -> dict[str, Path]:
    """Unusual but valid images: each must classify (exit 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = red(48)
    out = {}
    out["png_named.jpg"] = folder / "png_named.jpg"
    rgb.save(out["png_named.jpg"], "PNG")  # wrong extension
    out["cmyk.jpg"] = folder / "cmyk.jpg"
    rgb.convert("CMYK").save(out["cmyk.jpg"])
    out["gray16.png"] = folder / "gray16.png"
    Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).save(out["gray16.png"])
    out["rgba.png"] = folder / "rgba.png"
    rgb.convert("RGBA").save(out["rgba.png"])
    out["palette.png"] = folder / "palette.png"
    rgb.convert("P", palette=Image.ADAPTIVE).save(out["palette.png"])
    exif = Image.Exif()
    exif[0x0112] = 6
    out["exif.jpg"] = folder / "exif.jpg"
    rgb.rotate(90, expand=True).save(out["exif.jpg"], exif=exif.tobytes())
    out["one_pixel.png"] = folder / "one_pixel.png"
    Image.new("RGB", (1, 1), (200, 40, 40)).save(out["one_pixel.png"])
    out["animated.gif"] = folder / "animated.gif"
    frames = [rgb.convert("P"), colour_image("blue", np.random.default_rng(2), 48).convert("P")]
    frames[0].save(out["animated.gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out


# ---------------------------------------------------------------------------- context
@dataclass
class Ctx:
    tmp: Path
    factory: pytest.TempPathFactory

    def bundle(self) -> Path:
        dest = self.tmp / "bundle"
        if not dest.exists():
            shutil.copytree(cached_bundle(self.factory), dest)
        return dest

    def manifest(self, change: Callable[[dict], None]) -> Path:
        bundle = self.bundle()
        doc = json.loads((bundle / "manifest.json").read_text())
        change(doc)
        (bundle / "manifest.json").write_text(json.dumps(doc))
        return bundle

    def rehash(self, name: str) -> Path:
        """Point the manifest's sha256 at a replaced file, so the loader (not the hash check) meets it."""
        from edgetl.runtime.atomic import sha256_file

        def change(doc):
            for entry in doc["models"].values():
                if entry["file"] == name:
                    entry["sha256"] = sha256_file(self.bundle() / name)

        return self.manifest(change)

    def image(self, name: str) -> Path:
        path = self.tmp / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in BAD_FILES:
            BAD_FILES[name](path)
        else:
            path = write_odd_images(self.tmp / "in")[name]
        return path

    def run_folder(self) -> Path:
        """A real run folder (tests/export_fixtures.py) with run.json's sha256 "files" map."""
        from edgetl.train.run_folder import file_digests

        from export_fixtures import make_run

        run = make_run(self.tmp / "r", classes=("red", "green"), per_class=3, val_per_class=1)
        info = json.loads((run / "run.json").read_text())
        info["files"] = file_digests(run)
        (run / "run.json").write_text(json.dumps(info))
        return run

    def dataset(self, **kw) -> Path:
        return make_dataset(self.tmp, **{"classes": ("red", "green"), "per_class": 4, "size": 32, **kw})

    def config(self, text: str) -> Path:
        path = self.tmp / "config.yaml"
        path.write_text(text)
        return path


TRAIN = [
    "--weights",
    "none",
    "--input-size",
    "32",
    "--cut-layer",
    "Conv1_relu",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--learning-rate",
    "0.03",
]


def train_args(ctx: Ctx, data: Path) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        *TRAIN,
        "--out",
        str(ctx.tmp / "out run"),
        "--cache-dir",
        str(ctx.tmp / "cache"),
    ]


def train_with_every_bad_file(ctx: Ctx) -> list[str]:
    data = ctx.dataset(per_class=5)
    data = data.rename(data.parent / "dätä sét")  # unicode + spaces all the way down
    for name, write in BAD_FILES.items():
        write(data / "red" / name)
    (data / "red" / "x.jpg").mkdir()  # a folder named like an image
    (data / "green" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: never listed, never reported
    return train_args(ctx, data)


def class_with_only_hidden_files(ctx: Ctx) -> list[str]:
    data = ctx.dataset()
    (data / "blue").mkdir()
    (data / "blue" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (data / "blue" / "._red_000.png").write_bytes(b"\0")
    return train_args(ctx, data)


def empty_class(ctx: Ctx) -> list[str]:
    data = ctx.dataset()
    (data / "blue").mkdir()
    return train_args(ctx, data)


def update_head_data(ctx: Ctx, bad: bool = True) -> Path:
    data = make_bundle_data(ctx.tmp / "device data", {"blue": 6, "red": 6}, seed=5)
    if bad:
        for name in ("corrupt.jpg", "empty.jpg", "notes.jpg", "fifo.jpg", "bomb.png"):
            BAD_FILES[name](data / "red" / name)
    return data


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def _run_json(run: Path, **changes) -> Path:
    info = json.loads((run / "run.json").read_text())
    info.update(changes)
    (run / "run.json").write_text(json.dumps(info))
    return run


# ------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    name: str
    command: str
    setup: Callable[[Ctx], list]  # -> CLI arguments after `edgetl`
    exit_code: int
    fragments: tuple[str, ...]  # each must appear in the output
    absent: tuple[str, ...] = ()  # none may appear
    root_skips: bool = False  # needs file permissions that root ignores
    never_created: str | None = None  # a file (in tmp_path) the bad input must not manage to create


def _image_case(name: str, exit_code: int, fragment: str) -> Case:
    fragments = ("error: ", f"/in/{name}: ", fragment) if exit_code else (fragment,)
    return Case(f"run-{name}", "run", lambda c: ["run", c.bundle(), c.image(name)], exit_code, fragments)


def _unicode_image(c: Ctx) -> list:
    folder = c.tmp / "fötös with spaces" / "ünï cödé"
    folder.mkdir(parents=True)
    red().save(folder / "ça va.png")
    return ["run", c.bundle(), folder / "ça va.png"]


def _chmod000(c: Ctx) -> list:
    path = c.image("png_named.jpg")
    path.chmod(0)
    return ["run", c.bundle(), path]


def _symlinked_bad_manifest(c: Ctx) -> list:
    return [
        "run",
        c.manifest(lambda d: d["models"]["tflite-int8"].update(file="../../etc/passwd")),
        c.image("rgba.png"),
    ]


CASES = [
    # ---- images given to `edgetl run`: bad ones -> `error: PATH: reason`, exit 1; odd-but-valid -> classified
    _image_case("corrupt.jpg", 1, "corrupt.jpg: "),
    _image_case("truncated.jpg", 1, "Truncated File Read"),
    _image_case("truncated.png", 1, "truncated.png: cannot"),
    _image_case("empty.jpg", 1, "empty file (0 bytes)"),
    _image_case("notes.jpg", 1, "not an image Pillow can read"),
    _image_case("bomb.png", 1, "decompression bomb"),
    _image_case("loop.jpg", 1, "loop.jpg: cannot open"),
    _image_case("fifo.jpg", 1, "not a regular file"),
    _image_case("png_named.jpg", 0, "png_named.jpg  red"),
    _image_case("cmyk.jpg", 0, "cmyk.jpg  red"),
    _image_case("gray16.png", 0, "gray16.png  "),
    _image_case("rgba.png", 0, "rgba.png  red"),
    _image_case("palette.png", 0, "palette.png  red"),
    _image_case("exif.jpg", 0, "exif.jpg  red"),
    _image_case("one_pixel.png", 0, "one_pixel.png  red"),
    _image_case("animated.gif", 0, "animated.gif  red"),
    Case(
        "run-folder-named-x.jpg",
        "run",
        lambda c: ["run", c.bundle(), _mkdir(c.tmp / "x.jpg")],
        1,
        ("error: ", "x.jpg: a folder with no image files"),
    ),
    Case("run-unicode-space-path", "run", _unicode_image, 0, ("ça va.png  red",)),
    Case("run-unreadable-chmod-000", "run", _chmod000, 1, ("Permission denied",), root_skips=True),
    # ---- bundles
    Case("run-manifest-outside-bundle", "run", _symlinked_bad_manifest, 2, ("error: ", "points outside the bundle")),
    Case(
        "run-newer-bundle-format",
        "run",
        lambda c: ["run", c.manifest(lambda d: d.update(format_version=99)), c.image("rgba.png")],
        2,
        ("error: bundle format 99 is newer",),
    ),
    Case(
        "run-tampered-model",
        "run",
        lambda c: (
            ["run", c.bundle(), c.image("rgba.png"), "--format", "tflite-float32"]
            if _write(
                c.bundle() / "tflite_float32.tflite", b"x" + (c.bundle() / "tflite_float32.tflite").read_bytes()[1:]
            )
            else []
        ),
        2,
        ("error: bundle file tflite_float32.tflite does not match its sha256",),
    ),
    Case(
        "run-truncated-tflite",
        "run",
        lambda c: (
            _truncate(c.bundle() / "tflite_float32.tflite"),
            c.rehash("tflite_float32.tflite"),
            ["run", c.bundle(), c.image("rgba.png"), "--format", "tflite-float32"],
        )[-1],
        2,
        ("error: tflite_float32.tflite: cannot load TFLite model",),
    ),
    Case(
        "run-onnx-not-onnx",
        "run",
        lambda c: (
            _write(c.bundle() / "model.onnx", b"this is not a protobuf"),
            c.rehash("model.onnx"),
            ["run", c.bundle(), c.image("rgba.png"), "--format", "onnx"],
        )[-1],
        2,
        ("error: model.onnx: cannot load ONNX model",),
    ),
    Case(
        "run-no-manifest",
        "run",
        lambda c: ["run", _mkdir(c.tmp / "not_a_bundle"), c.image("rgba.png")],
        2,
        (
            "error: ",
            "has no manifest.json",
        ),
    ),
    Case(
        "labels-truncated-tflite",
        "labels",
        lambda c: ["labels", _write(c.tmp / "m.tflite", b"TFL3" + b"\0" * 40)],
        2,
        ("error: ", "has no embedded labels"),
    ),
    Case(
        "labels-onnx-not-onnx",
        "labels",
        lambda c: ["labels", _write(c.tmp / "m.onnx", b"not onnx at all")],
        2,
        ("error: cannot read", "as ONNX"),
    ),
    # ---- train
    Case(
        "train-every-bad-file-skipped",
        "train",
        train_with_every_bad_file,
        0,
        tuple(f"/red/{name}: " for name in BAD_FILES) + ("skipped ", "run folder: "),
        absent=(".DS_Store", "x.jpg"),
    ),
    Case(
        "train-class-with-only-hidden-files",
        "train",
        class_with_only_hidden_files,
        2,
        ("error: class folder(s) with no images", "blue"),
    ),
    Case("train-empty-class-folder", "train", empty_class, 2, ("error: class folder(s) with no images", "blue")),
    Case(
        "train-one-class",
        "train",
        lambda c: train_args(c, c.dataset(classes=("red",))),
        2,
        (
            "error: ",
            "has a single class (red)",
        ),
    ),
    Case("train-missing-data", "train", lambda c: train_args(c, c.tmp / "nope"), 2, ("error: data folder not found",)),
    Case(
        "train-config-unknown-key",
        "train",
        lambda c: ["train", "--config", c.config("epochz: 3\n")],
        2,
        ("error: unknown config key 'epochz'", "epochs"),
    ),
    Case(
        "train-config-wrong-type",
        "train",
        lambda c: ["train", "--config", c.config("epochs: many\n")],
        2,
        ("error: config key 'epochs' must be an integer",),
    ),
    Case(
        "train-config-python-tag",
        "train",
        lambda c: ["train", "--config", c.config(f"base: !!python/object/apply:os.system ['touch {c.tmp}/pwned']\n")],
        2,
        ("error: config file", "is not valid YAML: could not determine a constructor"),
        never_created="pwned",
    ),
    Case(
        "train-config-not-a-mapping",
        "train",
        lambda c: ["train", "--config", c.config("- a\n- b\n")],
        2,
        ("error: ", "must hold a mapping"),
    ),
    # ---- export
    Case(
        "export-tampered-model",
        "export",
        lambda c: ["export", _tamper(c.run_folder(), "model.keras"), "--out", c.tmp / "b"],
        2,
        ("error: run folder file model.keras does not match its sha256 in run.json",),
    ),
    Case(
        "export-edited-labels",
        "export",
        lambda c: ["export", _tamper(c.run_folder(), "labels.txt"), "--out", c.tmp / "b"],
        2,
        ("error: run folder file labels.txt does not match its sha256 in run.json",),
    ),
    Case(
        "export-incomplete-run",
        "export",
        lambda c: ["export", _unlink(c.run_folder(), "run.json")],
        2,
        ("error: run folder", "is incomplete (missing run.json)"),
    ),
    Case(
        "export-newer-run",
        "export",
        lambda c: ["export", _run_json(c.run_folder(), edgetl_version="9.0.0")],
        2,
        ("error: run folder", "was written by edgetl 9.0.0"),
    ),
    Case("export-not-a-run", "export", lambda c: ["export", c.tmp / "missing"], 2, ("error: run folder not found",)),
    # ---- validate
    Case(
        "validate-bad-images-skipped",
        "validate",
        lambda c: [
            "validate",
            c.bundle(),
            "--data",
            update_head_data(c),
            "--max-drop",
            "100",
            "--formats",
            "tflite-float32",
        ],
        0,
        (
            "warning: 5 image(s) could not be decoded and were skipped",
            "skipped ",
            "/red/corrupt.jpg: ",
            "/red/fifo.jpg: not a regular file",
            "/red/bomb.png: ",
        ),
    ),
    Case(
        "validate-tampered-bundle",
        "validate",
        lambda c: [
            "validate",
            c.bundle() if _write(c.bundle() / "tflite_int8.tflite", b"\0") else None,
            "--data",
            update_head_data(c, bad=False),
        ],
        2,
        ("error: ", "does not match its sha256"),
    ),
    # ---- update-head
    Case(
        "update-head-bad-images-reported",
        "update-head",
        lambda c: ["update-head", c.bundle(), "--data", update_head_data(c), "--epochs", "5", "--force"],
        0,
        (
            "error: ",
            "corrupt.jpg",
            "empty.jpg",
            "notes.jpg",
            "fifo.jpg: cannot read (not a regular file)",
            "bomb.png",
            "5 failed",
            "swapped in device head",
        ),
    ),
    Case(
        "update-head-empty-class",
        "update-head",
        lambda c: ["update-head", c.bundle(), "--data", _mkdir(update_head_data(c, bad=False) / "green").parent],
        2,
        ("error: class folder(s) with no images", "green"),
    ),
    Case(
        "update-head-unknown-class",
        "update-head",
        lambda c: ["update-head", c.bundle(), "--data", _with_green(update_head_data(c, bad=False))],
        2,
        ("error: ", "classes the head does not know: green", "--allow-new-classes"),
    ),
]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _unlink(run: Path, name: str) -> Path:
    (run / name).unlink()
    return run


def _tamper(run: Path, name: str) -> Path:
    data = bytearray((run / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (run / name).write_bytes(bytes(data))
    return run


def _with_green(data: Path) -> Path:
    make_bundle_data(data, {"green": 3}, seed=9)
    return data


def test_catalogue_is_big_enough():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
    assert {c.command for c in CASES} >= {"train", "export", "validate", "run", "update-head"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path, tmp_path_factory):
    if case.root_skips and os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    args = [str(a) for a in case.setup(Ctx(tmp_path, tmp_path_factory))]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    output = result.output
    assert result.exit_code == case.exit_code, output
    assert "Traceback" not in output
    for fragment in case.fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    for fragment in case.absent:
        assert fragment not in output, output
    if case.exit_code == 2:
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, output  # exactly one line says what went wrong
    if case.never_created:
        assert not (tmp_path / case.never_created).exists()


def test_debug_shows_the_traceback(tmp_path_factory, tmp_path):
    bundle = Ctx(tmp_path, tmp_path_factory).manifest(lambda d: d.update(format_version=99))
    image = tmp_path / "x.png"
    red().save(image)
    cmd = [sys.executable, "-c", "from edgetl.cli import main; main()"]
    plain = subprocess.run([*cmd, "run", str(bundle), str(image)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (
        plain.returncode == 2 and "Traceback" not in plain.stderr and plain.stderr.startswith("error: bundle format 99")
    )
    debug = subprocess.run(
        [*cmd, "--debug", "run", str(bundle), str(image)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (
        debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr and "BundleError" in debug.stderr
    )
