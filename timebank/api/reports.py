"""Report routes: one time bank, or several (cross-bank, the highest threshold applies)."""

from __future__ import annotations

import difflib
from datetime import date, datetime
from typing import Any, Literal

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.config import Settings
from timebank.db import utcnow
from timebank.errors import InvalidInput, NotFound
from timebank.reports import render, run, service
from timebank.reports.periods import resolve_period
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import get_by_slug
from timebank.web.openapi import ALSO_RETURNS
from timebank.web.problems import PROBLEM_JSON, Problem, problems

MAX_RATE_PENCE = 100_000
ReportFormat = Literal["json", "csv", "xlsx"]
Interval = Literal["week", "month", "quarter"]
Dimension = Literal["age_band", "gender", "disability", "ethnicity"]
Figures = Literal["exact", "published"]
FiguresParam = Parameter(
    default=None,
    description="`published` (always, for funder keys): cell-key perturbed figures to pass on; "
    "`exact` (staff default): true figures with small-cell suppression",
)
RatePence = Parameter(default=None, ge=1, le=MAX_RATE_PENCE)
# Parsed here: Litestar would also take a number as a Unix time (``as_of=0``).
AsOfParam = Parameter(default=None, schema_extra={"format": "date-time"})

REPORT_DOC = (
    "One of the twelve impact reports: "
    + ", ".join(f"`{name}`" for name in service.REPORTS)
    + ". Figures count service exchanges (recorded, not reversed). `from` inclusive, `to` "
    "exclusive, on occurred_on (default: the 12 months to the 1st of next month). Funder keys "
    "always get published figures (staff with `figures=published`): cell-key perturbed "
    '(`"perturbed": true`, `"method": "cellkey-1"`), withheld by population only, for lattice '
    "periods only (one calendar month, calendar quarter, April–March year or calendar year; "
    "default the last complete quarter), `as_of` taken to the start of its UTC day, "
    "timeseries by month or quarter. "
    "`as_of` counts only what was recorded by then. `format=json|csv|xlsx` (or "
    "`Accept: text/csv`). `interval=week|month|quarter` (timeseries), "
    "`dimension=age_band|gender|disability|ethnicity` (demographics; default all), "
    "`rate_pence_per_hour` (social-value). Exact figures: any figure over fewer people than the "
    "suppression threshold is null and marked suppressed, with further figures suppressed so "
    "that none can be worked out from the rest of the response. Published figures: a row whose "
    "population is under the threshold is null and suppressed. Definitions and the method: "
    "docs/reports.md."
)


class ReportOut(BaseModel):
    """Every report: what it covers, its scalar figures as top-level keys, its breakdown as
    ``rows`` (each with its dimension key and ``suppressed``). A suppressed figure is null.
    Definitions: docs/reports.md."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "report": "categories",
                    "timebanks": ["north-ayrshire"],
                    "period": {"from": "2026-07-01", "to": "2026-10-01"},
                    "as_of": "2026-12-01T00:00:00+00:00",
                    "generated_at": "2026-12-01T10:15:00+00:00",
                    "definitions_version": "1",
                    "suppression_threshold": 10,
                    "rows": [
                        {
                            "category": "shopping-errands",
                            "exchanges": 41,
                            "hours": 63.5,
                            "minutes": 3810,
                            "share_of_hours": 0.21,
                            "providers": 17,
                            "suppressed": False,
                        },
                        {
                            "category": "pets",
                            "exchanges": None,
                            "hours": None,
                            "minutes": None,
                            "share_of_hours": None,
                            "providers": None,
                            "suppressed": True,
                        },
                    ],
                }
            ]
        },
    )
    report: str
    timebanks: list[str]
    period: dict[str, str]
    as_of: str
    generated_at: str
    definitions_version: str
    suppression_threshold: int


SUCCESS = {
    200: ResponseSpec(
        data_container=ReportOut,
        description="The report: JSON (default), tidy CSV (`text/csv`) or XLSX",
        generate_examples=False,
    )
}


def _responses() -> dict[int, ResponseSpec]:
    out = {**SUCCESS, **problems(403, 404, 422)}
    out[503] = ResponseSpec(
        data_container=Problem,
        media_type=PROBLEM_JSON,
        description="Database unreachable (`unavailable`), or the report ran past the "
        "report statement timeout (`report_timeout`; try a shorter period or later)",
    )
    return out


def _format(request: Request[Any, Any, Any], fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("json", "csv", "xlsx"):
            raise InvalidInput("format", "must be json, csv or xlsx")
        return fmt
    accept = request.headers.get("accept", "")
    if "text/csv" in accept:
        return "csv"
    if render.XLSX_MEDIA_TYPE in accept:
        return "xlsx"
    return "json"


def parse_as_of(raw: str | None) -> datetime | None:
    """An ISO 8601 date-time (``2026-11-01T00:00:00Z``; no zone means UTC)."""
    if raw is None:
        return None
    try:
        if len(raw) <= len("2026-11-01"):
            raise ValueError(raw)  # a date alone
        return datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput("as_of", "must be an ISO 8601 date-time") from exc


def _options(interval: str | None, dimension: str | None, rate: int | None) -> service.Options:
    if interval is not None and interval not in service.INTERVALS:
        raise InvalidInput("interval", "must be week, month or quarter")
    if dimension is not None and dimension not in service.DIMENSIONS:
        raise InvalidInput("dimension", "must be age_band, gender, disability or ethnicity")
    if rate is not None and not 1 <= rate <= MAX_RATE_PENCE:
        raise InvalidInput("rate_pence_per_hour", f"must be between 1 and {MAX_RATE_PENCE}")
    return service.Options(interval or "month", dimension, rate)


async def _report(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    principal: Principal,
    banks: list[TimeBank],
    name: str,
    *,
    date_from: date | None,
    date_to: date | None,
    as_of: datetime | None,
    fmt: str | None,
    options: service.Options,
    figures: str | None,
) -> Response[Any]:
    if name not in service.REPORTS:
        close = difflib.get_close_matches(name, service.REPORTS, n=1)
        raise NotFound(
            f"No report '{name}'"
            + (f" (did you mean '{close[0]}'?)" if close else "")
            + "; the reports are: "
            + ", ".join(service.REPORTS)
        )
    for bank in banks:
        principal.require(bank.id, *service.REPORT_ROLES)
    out = _format(request, fmt)
    if figures is not None and figures not in ("exact", "published"):
        raise InvalidInput("figures", "must be exact or published")
    published = run.publishes(principal, figures)
    if published and options.interval == "week":
        raise InvalidInput("interval", "published figures are by month or quarter")
    period = resolve_period(principal, banks, date_from, date_to, as_of, published=published)
    settings: Settings = request.app.state.settings
    built, threshold = await run.build(
        session,
        name,
        banks,
        period,
        options,
        timeout_ms=settings.report_timeout_ms,
        published=published,
    )
    meta: dict[str, Any] = {
        "report": name,
        "timebanks": [b.slug for b in banks],
        "period": {"from": period.start.isoformat(), "to": period.end.isoformat()},
        "as_of": period.as_of.isoformat(),
        "generated_at": utcnow().isoformat(),
        "definitions_version": service.DEFINITIONS_VERSION,
        "suppression_threshold": threshold,
        "perturbed": published,
        "method": run.METHOD if published else None,
    }
    filename = (
        f"{name}_{'+'.join(meta['timebanks'])}_{meta['period']['from']}_{meta['period']['to']}"
    )
    if out == "csv":
        return Response(
            render.as_csv(meta, built),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    if out == "xlsx":
        return Response(
            render.as_xlsx(meta, built),
            media_type=render.XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
        )
    return Response(render.as_json(meta, built))


@get(
    "/v1/timebanks/{tb:str}/reports/{name:str}",
    tags=["reports"],
    responses=_responses(),
    opt={ALSO_RETURNS: ["text/csv", render.XLSX_MEDIA_TYPE]},
    summary="A report for one time bank (funder, broker, admin)",
    description=REPORT_DOC,
    operation_id="getReport",
)
async def timebank_report(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    name: str,
    date_from: date | None = Parameter(query="from", default=None),
    date_to: date | None = Parameter(query="to", default=None),
    as_of: str | None = AsOfParam,
    fmt: ReportFormat | None = Parameter(query="format", default=None),
    interval: Interval | None = None,
    dimension: Dimension | None = None,
    rate_pence_per_hour: int | None = RatePence,
    figures: Figures | None = FiguresParam,
) -> Response[Any]:
    bank = await get_by_slug(db_session, principal, tb)
    return await _report(
        request,
        db_session,
        principal,
        [bank],
        name,
        date_from=date_from,
        date_to=date_to,
        as_of=parse_as_of(as_of),
        fmt=fmt,
        options=_options(interval, dimension, rate_pence_per_hour),
        figures=figures,
    )


@get(
    "/v1/reports/{name:str}",
    tags=["reports"],
    responses=_responses(),
    opt={ALSO_RETURNS: ["text/csv", render.XLSX_MEDIA_TYPE]},
    summary="A report across time banks (`?timebank=a&timebank=b`)",
    description=REPORT_DOC + " Cross-bank reports use the highest threshold of the banks.",
    operation_id="getCrossBankReport",
)
async def cross_bank_report(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    name: str,
    timebank: list[str] = Parameter(query="timebank"),
    date_from: date | None = Parameter(query="from", default=None),
    date_to: date | None = Parameter(query="to", default=None),
    as_of: str | None = AsOfParam,
    fmt: ReportFormat | None = Parameter(query="format", default=None),
    interval: Interval | None = None,
    dimension: Dimension | None = None,
    rate_pence_per_hour: int | None = RatePence,
    figures: Figures | None = FiguresParam,
) -> Response[Any]:
    slugs = list(dict.fromkeys(timebank))
    if not slugs or len(slugs) > 50:
        raise InvalidInput("timebank", "give 1 to 50 time banks")
    return await _report(
        request,
        db_session,
        principal,
        await run.banks_by_slug(db_session, principal, slugs),
        name,
        date_from=date_from,
        date_to=date_to,
        as_of=parse_as_of(as_of),
        fmt=fmt,
        options=_options(interval, dimension, rate_pence_per_hour),
        figures=figures,
    )
