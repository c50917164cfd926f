"""The dashboard's charts, drawn on the server as SVG.

Why SVG from Python rather than a JavaScript chart library: the charts then work with
JavaScript off (the console's core promise), print sharply (a funder saves the printable
page as PDF), need nothing vendored or upgraded, and take their words and number formats
from the same gettext catalogue and Babel locale as the rest of the page, so a Welsh page
gets Welsh charts. Each chart is a ``role="img"`` SVG named by its ``<title>`` and
described by its ``<desc>``; the data table under it is the accessible equivalent and
holds the same numbers.

Colours are from the Okabe–Ito palette (safe for the common colour-vision deficiencies),
every bar has a dark outline (3:1 against the page) and a value label, and the two series
of a pair differ in pattern as well as colour. A withheld (suppressed) figure is drawn as
a grey hatched box labelled "fewer than N" — never as a zero bar — and a figure not yet
known (a retention window that ends after the period) as a dashed box labelled so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

BLUE, ORANGE, GREEN, VERMILLION, SKY, PURPLE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#56B4E9",
    "#CC79A7",
)
INK, GREY, GRID = "#0b0c0c", "#505a5f", "#b1b4b6"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
# (fill colour, pattern): solid, diagonal stripes, dots — a pair never differs in colour alone
STYLES = [(BLUE, "solid"), (ORANGE, "stripes"), (GREEN, "dots")]


@dataclass(frozen=True)
class Value:
    """One figure as drawn: its number (None when withheld or not known), its state
    (``ok``, ``suppressed``, ``unknown``) and its text as the table writes it."""

    number: float | None
    state: str
    text: str


@dataclass(frozen=True)
class Series:
    name: str
    values: list[Value]


def _nice_max(top: float) -> tuple[float, float]:
    """A round axis maximum ≥ top and its tick step (4–6 ticks)."""
    if top <= 0:
        return 1.0, 0.25
    raw = top / 5
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * power
        if step >= raw:
            break
    return step * math.ceil(top / step - 1e-9), step


def _defs(uid: str) -> str:
    return (
        "<defs>"
        f'<pattern id="{uid}-stripes" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        f'<rect width="8" height="8" fill="{ORANGE}"/>'
        f'<rect width="3" height="8" fill="{INK}" fill-opacity="0.45"/></pattern>'
        f'<pattern id="{uid}-dots" width="7" height="7" patternUnits="userSpaceOnUse">'
        f'<rect width="7" height="7" fill="{GREEN}"/>'
        f'<circle cx="3.5" cy="3.5" r="1.6" fill="{INK}" fill-opacity="0.55"/></pattern>'
        f'<pattern id="{uid}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#f3f2f1"/>'
        f'<rect width="1.5" height="6" fill="{GREY}"/></pattern>'
        "</defs>"
    )


def _fill(uid: str, style: int) -> str:
    colour, pattern = STYLES[style % len(STYLES)]
    return colour if pattern == "solid" else f"url(#{uid}-{pattern})"


def _text(
    x: float, y: float, text: str, *, anchor: str = "start", size: int = 13, **attrs: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{INK}"{extra}>{escape(text)}</text>'
    )


def _svg(
    uid: str, width: int, height: int, title: str, desc: str, body: list[str], kind: str = ""
) -> Markup:
    # every text in ``body`` went through ``escape`` (``_text``); the rest is our own markup
    return Markup(  # noqa: S704
        f'<svg class="chart-svg {kind}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{uid}-title {uid}-desc" font-family="{escape(FONT)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{uid}-title">{escape(title)}</title>'
        f'<desc id="{uid}-desc">{escape(desc)}</desc>' + _defs(uid) + "".join(body) + "</svg>"
    )


def _legend(uid: str, series: Sequence[Series], y: float, extra: Sequence[str] = ()) -> list[str]:
    out, x = [], 0.0
    for i, s in enumerate(series):
        out.append(
            f'<rect x="{x:.1f}" y="{y - 11:.1f}" width="14" height="14" fill="{_fill(uid, i)}" '
            f'stroke="{INK}" stroke-width="1"/>'
        )
        out.append(_text(x + 20, y, s.name))
        x += 30 + 7.2 * len(s.name)
    for item in extra:
        out.append(item.replace("{x}", f"{x:.1f}"))
    return out


def _withheld_box(uid: str, x: float, y: float, w: float, h: float, state: str) -> str:
    if state == "suppressed":
        return (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'fill="url(#{uid}-hatch)" stroke="{GREY}" stroke-width="1"/>'
        )
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#fff" '
        f'stroke="{GREY}" stroke-width="1" stroke-dasharray="4 3"/>'
    )


def hbars(
    uid: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    percent: bool = False,
) -> Markup:
    """Horizontal bars: one group per label (the label written above it, whole), one bar
    per series, each with its value at its end."""
    width, value_w, label_h = 420, 110, 20
    bar_h, gap = 18, 12
    plot_w = width - value_w
    numbers = [v.number for s in series for v in s.values if v.number is not None]
    top = 1.0 if percent else _nice_max(max(numbers, default=0.0))[0]
    group_h = label_h + bar_h * len(series) + gap
    legend_h = 30 if len(series) > 1 else 0
    height = legend_h + group_h * len(labels) + 4
    body: list[str] = []
    if len(series) > 1:
        body += _legend(uid, series, 16)
    for i, label in enumerate(labels):
        y0 = legend_h + i * group_h
        body.append(_text(0, y0 + 15, label, size=14, font_weight="700"))
        group = [s.values[i] for s in series]
        if len(series) > 1 and all(v.state == "suppressed" for v in group):
            # a whole group withheld: one labelled box, not a box per series
            y = y0 + label_h
            body.append(_withheld_box(uid, 1, y + 2, plot_w * 0.2, bar_h - 4, "suppressed"))
            body.append(_text(plot_w * 0.2 + 8, y + bar_h - 5, group[0].text, fill=GREY))
            continue
        for j, s in enumerate(series):
            v = s.values[i]
            y = y0 + label_h + j * bar_h
            if v.number is None:
                if v.state == "suppressed":
                    body.append(_withheld_box(uid, 1, y + 2, plot_w * 0.2, bar_h - 4, v.state))
                    body.append(_text(plot_w * 0.2 + 8, y + bar_h - 5, v.text, fill=GREY))
                else:
                    body.append(_text(6, y + bar_h - 5, v.text, fill=GREY))
                continue
            w = max(plot_w * (v.number / top) if top else 0, 1)
            body.append(
                f'<rect x="1" y="{y + 2:.1f}" width="{w:.1f}" height="{bar_h - 4}" '
                f'fill="{_fill(uid, j)}" stroke="{INK}" stroke-width="1"/>'
            )
            body.append(_text(w + 7, y + bar_h - 5, v.text))
    return _svg(uid, width, height, title, desc, body, kind="chart-svg-bars")


def columns(
    uid: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    bars: Series,
    *,
    line: Series | None = None,
    number: Callable[[float], str] = str,
    line_legend: str = "",
) -> Markup:
    """Vertical columns (one per label, e.g. months), optionally with a line on its own
    right-hand axis (a running total); ticks written with ``number``."""
    width, height = 640, 300
    left, right, top_pad, bottom = 64, 64 if line else 16, 34, 48
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = max(len(labels), 1)
    slot = plot_w / n
    bar_w = min(slot * 0.7, 60)
    bar_max, step = _nice_max(max((v.number or 0 for v in bars.values), default=0.0))
    body: list[str] = []
    tick = 0.0
    while tick <= bar_max + 1e-9:
        y = top_pad + plot_h - plot_h * tick / bar_max
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        body.append(_text(left - 6, y + 4, number(tick), anchor="end", size=12))
        tick += step
    legend = [
        f'<rect x="0" y="5" width="14" height="14" fill="{BLUE}" stroke="{INK}" stroke-width="1"/>',
        _text(20, 17, bars.name),
    ]
    line_max = 1.0
    if line is not None:
        line_max, line_step = _nice_max(max((v.number or 0 for v in line.values), default=0.0))
        t = 0.0
        while t <= line_max + 1e-9:
            y = top_pad + plot_h - plot_h * t / line_max
            body.append(_text(left + plot_w + 6, y + 4, number(t), size=12))
            t += line_step
        lx = 40 + 7.2 * len(bars.name)
        legend += [
            f'<line x1="{lx:.1f}" y1="12" x2="{lx + 24:.1f}" y2="12" stroke="{VERMILLION}" '
            'stroke-width="3"/>',
            f'<circle cx="{lx + 12:.1f}" cy="12" r="4" fill="#fff" stroke="{VERMILLION}" '
            'stroke-width="2"/>',
            _text(lx + 30, 17, line_legend or line.name),
        ]
    body += legend
    every = max(1, math.ceil(n / 12))
    for i, (label, v) in enumerate(zip(labels, bars.values, strict=True)):
        cx = left + slot * i + slot / 2
        if i % every == 0:
            first, _, second = label.partition("\n")
            body.append(_text(cx, top_pad + plot_h + 18, first, anchor="middle", size=12))
            if second:
                body.append(_text(cx, top_pad + plot_h + 34, second, anchor="middle", size=12))
        if v.number is None:
            box_h = plot_h * 0.3
            body.append(
                _withheld_box(uid, cx - bar_w / 2, top_pad + plot_h - box_h, bar_w, box_h, v.state)
            )
            body.append(
                _text(cx, top_pad + plot_h - box_h - 6, v.text, anchor="middle", size=11, fill=GREY)
            )
            continue
        h = plot_h * v.number / bar_max
        body.append(
            f'<rect x="{cx - bar_w / 2:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar_w:.1f}" '
            f'height="{max(h, 0.5):.1f}" fill="{BLUE}" stroke="{INK}" stroke-width="1"/>'
        )
        if n <= 6:
            body.append(_text(cx, top_pad + plot_h - h - 5, v.text, anchor="middle", size=11))
    if line is not None:
        points = [
            (left + slot * i + slot / 2, top_pad + plot_h - plot_h * v.number / line_max)
            for i, v in enumerate(line.values)
            if v.number is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{VERMILLION}" stroke-width="3"/>'
            )
        body += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#fff" stroke="{VERMILLION}" '
            'stroke-width="2"/>'
            for x, y in points
        ]
    body.append(
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" '
        f'y2="{top_pad + plot_h}" stroke="{INK}" stroke-width="1"/>'
    )
    return _svg(uid, width, height, title, desc, body)
