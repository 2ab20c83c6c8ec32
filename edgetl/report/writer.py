"""`edgetl report`: build the document for a run folder or a bundle and write it.

report.html (self-contained) and report.md beside its report_*.png files; see
edgetl.report.document for the blocks and their rendering.
"""

from __future__ import annotations

from pathlib import Path

from edgetl.errors import EdgetlError
from edgetl.report.bundle_report import build_bundle_doc
from edgetl.report.data_report import HEALTH_FILE, build_data_doc
from edgetl.report.document import Doc, image_file, render_html, render_md
from edgetl.report.run_report import build_run_doc, is_run
from edgetl.runtime.atomic import write_bytes, write_text

HTML_NAME = "report.html"
MD_NAME = "report.md"


def build_doc(path: str | Path) -> Doc:
    """Pick the run or bundle layout by the files present."""
    root = Path(path)
    if not root.is_dir():
        raise EdgetlError(f"report: folder not found: {root} (give a run folder or a bundle folder)")
    if (root / "manifest.json").is_file():
        return build_bundle_doc(root)
    if is_run(root):
        return build_run_doc(root)
    if (root / HEALTH_FILE).is_file():
        return build_data_doc(root)
    raise EdgetlError(
        f"report: {root} is neither a run folder (config.yaml, metrics.json, history.csv), a bundle (manifest.json) "
        f"nor a check-data folder ({HEALTH_FILE})"
    )


def write_report(path: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md (+ report_*.png) into `out` (default: `path`).

    Each file is written atomically; report.html comes last, so its presence means the
    Markdown and its images are complete too.
    """
    doc = build_doc(path)
    out_dir = Path(out) if out is not None else Path(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in doc.images.items():
        write_bytes(out_dir / image_file(name), png)
    md_path = write_text(out_dir / MD_NAME, render_md(doc))
    html_path = write_text(out_dir / HTML_NAME, render_html(doc))
    return html_path, md_path
