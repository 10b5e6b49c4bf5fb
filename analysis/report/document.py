"""The report as a document: sections of figures, tables and notes, rendered as Markdown and as one HTML file.

Section builders produce `Section`s; the two renderers here are the only code that knows Markdown or
HTML. The Markdown refers to the figure files relatively (it sits next to them); the HTML embeds each
PNG as a base64 data URI and carries its own style sheet and a Content-Security-Policy that allows
nothing but those images and the inline style, so it opens from disk, offline, with no script.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    path: Path  # the PNG
    caption: str  # one sentence: what it shows and how to read it
    data: Path  # the CSV holding every number drawn


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    data: Path | None = None  # the CSV of the same numbers, unrounded
    # Columns of folder paths and hub ids: in HTML they wrap (after each "/", anywhere if still too long)
    # rather than widen the table past the page.
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Note:
    text: str


Block = Figure | Table | Note


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


def fmt(value: float | None, digits: int = 3) -> str:
    """Numbers as tables show them; None (undefined) as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    if digits > 0 and value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.{digits}e}"
    return f"{value:.{digits}f}"


def fmt_interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if low is None or high is None:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def render_markdown(title: str, preamble: str, sections: Sequence[Section], root: Path) -> str:
    lines = [f"# {title}", "", preamble, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for b in s.blocks:
            lines += _md_block(b, root) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _md_block(block: Block, root: Path) -> list[str]:
    if isinstance(block, Note):
        return [block.text]
    if isinstance(block, Figure):
        rel, data = block.path.relative_to(root).as_posix(), block.data.relative_to(root).as_posix()
        return [f"![{block.path.stem}]({rel})", "", f"{block.caption} Numbers: [{data}]({data})."]
    text = block.caption
    if block.data is not None:
        data = block.data.relative_to(root).as_posix()
        text = f"{text} Numbers: [{data}]({data}).".strip()
    lines = [f"*{text}*", ""] if text else []
    lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
    lines.append("|" + "|".join("---" for _ in block.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
    return lines


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

# Nothing may be fetched: images are data URIs, the style is inline, there is no script.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1150px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
nav ol { columns: 2; font-size: .95em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .92em; color: #444; margin-top: .3em; }
figcaption code, p code { background: #f4f4f4; padding: 0 .25em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
p.caption { font-style: italic; margin: 1.2em 0 .3em; }
.note { color: #555; } .scroll { overflow-x: auto; }
td.path { text-align: left; overflow-wrap: anywhere; min-width: 8em; }
"""


def render_html(title: str, preamble: str, sections: Sequence[Section], root: Path) -> str:
    toc = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(_html_section(s, root) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(preamble)}</p><nav><ol>{toc}</ol></nav>{body}</body></html>\n"
    )


def _html_section(section: Section, root: Path) -> str:
    inner = "".join(_html_block(b, root) for b in section.blocks)
    return f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>{inner}</section>'


def _html_block(block: Block, root: Path) -> str:
    if isinstance(block, Note):
        return f'<p class="note">{html.escape(block.text)}</p>'
    if isinstance(block, Figure):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        csv_name = html.escape(block.data.relative_to(root).as_posix())
        return (
            f'<figure><img alt="{html.escape(block.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(block.caption)} Numbers: <code>{csv_name}</code>.</figcaption></figure>"
        )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
    paths = [c in block.paths for c in block.columns]
    rows = "".join("<tr>" + "".join(_html_cell(c, path) for c, path in zip(row, paths)) + "</tr>" for row in block.rows)
    text = block.caption + (f" Numbers: {block.data.relative_to(root).as_posix()}." if block.data is not None else "")
    caption = f'<p class="caption">{html.escape(text.strip())}</p>' if text.strip() else ""
    return f'{caption}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _html_cell(value: object, path: bool) -> str:
    if not path:
        return f"<td>{html.escape(str(value))}</td>"
    # <wbr> after each separator: a long path breaks between its folders first.
    return f'<td class="path">{html.escape(str(value)).replace("/", "/<wbr>")}</td>'
