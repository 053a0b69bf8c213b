"""A self-contained HTML report: headings, text, tables and embedded pictures.

Pictures are embedded as base64 PNG and the style sheet is inline, so the file
needs nothing beside it. The same builder serves the model comparison and the
cohort report.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from radscl import __version__
from radscl.report.plots import figure_png

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; font-size: .82em; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; }
figcaption { font-size: .85em; color: #555; }
img { max-width: 100%; }
.note { font-size: .85em; color: #555; }
.wide { overflow-x: auto; }
.gallery { display: flex; flex-wrap: wrap; gap: .6em; }
.gallery figure { width: 49%; margin: 0; }
"""


class HtmlReport:
    """Collects report sections and writes one HTML file.

    Parameters
    ----------
    title : str
        Page title and first heading.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> HtmlReport:
        """Add a heading (level 2 or 3)."""
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def paragraph(self, text: str, *, note: bool = False) -> HtmlReport:
        """Add a paragraph of plain text (escaped)."""
        css = ' class="note"' if note else ""
        self._parts.append(f"<p{css}>{html.escape(text)}</p>")
        return self

    def items(self, lines: list[str]) -> HtmlReport:
        """Add a bulleted list of plain-text lines."""
        body = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        self._parts.append(f"<ul>{body}</ul>")
        return self

    def table(self, frame: pd.DataFrame, *, digits: int = 3) -> HtmlReport:
        """Add a table; floats are rounded to ``digits`` significant places."""
        header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for _, row in frame.iterrows():
            cells = "".join(
                f"<td>{html.escape(_format_cell(v, digits))}</td>" for v in row
            )
            rows.append(f"<tr>{cells}</tr>")
        self._parts.append(
            f'<div class="wide"><table><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
        return self

    def figure(self, figure: Figure | bytes, caption: str = "") -> HtmlReport:
        """Embed a figure (or PNG bytes) with a caption."""
        png = figure if isinstance(figure, bytes) else figure_png(figure)
        encoded = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption or "figure")
        self._parts.append(
            f'<figure><img src="data:image/png;base64,{encoded}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        return self

    def gallery(self, pictures: list[tuple[str, bytes]]) -> HtmlReport:
        """Embed small PNG pictures side by side, each with its caption."""
        cells = []
        for caption, png in pictures:
            encoded = base64.b64encode(png).decode("ascii")
            text = html.escape(caption)
            cells.append(
                f'<figure><img src="data:image/png;base64,{encoded}" alt="{text}">'
                f"<figcaption>{text}</figcaption></figure>"
            )
        self._parts.append(f'<div class="gallery">{"".join(cells)}</div>')
        return self

    def to_html(self) -> str:
        """The whole document."""
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>"
            + "\n".join(self._parts)
            + f'<p class="note">radscl {html.escape(__version__)}, {stamp}</p>'
            + "</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write the report to ``path``."""
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path


def _format_cell(value, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        if value != 0 and abs(value) < 10**-(digits):
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)
