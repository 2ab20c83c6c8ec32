"""`edgetl report`: one HTML page and one Markdown page for a run folder or a bundle.

The report is built once as a list of blocks (heading, text, table, image, pre) and rendered
twice. report.html is self-contained (inline CSS, images as base64 data URIs, no scripts,
no external URLs) so it can be mailed or attached to a CI run; report.md sits beside its
PNG files so it renders on a code host. What goes into the report is decided by
edgetl.report.run_report and edgetl.report.bundle_report; edgetl.report.writer picks one
and writes the files; this module knows blocks, rendering and formatting.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError

IMAGE_PREFIX = "report_"

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.3em}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #eee;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f4f6f8}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fdecea}
tr.good td{background:#f3faf3}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em;border-radius:4px}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.note{color:#666;font-size:.9em}
"""


@dataclass(frozen=True)
class Block:
    kind: str  # "h2" | "p" | "note" | "table" | "image" | "pre"
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    row_classes: tuple[str, ...] = ()
    image: str = ""  # key into Doc.images


@dataclass
class Doc:
    """An ordered list of blocks plus the PNGs they refer to."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def h2(self, text: str) -> None:
        self.blocks.append(Block("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(Block("note", text))

    def pre(self, text: str) -> None:
        self.blocks.append(Block("pre", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], row_classes: Sequence[str] = ()) -> None:
        self.blocks.append(
            Block(
                "table",
                header=tuple(map(str, header)),
                rows=tuple(tuple(map(str, r)) for r in rows),
                row_classes=tuple(row_classes),
            )
        )

    def image(self, name: str, png: bytes, alt: str) -> None:
        """`name` becomes the file name report_<name>.png beside report.md."""
        self.images[name] = png
        self.blocks.append(Block("image", alt, image=name))


_NUMERIC = re.compile(r"^[-+]?[0-9.]+(%| [A-Za-z]+| \([-+0-9. ]+\)| / [-0-9.]+)?$")


def numeric_columns(block: Block) -> list[bool]:
    """Columns whose every cell is a number (with a unit or '%') are right-aligned."""
    return [
        i > 0 and bool(block.rows) and all(_NUMERIC.match(r[i]) or r[i] == "-" for r in block.rows)
        for i in range(len(block.header))
    ]


def image_file(name: str) -> str:
    return f"{IMAGE_PREFIX}{name}.png"


def _html_block(block: Block, images: dict[str, bytes]) -> str:
    esc = html.escape
    if block.kind == "table":
        nums = numeric_columns(block)
        cell = lambda tag, i, text: (
            f'<{tag} class="num">{esc(text)}</{tag}>' if nums[i] else f"<{tag}>{esc(text)}</{tag}>"
        )  # noqa: E731
        head = "".join(cell("th", i, h) for i, h in enumerate(block.header))
        body = []
        for i, row in enumerate(block.rows):
            cls = block.row_classes[i] if i < len(block.row_classes) and block.row_classes[i] else ""
            attr = f' class="{esc(cls)}"' if cls else ""
            body.append(f"<tr{attr}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    if block.kind == "image":
        data = base64.b64encode(images[block.image]).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{esc(block.text)}">'
    if block.kind == "pre":
        return f"<pre>{esc(block.text)}</pre>"
    if block.kind == "note":
        return f'<p class="note">{esc(block.text)}</p>'
    return f"<{block.kind}>{esc(block.text)}</{block.kind}>"


def render_html(doc: Doc) -> str:
    body = "\n".join(_html_block(b, doc.images) for b in doc.blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(doc.title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> str:
    if block.kind == "h2":
        return f"## {block.text}"
    if block.kind == "table":
        lines = [
            "| " + " | ".join(map(_md_cell, block.header)) + " |",
            "|" + "|".join("---:" if n else ":---" for n in numeric_columns(block)) + "|",
        ]
        lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
        return "\n".join(lines)
    if block.kind == "image":
        return f"![{block.text}]({image_file(block.image)})"
    if block.kind == "pre":
        return f"```\n{block.text}\n```"
    if block.kind == "note":
        return f"_{block.text}_"
    return block.text


def render_md(doc: Doc) -> str:
    return f"# {doc.title}\n\n" + "\n\n".join(_md_block(b) for b in doc.blocks) + "\n"


def read_json(path: Path) -> Any:
    """None when the file is absent; EdgetlError (one line) when it is not valid JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgetlError(f"report: {path} is not valid JSON ({exc}); re-run the stage that wrote it") from None


def pct(x: Any) -> str:
    return f"{100.0 * float(x):.1f}%" if isinstance(x, (int, float)) else "-"


def num(x: Any, digits: int = 2) -> str:
    return f"{float(x):.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return "-"  # pragma: no cover


def affine(scale: Any, offset: Any) -> str:
    """Preprocessing as a readable formula: 'x * 0.00784314 - 1'."""
    try:
        s, o = float(scale), float(offset)
    except (TypeError, ValueError):
        return "-"
    return f"x * {s:.6g} {'-' if o < 0 else '+'} {abs(o):.6g}"


def kv_table(doc: Doc, pairs: list[tuple[str, Any]]) -> None:
    rows = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in pairs if v is not None]
    if rows:
        doc.table(("", "value"), rows)
