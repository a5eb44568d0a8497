"""Bar charts as inline SVG, drawn on the server: no JavaScript, no chart library, no request
leaves the page. Colours and text come from presentation attributes and the UI's stylesheet
(classes `chart-*`), so a strict Content-Security-Policy (no inline styles) holds.

Each chart is an `<svg role="img">` with a `<title>` and a `<desc>` summing it up, and each bar
carries its own `<title>` (the browser shows it on hover). Pages put the same numbers in a
table beside the chart for screen readers and for copying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

# Distinguishable for the common colour-vision deficiencies (Okabe-Ito, then greys).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000", "#999999")


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    values: tuple[int, ...]
    colour: str


def colours(count: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(count)]


def nice_ticks(top: int, wanted: int = 4) -> list[int]:
    """Round tick values from 0 covering `top`: steps of 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return [0, 1]
    raw = top / wanted
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(1, int(step))
    return list(range(0, (math.ceil(top / step) + 1) * step, step))


def period_label(period: str, interval: str | None) -> str:
    """`2026-11-03` as `Nov 3` (days, weeks) or `Nov 2026` (months)."""
    try:
        day = date.fromisoformat(period)
    except ValueError:
        return period or "total"
    if interval == "month":
        return day.strftime("%b %Y")
    return f"{day.strftime('%b')} {day.day}"


def _fmt(number: float) -> str:
    return f"{number:,.0f}"


def column_chart(
    chart_id: str, title: str, labels: list[str], series: list[Series], *, width: int = 720, height: int = 280
) -> Markup:
    """Stacked columns, one per label (period), one colour per series (breakdown value)."""
    left, right, top, bottom = 48, 8, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    stacks = [sum(s.values[i] for s in series) for i in range(len(labels))]
    ticks = nice_ticks(max(stacks, default=0))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(1, len(labels))
    bar = min(48.0, slot * 0.72)
    every = max(1, math.ceil(len(labels) / max(1, plot_w // 64)))
    total = sum(stacks)
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(_describe(labels, series, total))}</desc>',
    ]
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(f'<line class="chart-grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="chart-axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        base: float = top + plot_h
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = value * scale
            base -= h
            tip = f"{label}: {_fmt(value)}" if len(series) == 1 and not s.label else f"{label} · {s.label}: {_fmt(value)}"
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{s.colour}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text class="chart-axis" x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}"'
                f' text-anchor="middle">{escape(label)}</text>'
            )
    parts.append(f'<line class="chart-baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(chart_id: str, title: str, rows: list[tuple[str, int, str]], *, width: int = 720) -> Markup:
    """Horizontal bars, one per (label, value, colour), longest first as given."""
    row_h, gap, label_w, value_w = 26, 8, 170, 70
    height = max(1, len(rows)) * (row_h + gap) + gap
    plot_w = width - label_w - value_w
    top_value = max((v for _, v, _ in rows), default=0) or 1
    total = sum(v for _, v, _ in rows)
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">'
        + escape("; ".join(f"{label}: {_fmt(v)}" for label, v, _ in rows) or "No data")
        + "</desc>",
    ]
    for i, (label, value, colour) in enumerate(rows):
        y = gap + i * (row_h + gap)
        w = max(2.0, plot_w * value / top_value) if value else 0.0
        share = f" ({value / total:.0%})" if total else ""
        shown = label if len(label) <= 24 else label[:23] + "…"
        parts.append(f'<text class="chart-label" x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">{escape(shown)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h}" fill="{colour}">'
            f"<title>{escape(f'{label}: {_fmt(value)}{share}')}</title></rect>"
        )
        parts.append(f'<text class="chart-value" x="{label_w + w + 6:.1f}" y="{y + row_h / 2 + 4:.1f}">{_fmt(value)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(title: str, values: list[int], labels: list[str], *, width: int = 210, height: int = 30) -> Markup:
    """A tiny column chart (warnings per day) with a title for assistive technology."""
    top = max(values, default=0) or 1
    slot = width / max(1, len(values))
    parts = [
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="{escape(title)}">'
    ]
    for i, (value, label) in enumerate(zip(values, labels)):
        h = max(1.0, (height - 2) * value / top) if value else 1.0
        cls = "spark-bar" if value else "spark-empty"
        parts.append(
            f'<rect class="{cls}" x="{i * slot + 1:.1f}" y="{height - h:.1f}" width="{max(1.0, slot - 2):.1f}"'
            f' height="{h:.1f}"><title>{escape(f"{label}: {value}")}</title></rect>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _describe(labels: list[str], series: list[Series], total: int) -> str:
    if not labels:
        return "No data in this range."
    span = f"{labels[0]} to {labels[-1]}" if len(labels) > 1 else labels[0]
    if len(series) <= 1:
        return f"{span}; {_fmt(total)} in all."
    named = ", ".join(f"{s.label}: {_fmt(sum(s.values))}" for s in series)
    return f"{span}; {named}."
