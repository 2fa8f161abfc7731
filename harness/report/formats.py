"""Documents and the formats that write them: one registry, from which every command's
`--format` choices are derived.

An output (results, compare, plan, bench; one module each) builds a `Document`: its blocks
(headings, paragraphs, tables, lists, figures) for the formats people read, its one table for
CSV, its records for JSON. A format writes any document, so every output has every format; a
new format is one `Format` subclass registered here.
"""

from __future__ import annotations

import html
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.registry import Registry

if TYPE_CHECKING:  # the command line imports this module for the names: pandas only where a document is written
    import pandas as pd

# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2  # 1: a document's title (`#`); 2: its sections (`##`), the default; 3: their parts


def nested(blocks: list[Block], by: int) -> list[Block]:
    """`blocks` with every heading `by` levels deeper: a document made a part of another."""
    return [Heading(block.text, block.level + by) if isinstance(block, Heading) else block for block in blocks]


@dataclass(frozen=True)
class Paragraph:
    text: str  # may hold `code` and **bold** spans, and line breaks


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # display strings
    folded: str | None = None  # a summary line under which the formats that can fold it do


@dataclass(frozen=True)
class Items:
    items: list[str]  # may hold `code` and **bold** spans


@dataclass(frozen=True)
class Figure:
    path: Path  # an SVG file: linked where a format links, inlined where it embeds
    caption: str = ""


@dataclass(frozen=True)
class Gallery:
    """Figures under a heading, for the formats that embed them (a self-contained page)."""

    title: str
    paths: list[Path]


Block = Heading | Paragraph | Table | Items | Figure | Gallery


@dataclass(frozen=True)
class Document:
    """What an output says: `blocks` for people, `table` (one DataFrame) for CSV, `records`
    (JSON-ready) for machines. `title` heads a whole page (HTML); `preamble` leads what can carry
    one (a LaTeX comment)."""

    title: str
    blocks: list[Block]
    table: pd.DataFrame | None = None
    records: Any = None
    float_format: str | None = None  # CSV's numbers ("%.4g"), or as pandas writes them
    preamble: bool = True


# --------------------------------------------------------------------------- formats


class Format:
    """Writes a document."""

    name = ""
    help = ""

    def write(self, document: Document) -> str:
        raise NotImplementedError


class BlockFormat(Format):
    """A format people read: each block written in turn, blank lines between them."""

    def write(self, document: Document) -> str:
        parts = [self.preamble()] if document.preamble and self.preamble() else []
        parts += [text for text in map(self.block, document.blocks) if text]
        return self.page(document, "\n\n".join(parts))

    def block(self, block: Block) -> str:
        if isinstance(block, Heading):
            return self.heading(block.text, block.level)
        if isinstance(block, Paragraph):
            return self.paragraph(block.text)
        if isinstance(block, Table):
            return self.table(block.frame, block.folded)
        if isinstance(block, Items):
            return self.items(block.items)
        if isinstance(block, Gallery):
            return self.gallery(block)
        return self.figure(block)

    def preamble(self) -> str:
        return ""

    def page(self, document: Document, body: str) -> str:
        return body

    def heading(self, text: str, level: int = 2) -> str:
        raise NotImplementedError

    def paragraph(self, text: str) -> str:
        return text

    def table(self, frame: pd.DataFrame, folded: str | None) -> str:
        raise NotImplementedError

    def items(self, items: list[str]) -> str:
        return "\n".join(f"- {item}" for item in items)

    def figure(self, figure: Figure) -> str:
        return ""

    def gallery(self, gallery: Gallery) -> str:
        return ""


def markdown_table(frame: pd.DataFrame) -> str:
    from tabulate import tabulate

    # a '|' in a label would end its cell, a line break its row
    frame = frame.apply(lambda column: column.map(
        lambda v: " ".join(v.replace("|", "\\|").splitlines()) if isinstance(v, str) else v))
    return tabulate(frame, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


class Markdown(BlockFormat):
    name, help = "markdown", "GitHub markdown (a results file: `harness table > RESULTS.md`)"

    def heading(self, text: str, level: int = 2) -> str:
        return f"{'#' * level} {text}"

    def table(self, frame: pd.DataFrame, folded: str | None) -> str:
        table = markdown_table(frame)
        return f"<details><summary>{folded}</summary>\n\n{table}\n\n</details>" if folded else table

    def figure(self, figure: Figure) -> str:
        return f"![{figure.caption}]({figure.path})"


class Text(BlockFormat):
    name, help = "text", "plain text for a terminal"

    def heading(self, text: str, level: int = 2) -> str:
        return f"{text}\n{('=' if level <= 2 else '-') * len(text)}"

    def table(self, frame: pd.DataFrame, folded: str | None) -> str:
        from tabulate import tabulate

        return tabulate(frame, headers="keys", tablefmt="simple", showindex=False)


def _html_inline(text: str) -> str:
    """Escaped text with markdown's `code` and **bold** spans as HTML."""
    text = html.escape(text)
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def inline_svg(path: Path) -> str:
    """An SVG file as a figure inside the page (its XML prolog and doctype dropped)."""
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    start = text.find("<svg")
    return f"<figure>{text[start:] if start >= 0 else text}</figure>"


HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table.results{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "table.results th,table.results td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "table.results td:first-child,table.results th:first-child{text-align:left}"
    "code{background:#f4f4f4;padding:0 3px}figure{margin:1em 0}svg{max-width:100%;height:auto}"
)


class Html(BlockFormat):
    name, help = "html", "one self-contained HTML page (figures inline)"

    def page(self, document: Document, body: str) -> str:
        return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(document.title)}</title><style>{HTML_STYLE}</style></head><body>\n"
                f"<h1>{html.escape(document.title)}</h1>\n{body}\n</body></html>")

    def heading(self, text: str, level: int = 2) -> str:
        return f"<h{min(level, 6)}>{_html_inline(text)}</h{min(level, 6)}>"

    def paragraph(self, text: str) -> str:
        return f"<p>{_html_inline(text)}</p>"

    def table(self, frame: pd.DataFrame, folded: str | None) -> str:
        table = frame.to_html(index=False, escape=True, border=0, classes="results")
        return f"<details><summary>{folded}</summary>\n\n{table}\n\n</details>" if folded else table

    def items(self, items: list[str]) -> str:
        return "<ul>\n" + "\n".join(f"<li>{_html_inline(item)}</li>" for item in items) + "\n</ul>"

    def figure(self, figure: Figure) -> str:
        return inline_svg(figure.path)

    def gallery(self, gallery: Gallery) -> str:
        figures = [svg for svg in map(inline_svg, gallery.paths) if svg]
        return f"{self.heading(gallery.title)}\n\n" + "\n".join(figures) if figures else ""


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "—": "---", "→": r"$\rightarrow$", "≤": r"$\le$",
    "≥": r"$\ge$", "×": r"$\times$", "…": r"\ldots{}", "−": r"$-$", "⚠": r"\textbf{(!)}",
}


def latex_escape(text: str) -> str:
    """Text as LaTeX typesets it literally: special characters escaped, symbols as math, and
    `--` kept two hyphens (a command's options), not an en dash."""
    text = str(text).replace("->", "→")
    return "".join(
        "-{}" if character == "-" and text[position + 1 : position + 2] == "-" else LATEX_SPECIAL.get(character, character)
        for position, character in enumerate(text)
    )


def _inline_code(text: str, code) -> str:
    """`text` with its `backquoted` spans passed to `code`, its **bold** spans set bold, and
    the rest passed to latex_escape."""
    pieces = text.split("`")
    return "".join(code(piece) if index % 2 else _latex_bold(piece) for index, piece in enumerate(pieces))


def _latex_bold(text: str) -> str:
    parts = text.split("**")
    if len(parts) % 2 == 0:  # an unpaired ** is literal text
        return latex_escape(text)
    return "".join(rf"\textbf{{{latex_escape(part)}}}" if index % 2 else latex_escape(part)
                   for index, part in enumerate(parts))


class Latex(BlockFormat):
    name, help = "latex", "LaTeX to \\input into a document (booktabs, longtable)"

    def preamble(self) -> str:
        return "% harness table --format latex: \\input it into a document that loads booktabs and longtable"

    def heading(self, text: str, level: int = 2) -> str:
        # a table is \input into a document: its sections are the reader's sections, a study's title above them
        command = {1: "section", 2: "section", 3: "subsection"}.get(level, "subsubsection")
        return rf"\{command}*{{{latex_escape(text)}}}"

    def paragraph(self, text: str) -> str:
        return _inline_code(text, lambda code: rf"\texttt{{{latex_escape(code)}}}")

    def table(self, frame: pd.DataFrame, folded: str | None) -> str:
        """A booktabs longtable (it breaks across pages), its header repeated on each."""
        columns = "l" + "r" * (len(frame.columns) - 1)
        row = lambda cells: " & ".join(latex_escape(cell) for cell in cells) + r" \\"  # noqa: E731
        lines = [rf"\begin{{longtable}}{{{columns}}}", r"\toprule", row(frame.columns), r"\midrule", r"\endhead"]
        lines += [row(values) for values in frame.itertuples(index=False)]
        lines += [r"\bottomrule", r"\end{longtable}"]
        return "\n".join(lines)

    def items(self, items: list[str]) -> str:
        code = lambda c: rf"\texttt{{{latex_escape(c)}}}"  # noqa: E731
        return "\n".join([r"\begin{itemize}", *(r"\item " + _inline_code(item, code) for item in items),
                          r"\end{itemize}"])


class Csv(Format):
    name, help = "csv", "the output's one table as CSV (for a spreadsheet)"

    def write(self, document: Document) -> str:
        if document.table is None:
            return ""
        buffer = io.StringIO()
        document.table.to_csv(buffer, index=False, float_format=document.float_format)
        return buffer.getvalue().rstrip("\n")


class Json(Format):
    name, help = "json", "every table as records (for machines; a baseline for `harness compare`)"

    def write(self, document: Document) -> str:
        return json.dumps(document.records, indent=1)


def records(frame: pd.DataFrame) -> list[dict]:
    """A frame as JSON records, NaN as null."""
    return json.loads(frame.to_json(orient="records")) if not frame.empty else []


FORMATS: Registry[Format] = Registry("format", entry_points="harness.formats")  # an installed package's: a Format
for _format in (Markdown(), Text(), Latex(), Html(), Csv(), Json()):
    FORMATS.register(_format.name, _format, builtin=True)


def names() -> list[str]:
    """Every format's name, installed packages' too: the choices of every command's --format."""
    return FORMATS.names()


def write(document: Document, format_name: str) -> str:
    """The document in the named format (UnknownName for an unknown one)."""
    return FORMATS.get(format_name).write(document)
