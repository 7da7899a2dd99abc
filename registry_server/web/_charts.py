"""Small charts drawn on the server as inline SVG: no JavaScript, no build step.

Example:
    >>> svg = metric_bars([("accuracy", 0.95, 0.9)])
    >>> svg.startswith("<svg") and "accuracy" in svg
    True
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["metric_bars"]

_ROW = 34
_BAR = 12
_LABEL_W = 150
_BAR_W = 300
_VALUE_W = 80
_CANDIDATE = "#1a73e8"
_CHAMPION = "#9aa0a6"


def _width(value: float | None, scale: float) -> float:
    if value is None or not math.isfinite(value) or scale <= 0:
        return 0.0
    return round(_BAR_W * abs(value) / scale, 1)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _row(i: int, name: str, cand: float | None, champ: float | None) -> str:
    scale = max((abs(v) for v in (cand, champ) if v is not None and math.isfinite(v)), default=0)
    y = 24 + i * _ROW
    x = _LABEL_W
    esc = html.escape(name)
    parts = [
        f'<text x="0" y="{y + _BAR}" font-size="12">{esc}</text>',
        f'<rect x="{x}" y="{y}" width="{_width(cand, scale)}" height="{_BAR}" '
        f'fill="{_CANDIDATE}"><title>{esc} candidate {_num(cand)}</title></rect>',
        f'<text x="{x + _BAR_W + 6}" y="{y + _BAR - 2}" font-size="11">{_num(cand)}</text>',
    ]
    if champ is not None:
        parts += [
            f'<rect x="{x}" y="{y + _BAR + 2}" width="{_width(champ, scale)}" height="{_BAR}" '
            f'fill="{_CHAMPION}"><title>{esc} champion {_num(champ)}</title></rect>',
            f'<text x="{x + _BAR_W + 6}" y="{y + 2 * _BAR}" font-size="11">{_num(champ)}</text>',
        ]
    return "".join(parts)


def metric_bars(rows: Sequence[tuple[str, float | None, float | None]]) -> str:
    """Horizontal bars per metric: candidate (blue) above champion (grey).

    Each row is ``(metric, candidate, champion)``; bars of one metric share a scale (the
    larger absolute value), so differences between metrics of other units stay readable.

    Example:
        >>> "<title>" in metric_bars([("rmse", 1.5, None)])
        True
    """
    height = 24 + max(len(rows), 1) * _ROW
    width = _LABEL_W + _BAR_W + _VALUE_W
    names = ", ".join(html.escape(r[0]) for r in rows) or "none"
    legend = (
        f'<rect x="{_LABEL_W}" y="2" width="10" height="10" fill="{_CANDIDATE}"/>'
        f'<text x="{_LABEL_W + 14}" y="11" font-size="11">candidate</text>'
        f'<rect x="{_LABEL_W + 90}" y="2" width="10" height="10" fill="{_CHAMPION}"/>'
        f'<text x="{_LABEL_W + 104}" y="11" font-size="11">champion</text>'
    )
    body = "".join(_row(i, *row) for i, row in enumerate(rows))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="Candidate and champion metrics: {names}">'
        f"<title>Candidate vs champion: {names}</title>{legend}{body}</svg>"
    )
