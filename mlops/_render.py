"""Tiny, dependency-free helpers to show a report as an HTML table or as terminal text.

Reports use these for ``_repr_html_`` (notebooks) and ``__str__`` (terminals, logs).

Example:
    >>> from mlops._render import html_table, text_table
    >>> print(text_table(["metric", "value"], [["accuracy", 0.93]]))
    metric    value
    --------  -----
    accuracy  0.93
    >>> html_table(["a"], [["<b>"]]).count("&lt;b&gt;")
    1
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["badge", "fmt", "html_section", "html_table", "text_table"]

_PASS_STYLE = "color:#137333;font-weight:600"
_FAIL_STYLE = "color:#c5221f;font-weight:600"
_NA_STYLE = "color:#5f6368"


def fmt(value: Any, *, digits: int = 4) -> str:
    """A short, human form of ``value``: floats to ``digits`` significant digits.

    Example:
        >>> fmt(0.912345), fmt(None), fmt(True), fmt(3)
        ('0.9123', '-', 'yes', '3')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


def badge(passed: bool | None, *, html_out: bool = False) -> str:
    """``PASS`` / ``FAIL`` / ``n/a`` as text, or as a coloured HTML span.

    Example:
        >>> badge(True), badge(None)
        ('PASS', 'n/a')
    """
    label = "n/a" if passed is None else ("PASS" if passed else "FAIL")
    if not html_out:
        return label
    style = _NA_STYLE if passed is None else (_PASS_STYLE if passed else _FAIL_STYLE)
    return f'<span style="{style}">{label}</span>'


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned plain-text columns (values shown with :func:`fmt`).

    Example:
        >>> print(text_table(["a", "b"], [[1, None]]))
        a  b
        -  -
        1  -
    """
    cells = [[str(h) for h in headers]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def html_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
    raw_columns: Sequence[int] = (),
) -> str:
    """An HTML ``<table>``; cells are escaped except the column indexes in ``raw_columns``.

    Example:
        >>> html_table(["ok"], [[badge(True, html_out=True)]], raw_columns=[0]).count("PASS")
        1
    """
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        tds = []
        for i, value in enumerate(row):
            cell = str(value) if i in raw_columns else html.escape(fmt(value))
            tds.append(f"<td style='text-align:left'>{cell}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    cap = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_section(title: str, body_html: str, *, passed: bool | None = None) -> str:
    """A titled block (``<div><h4>title [badge]</h4>body</div>``); ``body_html`` is not escaped.

    Example:
        >>> html_section("Checks", "<p>ok</p>", passed=True).startswith("<div")
        True
    """
    mark = f" {badge(passed, html_out=True)}" if passed is not None else ""
    return f"<div><h4>{html.escape(title)}{mark}</h4>{body_html}</div>"
