"""Charts as inline SVG, drawn on the server: stacked bars whose geometry is computed
here and written by `_charts.html` with presentation attributes only (the console's CSP
forbids inline style, and no script is needed). Every chart carries its numbers as a
table too: colour is never the only carrier of meaning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The drawing's size in SVG units (it scales to the page's width) and its margins.
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 34
#: Colours for labels that mean the same thing on every chart; at least 4.5:1 against
#: white, so a bar and its legend read on the page's background.
MEANING = {
    "processed": "#1d5fa8",
    "2xx": "#1d5fa8",
    "placed": "#1d5fa8",
    "ignored": "#6b6b6b",
    "3xx": "#5b3f99",
    "paid": "#5b3f99",
    "4xx": "#8a5a00",
    "fulfilled": "#2e7031",
    "failed": "#b3261e",
    "5xx": "#b3261e",
    "cancelled": "#b3261e",
}
PALETTE = ("#1d5fa8", "#5b3f99", "#2e7031", "#8a5a00", "#b3261e", "#6b6b6b")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    #: What a pointer (and a screen reader walking the drawing) is told about the bar.
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    #: One sentence a screen reader reads instead of the drawing.
    summary: str
    #: The column heads (hours, days, buckets) and the series' labels with their colours.
    columns: list[str]
    series: list[tuple[str, str]]
    #: rows[i][label]: the value of `label` in column i.
    rows: list[dict[str, float]]
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[Label]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def table(self) -> list[tuple[str, list[str]]]:
        """Each column with its values, in the series' order, as the table shows them."""
        return [
            (column, [_number(row[label]) for label, _ in self.series])
            for column, row in zip(self.columns, self.rows, strict=True)
        ]

    @property
    def empty(self) -> bool:
        return not any(any(row.values()) for row in self.rows)


def colours(labels: Sequence[str]) -> list[tuple[str, str]]:
    return [
        (label, MEANING.get(label, PALETTE[i % len(PALETTE)])) for i, label in enumerate(labels)
    ]


def _round_up(value: float) -> float:
    """A scale's top: 1, 2, 2.5 or 5 times a power of ten, at least `value` (> 0)."""
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(magnitude * k for k in (1, 2, 2.5, 5, 10) if magnitude * k >= value)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def stacked(
    key: str,
    title: str,
    unit: str,
    columns: Sequence[str],
    labels: Sequence[str],
    rows: Sequence[Mapping[str, float]],
    every: int = 1,
) -> Chart:
    """Stacked bars, one per column; `every`: label one column in this many."""
    series = colours(labels)
    full = [{label: float(row.get(label, 0.0)) for label in labels} for row in rows]
    top = _round_up(max((sum(row.values()) for row in full), default=0.0) or 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(columns), 1)
    bars: list[Bar] = []
    for i, (column, row) in enumerate(zip(columns, full, strict=True)):
        base = float(TOP + plot_h)
        for label, fill in series:
            value = row[label]
            if not value:
                continue
            height = value / top * plot_h
            base -= height
            bars.append(
                Bar(
                    round(LEFT + i * step + step * 0.1, 2),
                    round(base, 2),
                    round(step * 0.8, 2),
                    round(height, 2),
                    fill,
                    f"{column}: {label} {_number(value)} {unit}",
                )
            )
    ticks = [Tick(round(TOP + plot_h - plot_h * k / 4, 2), _number(top * k / 4)) for k in range(5)]
    marks = [
        Label(round(LEFT + i * step + step / 2, 2), column)
        for i, column in enumerate(columns)
        if i % every == 0
    ]
    totals = {label: sum(row[label] for row in full) for label in labels}
    said = ", ".join(f"{label} {_number(n)}" for label, n in totals.items()) or "nothing"
    summary = f"{title}: in all, {said} {unit}; the table below gives every value."
    return Chart(key, title, summary, list(columns), series, full, bars, ticks, marks)
