"""Reports from fake run folders and bundles built to the contracts (tests/report_fixtures.py)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from edgetl.errors import EdgetlError
from edgetl.report.bundle_report import regressions
from edgetl.report.document import numeric_columns
from edgetl.report.run_report import class_count_rows, skipped_rows
from edgetl.report.writer import write_report

from report_fixtures import make_bundle, make_run

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _png_sizes(html: str) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(base64.b64decode(b64))).size for b64 in DATA_URI.findall(html)]


def _assert_self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    text = DATA_URI.sub('src=""', html)
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|url\(|@import", text, re.I), "external reference"
    srcs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_run_report(tmp_path):
    run = make_run(tmp_path / "run", epochs=4, fine_tune=2)
    html_path, md_path = write_report(run)
    assert (html_path, md_path) == (run / "report.html", run / "report.md")
    html, md = html_path.read_text(), md_path.read_text()
    _assert_self_contained(html)
    sizes = _png_sizes(html)
    assert len(sizes) == 2 and all(w > 200 and h > 100 for w, h in sizes)  # curves + confusion
    for text in (
        "87.5%",
        "mobilenet_v2",
        "x * 0.00784314 - 1",
        "data/red/broken.jpg",
        "cannot decode (truncated)",
        "empty file (0 bytes)",
        "fine_tune_layers: 10",
    ):
        assert text in html and text in md, text
    assert "| class | train | val | val accuracy |" in md and "| green | 10 | 3 | 66.7% |" in md
    images = re.findall(r"\]\((report_[^)]+\.png)\)", md)
    assert images == ["report_curves.png", "report_confusion.png"]
    for name in images:
        assert Image.open(run / name).size[0] > 200
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_run_report_falls_back_to_pngs_and_notes_missing(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "history.csv").unlink()
    (run / "run.json").unlink()
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["confusion"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    Image.new("RGB", (321, 123), "white").save(run / "curves.png")
    html_path, md_path = write_report(run, tmp_path / "out")
    assert html_path.parent == tmp_path / "out"
    html = html_path.read_text()
    assert _png_sizes(html) == [(321, 123)]
    assert "run.json is missing" in html and "No confusion matrix" in html
    assert Image.open(tmp_path / "out" / "report_curves.png").size == (321, 123)


def test_bundle_report(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", tmp_path / "images")
    html_path, md_path = write_report(bundle)
    html, md = html_path.read_text(), md_path.read_text()
    _assert_self_contained(html)
    assert "| tflite-int8 | 86.7% | 10.00 | 90.0% | 1.2 KiB | 1.10 / 1.50 | yes | FAIL |" in md
    assert "| red | 100.0% (0.0) | 100.0% (0.0) | 80.0% (20.0) |" in md
    assert "result: FAILED" in md and '<tr class="bad">' in html
    # confusion pair (keras | int8) side by side: wider than tall; and the grid of regressions
    (cw, ch), (gw, gh) = _png_sizes(html)
    assert cw > 1.6 * ch and gw > 100 and gh > 100
    assert "tflite-int8 gets wrong and keras gets right (3)" in md
    assert "broken.jpg" in md and "not an image Pillow can read" in md  # undecodable image listed, not fatal
    assert (
        "| val/blue/truncated.jpg | cannot decode (image file is truncated) |" in md
    )  # validation's own skipped images
    assert (bundle / "report_confusion_tflite-int8.png").is_file() and (
        bundle / "report_wrong_tflite-int8.png"
    ).is_file()


def test_regressions_only_where_float_is_right(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", tmp_path / "images")
    validation = json.loads((bundle / "validation.json").read_text())
    lost = regressions(validation, "tflite-int8")
    assert len(lost) == 3 and all(d["keras"] == d["label"] != d["tflite-int8"] for d in lost)


def test_bundle_without_validation(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", tmp_path / "images", with_validation=False)
    html = write_report(bundle)[0].read_text()
    assert "edgetl validate" in html and "model_int8.tflite" in html
    assert _png_sizes(html) == []


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(EdgetlError, match="folder not found"):
        write_report(tmp_path / "missing")
    with pytest.raises(EdgetlError, match="neither a run folder"):
        write_report(tmp_path)
    run = make_run(tmp_path / "run")
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(EdgetlError, match="metrics.json is not valid JSON"):
        write_report(run)
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("error: report:")


def test_cli_report(tmp_path):
    run = make_run(tmp_path / "run")
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file() and "report.md" in result.output


@pytest.mark.parametrize(
    "skipped, expected",
    [
        ([{"path": "a.jpg", "reason": "bad"}], [("a.jpg", "bad")]),
        ([["a.jpg", "bad"]], [("a.jpg", "bad")]),
        (["a.jpg: bad"], [("a.jpg", "bad")]),
        ({"a.jpg": "bad"}, [("a.jpg", "bad")]),
        (3, []),
    ],
)
def test_skipped_shapes(skipped, expected):
    assert skipped_rows(skipped) == expected


def test_class_count_shapes():
    by_split = {"class_counts": {"train": {"a": 2, "b": 3}, "val": {"a": 1}}}
    by_class = {"class_counts": {"a": {"train": 2, "val": 1}, "b": {"train": 3}}}
    assert (
        class_count_rows(by_split)
        == class_count_rows(by_class)
        == [("class", "train", "val"), ("a", 2, 1), ("b", 3, 0)]
    )
    assert class_count_rows({"counts": {"a": 5}}) == [("class", "images"), ("a", 5)]
    assert class_count_rows({}) == []
    from_train = {
        "classes": ["a", "b"],
        "train_counts": {"a": 2, "b": 3},
        "val_counts": {"a": 1, "b": 0},
        "per_class_accuracy": {"a": 1.0, "b": 0.0},
    }
    assert class_count_rows(from_train) == [
        ("class", "train", "val", "val accuracy"),
        ("a", 2, 1, "100.0%"),
        ("b", 3, 0, "0.0%"),
    ]


def test_numeric_columns_alignment():
    from edgetl.report.document import Block

    block = Block("table", header=("fmt", "acc", "file"), rows=(("x", "96.7%", "m.tflite"), ("y", "-", "n.onnx")))
    assert numeric_columns(block) == [False, True, False]


# ------------------------------------------------------------------------- real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
]
# Appended to a COPY of the page: records image sizes and JS errors into the DOM after load.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => document.body.setAttribute('data-probe', JSON.stringify({
  images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  errors: window.__errors})));
</script>"""


def render_in_chromium(html_file: Path, extra: str = "") -> tuple[dict, list[str]]:
    """Load the page in headless Chromium -> (probe result, console lines from stderr)."""
    probe_page = html_file.with_name("probe_" + html_file.name)
    probe_page.write_text(html_file.read_text().replace("</body>", extra + PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", probe_page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    match = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert match, f"chromium produced no probe result (rc={proc.returncode}): {proc.stderr[-800:]}"
    import html as html_lib

    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html_lib.unescape(match.group(1))), console


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install_browser.sh installs it)")
def test_reports_render_in_chromium(tmp_path):
    run_html = write_report(make_run(tmp_path / "run"))[0]
    bundle_html = write_report(make_bundle(tmp_path / "bundle", tmp_path / "images"))[0]
    for page, count in ((run_html, 2), (bundle_html, 2)):
        result, console = render_in_chromium(page)
        assert console == [] and result["errors"] == []
        assert len(result["images"]) == count
        assert all(complete and w > 0 and h > 0 for complete, w, h in result["images"]), result
    # the harness itself catches a broken image and a console error
    bad, console = render_in_chromium(
        run_html, '<img src="data:image/png;base64,AAAA"><script>console.error("x")</script>'
    )
    assert bad["images"][-1][1] == 0 and any('"x"' in line for line in console)
