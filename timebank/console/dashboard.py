"""The funder dashboard (SPEC §3.9, §7.9): the banks in the user's scope, one or several
together, as headline tiles, charts and their data tables — all **published** figures
(cell-key perturbed, withheld by population), the very reports the API serves funders,
from the same builders (:func:`timebank.reports.run.build_many`), cached per (banks,
period, day, report, parameters) by :mod:`timebank.reports.cache`. Nothing is computed
here but the drawing: every number on the page is a value of the report's JSON, and the
CSV and XLSX downloads render the same built reports.

Funders, brokers and admins see it (brokers and admins: the "to share" version). A bank
outside the user's scope is 404, as an unknown one (SPEC §7.1). Periods are whole lattice
periods only (§7.3): a preset (last month, last quarter, last financial year, last
calendar year) or a chosen month, quarter, April–March year or calendar year; anything
else is refused in plain English. Plain HTML forms and links: no JavaScript needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from litestar import Request, Response, get
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.auth import users
from timebank.console import charts
from timebank.console.base import Ctx, now, page_lang, render, settings_of, signed_in
from timebank.console.formatting import DATE_LOCALES
from timebank.console.messages import Problems
from timebank.db import reads_that_may_lag
from timebank.errors import Forbidden, NotFound
from timebank.evidence import service as evidence
from timebank.reports import cellkey, run
from timebank.reports import render as files
from timebank.reports.cache import PublishedCache, Report, published
from timebank.reports.periods import (
    Period,
    add_months,
    last_complete_quarter,
    on_lattice,
    resolve_period,
)
from timebank.reports.service import DIMENSIONS, Options
from timebank.timebanks.models import TimeBank

ROLES = (Role.funder, Role.broker, Role.admin)
# resolve_period asks the role only to know published figures are wanted: they always are
FUNDER = Principal(key_id=None, role=Role.funder)
MAX_BANKS = 10  # a global admin's default selection is capped; each can be chosen
REPORTS: list[tuple[str, Options]] = [
    ("summary", Options()),
    ("social-value", Options()),
    ("timeseries", Options(interval="month")),
    ("categories", Options()),
    ("exchange-types", Options()),
    ("organisations", Options()),
    ("demographics", Options()),
    ("reciprocity", Options()),
    ("distribution", Options()),
    ("retention", Options()),
]
NAMES = [name for name, _ in REPORTS]
TOP_ORGANISATIONS = 15


def cache_of(request: Request[Any, Any, Any]) -> PublishedCache:
    """This process's cache of published figures (one per application)."""
    cache: PublishedCache | None = request.app.state.get("published_cache")
    if cache is None:
        cache = PublishedCache()
        request.app.state.published_cache = cache
    return cache


# --- periods ---------------------------------------------------------------------------------

PRESETS = ("last-month", "last-quarter", "last-financial-year", "last-year")
TOKEN = re.compile(r"(\d{4})-(\d{2})|(\d{4})-Q([1-4])|FY(\d{4})|(\d{4})")


def preset_range(name: str, today: date) -> tuple[date, date]:
    this_month = today.replace(day=1)
    if name == "last-month":
        return add_months(this_month, -1), this_month
    if name == "last-quarter":
        return last_complete_quarter(today)
    if name == "last-financial-year":
        end = date(today.year if today.month >= 4 else today.year - 1, 4, 1)
        return add_months(end, -12), end
    return date(today.year - 1, 1, 1), date(today.year, 1, 1)


def parse_token(token: str) -> tuple[date, date] | None:
    """``2026-10`` (a month), ``2026-Q3``, ``FY2026`` (April 2026 to March 2027), ``2026``."""
    m = TOKEN.fullmatch(token)
    if m is None:
        return None
    month_y, month, q_y, q, fy, year = m.groups()
    if month_y and 1 <= int(month) <= 12:
        start = date(int(month_y), int(month), 1)
        return start, add_months(start, 1)
    if q_y:
        start = date(int(q_y), 3 * (int(q) - 1) + 1, 1)
        return start, add_months(start, 3)
    if fy:
        return date(int(fy), 4, 1), date(int(fy) + 1, 4, 1)
    if year:
        return date(int(year), 1, 1), date(int(year) + 1, 1, 1)
    return None


def token_of(start: date, end: date) -> str:
    months = (end.year - start.year) * 12 + end.month - start.month
    if months == 1:
        return f"{start:%Y-%m}"
    if months == 3:
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if start.month == 4:
        return f"FY{start.year}"
    return str(start.year)


@dataclass
class Picker:
    """The period picker's choices: presets, then each kind of lattice period, latest
    first."""

    presets: list[tuple[str, str]]
    groups: list[tuple[str, list[tuple[str, str]]]]


def period_label(ctx: Ctx, start: date, end: date) -> str:
    _ = ctx.gettext
    loc = DATE_LOCALES.get(ctx.lang, ctx.lang)
    last = add_months(end, -1)
    if end == add_months(start, 1):
        return format_date(start, "MMMM y", locale=loc)
    if end == add_months(start, 3):
        return _("%(first)s to %(last)s") % {
            "first": format_date(start, "MMMM", locale=loc),
            "last": format_date(last, "MMMM y", locale=loc),
        }
    if start.month == 4:
        return _("Financial year %(first)s to %(last)s") % {
            "first": format_date(start, "MMMM y", locale=loc),
            "last": format_date(last, "MMMM y", locale=loc),
        }
    return _("Calendar year %(year)s") % {"year": start.year}


def incomplete(end: date, today: date) -> bool:
    """A period that is not over by ``today``: its figures will still grow."""
    return end > today


def picker(ctx: Ctx, today: date) -> Picker:
    _ = ctx.gettext

    def label(start: date, end: date) -> str:
        text = period_label(ctx, start, end)
        if incomplete(end, today):
            return _("%(period)s (incomplete: not over yet)") % {"period": text}
        return text

    names = {
        "last-month": _("Last month"),
        "last-quarter": _("Last quarter"),
        "last-financial-year": _("Last financial year (April to March)"),
        "last-year": _("Last calendar year"),
    }
    presets = []
    for p in PRESETS:
        start, end = preset_range(p, today)
        when = str(start.year) if p == "last-year" else period_label(ctx, start, end)
        presets.append((p, f"{names[p]}: {when}"))
    this_month = today.replace(day=1)
    months = [add_months(this_month, -i) for i in range(36)]
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    quarters = [add_months(quarter, -3 * i) for i in range(12)]
    fy = today.year if today.month >= 4 else today.year - 1
    groups = [
        (
            _("Months"),
            [(token_of(m, add_months(m, 1)), label(m, add_months(m, 1))) for m in months],
        ),
        (
            _("Quarters"),
            [(token_of(q, add_months(q, 3)), label(q, add_months(q, 3))) for q in quarters],
        ),
        (
            _("Financial years (April to March)"),
            [(f"FY{y}", label(date(y, 4, 1), date(y + 1, 4, 1))) for y in range(fy, fy - 6, -1)],
        ),
        (
            _("Calendar years"),
            [
                (str(y), label(date(y, 1, 1), date(y + 1, 1, 1)))
                for y in range(today.year, today.year - 6, -1)
            ],
        ),
    ]
    return Picker(presets, groups)


# --- who and what ----------------------------------------------------------------------------


@dataclass
class Choice:
    """What the page shows: the banks, the period and how it was asked for."""

    banks: list[TimeBank]
    chosen: list[str]  # slugs, for the form and the links
    token: str  # the picker's value: a preset name or a period token
    start: date | None = None
    end: date | None = None
    problems: Problems = field(default_factory=Problems)

    @property
    def query(self) -> str:
        parts = [f"timebank={slug}" for slug in self.chosen] + [f"period={self.token}"]
        return "&".join(parts)


async def scoped(
    request: Request[Any, Any, Any], db_session: AsyncSession
) -> tuple[Ctx, list[TimeBank]]:
    """The signed-in user's context and the banks they may see; 403 for a role without
    reports (none today: every console role has them)."""
    who = await signed_in(request, db_session)
    if who.user.role not in ROLES:
        raise Forbidden("Your role cannot use this page")
    banks = await users.bank_names(db_session, who.timebank_ids)
    for b in banks:
        db_session.expunge(b)
    return Ctx(request, page_lang(request), who, None, banks), banks


def choose(ctx: Ctx, scope: list[TimeBank], today: date) -> Choice:
    """The banks and period asked for in the query string. A bank outside the scope is
    404 (as an unknown one); a period off the lattice is a problem on the picker."""
    _ = ctx.gettext
    q = ctx.request.query_params
    asked = list(dict.fromkeys(s[:63] for s in q.getall("timebank", [])))
    by_slug = {b.slug: b for b in scope}
    if any(s not in by_slug for s in asked):
        raise NotFound("No such time bank")
    banks = [by_slug[s] for s in asked] or scope[:MAX_BANKS]
    if not banks:
        raise NotFound("No time bank")
    choice = Choice(banks, [b.slug for b in banks], "last-quarter")
    raw_from, raw_to = q.get("from"), q.get("to")
    wanted = (q.get("period") or "").strip() or "last-quarter"
    if raw_from or raw_to:
        try:
            start, end = date.fromisoformat(raw_from or ""), date.fromisoformat(raw_to or "")
        except ValueError:
            choice.problems.add(
                "period", _("Enter the dates as year-month-day, for example 2026-07-01")
            )
            return choice
        if not on_lattice(start, end):
            choice.problems.add(
                "period",
                _(
                    "Choose a whole month, a calendar quarter, a financial year (April to "
                    "March) or a calendar year. %(from)s to %(to)s is not one of these: "
                    "published figures are only for whole periods, so that overlapping "
                    "periods cannot be compared to work out a person's figures."
                )
                % {"from": ctx.day(start), "to": ctx.day(end)},
            )
            return choice
        choice.start, choice.end, choice.token = start, end, token_of(start, end)
        return choice
    if wanted in PRESETS:
        choice.start, choice.end = preset_range(wanted, today)
        choice.token = wanted
        return choice
    found = parse_token(wanted)
    if found is None:
        choice.problems.add(
            "period",
            _(
                "Choose a period from the list: a month, a calendar quarter, a financial "
                "year (April to March) or a calendar year."
            ),
        )
        return choice
    choice.start, choice.end = found
    choice.token = wanted
    return choice


# --- figures as drawn --------------------------------------------------------------------------


@dataclass
class Cell:
    """A figure of the page: its value in the report's JSON and its text."""

    value: Any
    text: str
    state: str  # ok, suppressed, unknown


@dataclass
class Table:
    """A chart's data table: the same figures as the chart, in the report's units."""

    caption: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    report: str
    figures: list[str]  # the JSON figure of each column, for the tests and the curious
    total: tuple[str, list[Cell]] | None = None  # the report's published total of the rows
    note: str = ""  # e.g. that separately protected rows need not add up to the total


@dataclass
class Chart:
    id: str
    title: str
    summary: str
    svg: Markup
    table: Table
    note: str = ""


class Numbers:
    """Figures written in the page's language, withheld ones said so."""

    def __init__(self, ctx: Ctx, threshold: int) -> None:
        self.ctx = ctx
        self.locale = DATE_LOCALES.get(ctx.lang, ctx.lang)
        self.threshold = threshold
        _ = ctx.gettext
        self.withheld = _("fewer than %(n)s people") % {"n": threshold}
        self.unknown = _("not yet known")

    def number(self, value: float) -> str:
        return str(format_decimal(value, locale=self.locale))

    def percent(self, value: float) -> str:
        return str(format_decimal(round(value * 100, 1), locale=self.locale)) + "%"

    def cell(self, row: dict[str, Any], name: str, *, percent: bool = False) -> Cell:
        value = row.get(name)
        if value is None:
            if row.get("suppressed") or name in row.get("_suppressed", ()):
                return Cell(None, self.withheld, "suppressed")
            return Cell(None, self.unknown, "unknown")
        return Cell(value, self.percent(value) if percent else self.number(value), "ok")

    def value(self, c: Cell, *, percent: bool = False) -> charts.Value:
        number = None if c.value is None else float(c.value)
        return charts.Value(number, c.state, c.text)


def scalars(body: dict[str, Any]) -> dict[str, Any]:
    """A report's top-level figures as a row (its ``suppressed`` list per figure)."""
    return {**body, "suppressed": False, "_suppressed": set(body.get("suppressed", []))}


@dataclass
class Tile:
    label: str
    cell: Cell
    note: str = ""
    figure: str = ""  # the summary's JSON figure it shows, for the tests and the curious


@dataclass
class View:
    tiles: list[Tile]
    charts: list[tuple[str, list[Chart]]]  # section heading → its charts
    value: dict[str, Any]
    threshold: int


def group_label(ctx: Ctx, dimension: str, value: str) -> str:
    _ = ctx.gettext
    pgettext = ctx.pgettext
    labels = {
        "not_stated": _("Not stated"),
        "prefer_not_to_say": _("Prefer not to say"),
        "under_18": _("Under 18"),
        "75+": _("75 and over"),
        "female": _("Female"),
        "male": _("Male"),
        "non_binary": _("Non-binary"),
        "other": _("Other"),
        "yes": pgettext("disability", "Disabled"),  # a person, not an account
        "no": _("Not disabled"),
        "asian": _("Asian"),
        "black": _("Black"),
        "mixed": _("Mixed"),
        "white": _("White"),
    }
    return labels.get(value, value.replace("-", "–"))


def build_view(ctx: Ctx, reports: dict[str, dict[str, Any]], period_text: str) -> View:
    """Tiles and charts from the reports' JSON bodies (nothing recomputed)."""
    _ = ctx.gettext
    summary = reports["summary"]
    threshold = int(summary["suppression_threshold"])
    n = Numbers(ctx, threshold)
    loc = n.locale
    top = scalars(summary)
    sv = scalars(reports["social-value"])
    tiles = [
        Tile(_("Hours exchanged"), n.cell(top, "hours"), figure="hours"),
        Tile(_("Exchanges"), n.cell(top, "exchanges"), figure="exchanges"),
        Tile(
            _("Members taking part"),
            n.cell(top, "participating_members"),
            _("members with an exchange in the period"),
            figure="participating_members",
        ),
        Tile(
            _("Organisations taking part"),
            n.cell(top, "participating_organisations"),
            _(
                "organisations with an exchange in the period; the table of organisations below lists every registered organisation, taking part or not"
            ),
            figure="participating_organisations",
        ),
        Tile(
            _("Active members"),
            n.cell(top, "active_members"),
            _("with an exchange in the 12 months to the end of the period"),
            figure="active_members",
        ),
        Tile(_("New members"), n.cell(top, "new_members"), figure="new_members"),
    ]
    value_cell = n.cell(sv, "value_pounds")
    if value_cell.value is not None:
        value_cell.text = str(format_currency(value_cell.value, "GBP", locale=loc))
    rate = sv.get("rate_pence_per_hour") or 0
    rate_text = str(format_currency(rate / 100, "GBP", locale=loc))
    tiles.append(
        Tile(
            _("Social value"),
            value_cell,
            _(
                "at %(rate)s an hour: %(source)s. A replacement-cost valuation, not a social return on investment (SROI)."
            )
            % {"rate": rate_text, "source": sv.get("rate_source", "")},
            figure="value_pounds",
        )
    )

    sections: list[tuple[str, list[Chart]]] = []

    # hours and exchanges per month
    ts = reports["timeseries"]["rows"]
    starts = [date.fromisoformat(r["period_start"]) for r in ts]
    months = [format_date(d, "MMM y", locale=loc) for d in starts]
    # under each column: the month, and its year under the first column and each January
    axis = [
        format_date(d, "MMM", locale=loc) + (f"\n{d.year}" if i == 0 or d.month == 1 else "")
        for i, d in enumerate(starts)
    ]
    hours = [n.cell(r, "hours") for r in ts]
    cumulative = [n.cell(r, "cumulative_hours") for r in ts]
    exchanges = [n.cell(r, "exchanges") for r in ts]
    separately = _(
        "Each figure is protected separately, so the rows need not add up exactly to the total, which is the published total of the period."
    )
    ts_top = scalars(reports["timeseries"])
    month_table = Table(
        _("Hours and exchanges per month, %(period)s") % {"period": period_text},
        [_("Hours"), _("Running total of hours"), _("Exchanges")],
        [(m, [h, c, e]) for m, h, c, e in zip(months, hours, cumulative, exchanges, strict=True)],
        "timeseries",
        ["hours", "cumulative_hours", "exchanges"],
        total=(
            _("Total"),
            [n.cell(ts_top, "hours"), n.cell(ts_top, "hours"), n.cell(ts_top, "exchanges")],
        ),
        note=_(
            "Each month is protected separately, so the months need not add up exactly to the total; the running total is scaled so that it ends at the published total of the period."
        ),
    )
    total_hours = cumulative[-1].text if cumulative else ""
    sections.append(
        (
            _("Over time"),
            [
                Chart(
                    "hours-per-month",
                    _("Hours per month, with the running total"),
                    _(
                        "Columns: hours exchanged each month. Line: the running total, %(total)s hours by the end of the period (the published total)."
                    )
                    % {"total": total_hours},
                    charts.columns(
                        "hours-per-month",
                        _("Hours per month, with the running total"),
                        _(
                            "Hours exchanged each month as columns and the running total as a line. The table below the chart has the figures."
                        ),
                        axis,
                        charts.Series(_("Hours"), [n.value(c) for c in hours]),
                        line=charts.Series(
                            _("Running total of hours"), [n.value(c) for c in cumulative]
                        ),
                        number=n.number,
                    ),
                    month_table,
                ),
                Chart(
                    "exchanges-per-month",
                    _("Exchanges per month"),
                    _("Columns: the number of exchanges each month."),
                    charts.columns(
                        "exchanges-per-month",
                        _("Exchanges per month"),
                        _(
                            "The number of exchanges each month as columns. The table below the chart has the figures."
                        ),
                        axis,
                        charts.Series(_("Exchanges"), [n.value(c) for c in exchanges]),
                        number=n.number,
                    ),
                    Table(
                        _("Exchanges per month, %(period)s") % {"period": period_text},
                        [_("Exchanges")],
                        [(m, [e]) for m, e in zip(months, exchanges, strict=True)],
                        "timeseries",
                        ["exchanges"],
                        total=(_("Total"), [n.cell(ts_top, "exchanges")]),
                        note=separately,
                    ),
                ),
            ],
        )
    )

    # what people did: categories, exchange types, organisations
    cats = reports["categories"]["rows"]
    cat_labels = [r["name"] or r["category"] for r in cats]
    cat_hours = [n.cell(r, "hours") for r in cats]
    kinds = reports["exchange-types"]["rows"]
    kind_names = {
        "p2p": _("Member to member"),
        "p2o": _("Member to organisation"),
        "o2p": _("Organisation to member"),
        "o2o": _("Organisation to organisation"),
    }
    kind_labels = [kind_names.get(r["kind"], r["kind"]) for r in kinds]
    kind_hours = [n.cell(r, "hours") for r in kinds]
    kind_exchanges = [n.cell(r, "exchanges") for r in kinds]
    orgs = reports["organisations"]["rows"]
    ranked = sorted(
        orgs, key=lambda r: -((r.get("hours_given") or 0) + (r.get("hours_received") or 0))
    )[:TOP_ORGANISATIONS]
    several = len({r["timebank"] for r in orgs}) > 1
    names = {b.slug: b.name for b in ctx.banks}

    def org_label(r: dict[str, Any]) -> str:
        return (
            f"{r['organisation']} ({names.get(r['timebank'], r['timebank'])})"
            if several
            else str(r["organisation"])
        )

    given = [n.cell(r, "hours_given") for r in orgs]
    received = [n.cell(r, "hours_received") for r in orgs]
    org_index = {id(r): i for i, r in enumerate(orgs)}
    sections.append(
        (
            _("What people did"),
            [
                Chart(
                    "categories",
                    _("Hours by category"),
                    _("Bars: hours exchanged in each category."),
                    charts.hbars(
                        "categories",
                        _("Hours by category"),
                        _(
                            "Hours exchanged in each category as bars. The table below the chart has the figures."
                        ),
                        cat_labels,
                        [charts.Series(_("Hours"), [n.value(c) for c in cat_hours])],
                    ),
                    Table(
                        _("Hours by category, %(period)s") % {"period": period_text},
                        [_("Hours"), _("Exchanges"), _("Members giving")],
                        [
                            (label, [h, n.cell(r, "exchanges"), n.cell(r, "providers")])
                            for label, h, r in zip(cat_labels, cat_hours, cats, strict=True)
                        ],
                        "categories",
                        ["hours", "exchanges", "providers"],
                        total=(
                            _("All categories"),
                            [
                                n.cell(scalars(reports["categories"]), "hours"),
                                n.cell(scalars(reports["categories"]), "exchanges"),
                                Cell(None, "", "none"),
                            ],
                        ),
                        note=separately,
                    ),
                ),
                Chart(
                    "exchange-types",
                    _("Exchange types"),
                    _("Bars: hours in each type of exchange, by who gave and who received."),
                    charts.hbars(
                        "exchange-types",
                        _("Exchange types"),
                        _(
                            "Hours in each type of exchange as bars. The table below the chart has the figures."
                        ),
                        kind_labels,
                        [charts.Series(_("Hours"), [n.value(c) for c in kind_hours])],
                    ),
                    Table(
                        _("Exchange types, %(period)s") % {"period": period_text},
                        [_("Hours"), _("Exchanges")],
                        [
                            (label, [h, e])
                            for label, h, e in zip(
                                kind_labels, kind_hours, kind_exchanges, strict=True
                            )
                        ],
                        "exchange-types",
                        ["hours", "exchanges"],
                        total=(
                            _("All types"),
                            [
                                n.cell(scalars(reports["exchange-types"]), "hours"),
                                n.cell(scalars(reports["exchange-types"]), "exchanges"),
                            ],
                        ),
                        note=separately,
                    ),
                ),
                Chart(
                    "organisations",
                    _("Hours given and received per organisation"),
                    _(
                        "Pairs of bars: hours an organisation's volunteers gave (solid) and hours it received (striped). The chart shows the %(n)s busiest; the table has every organisation."
                    )
                    % {"n": TOP_ORGANISATIONS},
                    charts.hbars(
                        "organisations",
                        _("Hours given and received per organisation"),
                        _(
                            "Hours each organisation gave and received, as pairs of bars. The table below the chart has the figures."
                        ),
                        [org_label(r) for r in ranked],
                        [
                            charts.Series(
                                _("Hours given"), [n.value(given[org_index[id(r)]]) for r in ranked]
                            ),
                            charts.Series(
                                _("Hours received"),
                                [n.value(received[org_index[id(r)]]) for r in ranked],
                            ),
                        ],
                    ),
                    Table(
                        _("Hours given and received per organisation, %(period)s")
                        % {"period": period_text},
                        [
                            _("Hours given"),
                            _("Hours received"),
                            _("Members engaged"),
                            _("Exchanges"),
                        ],
                        [
                            (
                                org_label(r),
                                [g, rc, n.cell(r, "members_engaged"), n.cell(r, "exchanges")],
                            )
                            for r, g, rc in zip(orgs, given, received, strict=True)
                        ],
                        "organisations",
                        ["hours_given", "hours_received", "members_engaged", "exchanges"],
                        note=_(
                            'Every registered organisation is listed, taking part or not; the figure "Organisations taking part" above counts those with an exchange in the period.'
                        ),
                    ),
                ),
            ],
        )
    )

    # who took part: demographics
    demo = reports["demographics"]["rows"]
    dim_names = {
        "age_band": _("Age"),
        "gender": _("Gender"),
        "disability": _("Disability"),
        "ethnicity": _("Ethnicity"),
    }
    demo_charts = []
    for dim in DIMENSIONS:
        rows = [r for r in demo if r["dimension"] == dim]
        labels = [group_label(ctx, dim, r["group"]) for r in rows]
        taking_part = [n.cell(r, "participating_members") for r in rows]
        title = _("Members taking part by %(dimension)s") % {"dimension": dim_names[dim].lower()}
        demo_charts.append(
            Chart(
                f"demographics-{dim.replace('_', '-')}",
                title,
                _(
                    "Bars: members who took part in each group, of those who agreed to share this information."
                ),
                charts.hbars(
                    f"demographics-{dim.replace('_', '-')}",
                    title,
                    _(
                        "Members taking part in each group, as bars; members who did not agree to share their details are left out. The table below the chart has the figures."
                    ),
                    labels,
                    [charts.Series(_("Members taking part"), [n.value(c) for c in taking_part])],
                ),
                Table(
                    _("%(dimension)s of consenting members, %(period)s")
                    % {"dimension": dim_names[dim], "period": period_text},
                    [
                        _("Registered members"),
                        _("Members taking part"),
                        _("Hours given"),
                        _("Hours received"),
                    ],
                    [
                        (
                            label,
                            [
                                n.cell(r, "registered_members"),
                                t,
                                n.cell(r, "hours_given"),
                                n.cell(r, "hours_received"),
                            ],
                        )
                        for label, t, r in zip(labels, taking_part, rows, strict=True)
                    ],
                    "demographics",
                    [
                        "registered_members",
                        "participating_members",
                        "hours_given",
                        "hours_received",
                    ],
                ),
            )
        )
    sections.append((_("Who took part"), demo_charts))

    # how people took part: reciprocity, distribution, retention
    rec = reports["reciprocity"]["rows"]
    patterns = {
        "gave_and_received": _("Gave and received"),
        "gave_only": _("Gave only"),
        "received_only": _("Received only"),
    }
    rec_labels = [patterns.get(r["pattern"], r["pattern"]) for r in rec]
    rec_members = [n.cell(r, "members") for r in rec]
    dist = reports["distribution"]["rows"]
    bins = [str(r["exchanges_per_member"]).replace("-", "–") for r in dist]
    dist_members = [n.cell(r, "members") for r in dist]
    ret = reports["retention"]["rows"]
    cohorts = [
        format_date(date.fromisoformat(r["cohort"] + "-01"), "MMM y", locale=loc) for r in ret
    ]
    windows = (3, 6, 12)
    shares = {
        w: [n.cell(r, f"first_exchange_within_{w}_months_share", percent=True) for r in ret]
        for w in windows
    }
    sections.append(
        (
            _("How people took part"),
            [
                Chart(
                    "reciprocity",
                    _("Giving and receiving"),
                    _(
                        "Bars: members who both gave and received time, who only gave, and who only received."
                    ),
                    charts.hbars(
                        "reciprocity",
                        _("Giving and receiving"),
                        _(
                            "Members who gave and received, gave only, or received only, as bars. The table below the chart has the figures."
                        ),
                        rec_labels,
                        [charts.Series(_("Members"), [n.value(c) for c in rec_members])],
                    ),
                    Table(
                        _("Giving and receiving, %(period)s") % {"period": period_text},
                        [_("Members"), _("Share of members taking part")],
                        [
                            (label, [m, n.cell(r, "share", percent=True)])
                            for label, m, r in zip(rec_labels, rec_members, rec, strict=True)
                        ],
                        "reciprocity",
                        ["members", "share"],
                    ),
                ),
                Chart(
                    "distribution",
                    _("Exchanges per member"),
                    _(
                        "Columns: how many registered members had 0, 1, 2 to 5, 6 to 10, 11 to 25, or 26 or more exchanges in the period."
                    ),
                    charts.columns(
                        "distribution",
                        _("Exchanges per member"),
                        _(
                            "A histogram of members by their number of exchanges in the period. The table below the chart has the figures."
                        ),
                        bins,
                        charts.Series(_("Members"), [n.value(c) for c in dist_members]),
                        number=n.number,
                    ),
                    Table(
                        _("Exchanges per member, %(period)s") % {"period": period_text},
                        [_("Members"), _("Share of members")],
                        [
                            (b, [m, n.cell(r, "share", percent=True)])
                            for b, m, r in zip(bins, dist_members, dist, strict=True)
                        ],
                        "distribution",
                        ["members", "share"],
                    ),
                ),
                Chart(
                    "retention",
                    _("New members' first exchange"),
                    _(
                        "Groups of bars, one group for each month members joined in: the share who had a first exchange within 3 months (solid), 6 months (striped) and 12 months (dotted). A window that ends after the period is not yet known."
                    ),
                    charts.hbars(
                        "retention",
                        _("New members' first exchange"),
                        _(
                            "For each month members joined in, the share who had a first exchange within 3, 6 and 12 months, as groups of bars. The table below the chart has the figures."
                        ),
                        cohorts,
                        [
                            charts.Series(
                                _("Within %(n)s months") % {"n": w}, [n.value(c) for c in shares[w]]
                            )
                            for w in windows
                        ],
                        percent=True,
                    ),
                    Table(
                        _("New members' first exchange, by the month they joined, %(period)s")
                        % {"period": period_text},
                        [_("New members"), *(_("Within %(n)s months") % {"n": w} for w in windows)],
                        [
                            (c, [n.cell(r, "members"), *(shares[w][i] for w in windows)])
                            for i, (c, r) in enumerate(zip(cohorts, ret, strict=True))
                        ],
                        "retention",
                        [
                            "members",
                            *(f"first_exchange_within_{w}_months_share" for w in windows),
                        ],
                    ),
                ),
            ],
        )
    )
    return View(tiles, sections, sv, threshold)


def download_labels(ctx: Ctx) -> list[tuple[str, str]]:
    _ = ctx.gettext
    labels = {
        "summary": _("Summary"),
        "social-value": _("Social value"),
        "timeseries": _("Per month"),
        "categories": _("Categories"),
        "exchange-types": _("Exchange types"),
        "organisations": _("Organisations"),
        "demographics": _("Demographics"),
        "reciprocity": _("Giving and receiving"),
        "distribution": _("Exchanges per member"),
        "retention": _("New members' first exchange"),
    }
    return [(name, labels[name]) for name in NAMES]


# --- pages -----------------------------------------------------------------------------------


def _today(choice_banks: list[TimeBank], moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(choice_banks[0].time_zone)).date()


async def figures(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    banks: list[TimeBank],
    start: date,
    end: date,
    names: list[str],
) -> tuple[Period, list[Report]]:
    """The published reports ``names`` for ``banks`` over [start, end), as of the start of
    today (UTC, by the console's clock) — the figures a funder key gets from the API."""
    moment = now(request)
    period = resolve_period(
        FUNDER,
        banks,
        start,
        end,
        None,  # published: as of the start of today (UTC), rounded by resolve_period
        published=True,
        now=moment,
    )
    wanted = [w for w in REPORTS if w[0] in names]
    async with reads_that_may_lag(request.app.state.replica, db_session) as reads:
        found = await published(
            reads,
            cache_of(request),
            wanted,
            banks,
            period,
            timeout_ms=settings_of(request).report_timeout_ms,
        )
    return period, found


async def _page(
    request: Request[Any, Any, Any], db_session: AsyncSession, *, printable: bool = False
) -> Response[str]:
    ctx, scope = await scoped(request, db_session)
    moment = now(request)
    today = _today(scope or [], moment) if scope else moment.date()
    choice = choose(ctx, scope, today)
    values: dict[str, Any] = {
        "section": "dashboard",
        "choice": choice,
        "scope": scope,
        "picker": picker(ctx, today),
        "downloads": download_labels(ctx),
        "printable": printable,
    }
    if choice.problems or choice.start is None or choice.end is None:
        return render(
            ctx, "dashboard.html", status=422, problems=choice.problems, view=None, **values
        )
    period, found = await figures(
        request, db_session, choice.banks, choice.start, choice.end, NAMES
    )
    bodies = {name: files.as_json(r.meta, r.built) for name, r in zip(NAMES, found, strict=True)}
    period_text = period_label(ctx, choice.start, choice.end)
    view = build_view(ctx, bodies, period_text)
    checkpoint = await evidence.checkpointed_at(db_session, [b.id for b in choice.banks])
    return render(
        ctx,
        "dashboard.html",
        view=view,
        period=period,
        period_text=period_text,
        as_of=ctx.day(period.as_of.date()),
        method=found[0].meta["method"],
        incomplete=incomplete(choice.end, today),
        checkpointed=ctx.day(checkpoint.date()) if checkpoint else None,
        **values,
    )


@get("/dashboard", include_in_schema=False)
async def dashboard(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[str]:
    return await _page(request, db_session)


@get("/dashboard/print", include_in_schema=False)
async def dashboard_print(
    request: Request[Any, Any, Any], db_session: AsyncSession
) -> Response[str]:
    return await _page(request, db_session, printable=True)


@get("/dashboard/method", include_in_schema=False)
async def dashboard_method(
    request: Request[Any, Any, Any], db_session: AsyncSession
) -> Response[str]:
    """How the published figures are protected, in plain words (docs/reports.md has the
    parameters)."""
    ctx, _ = await scoped(request, db_session)
    return render(
        ctx,
        "dashboard_method.html",
        section="dashboard",
        method=run.METHOD,
        floor_hours=cellkey.MINUTES_FLOOR // 60,
        large_hours=round(cellkey.MINUTES_FLOOR / cellkey.MINUTES_SHARE / 60),
        share=round(cellkey.MINUTES_SHARE * 100),
        change=cellkey.MAX_COUNT_CHANGE,
        small=cellkey.SMALL,
    )


@get("/dashboard/download", include_in_schema=False)
async def dashboard_download(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    report: str = "summary",
    format: str = "csv",
) -> Response[Any]:
    """One report of the chosen banks and period as CSV or XLSX — the API's files of the
    same published figures."""
    ctx, scope = await scoped(request, db_session)
    if report not in NAMES or format not in ("csv", "xlsx"):
        raise NotFound("No such download")
    today = _today(scope, now(request)) if scope else now(request).date()
    choice = choose(ctx, scope, today)
    if choice.problems or choice.start is None or choice.end is None:
        return await _page(request, db_session)
    _, (found,) = await figures(
        request, db_session, choice.banks, choice.start, choice.end, [report]
    )
    name = run.filename_of(found.meta)
    if format == "csv":
        return Response(
            files.as_csv(found.meta, found.built),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}.csv"',
                "Cache-Control": "no-store",
            },
        )
    return Response(
        files.as_xlsx(found.meta, found.built),
        media_type=files.XLSX_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}.xlsx"',
            "Cache-Control": "no-store",
        },
    )


ROUTES = [dashboard, dashboard_print, dashboard_method, dashboard_download]
__all__ = ["ROUTES", "build_view", "choose", "parse_token", "preset_range", "token_of"]
