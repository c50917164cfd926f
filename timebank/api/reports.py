"""Report routes: one time bank, or several (cross-bank, the highest threshold applies)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from litestar import Request, Response, get
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.config import Settings
from timebank.db import reads_that_may_lag
from timebank.errors import DATETIME_MESSAGE, InvalidInput, NotFound
from timebank.reports import render, run, service
from timebank.reports.periods import resolve_period
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import get_by_slug
from timebank.web.openapi import FILE
from timebank.web.problems import PROBLEM_JSON, Problem, problems

MAX_RATE_PENCE = 100_000


class Interval(StrEnum):
    week = "week"
    month = "month"
    quarter = "quarter"


class Dimension(StrEnum):
    age_band = "age_band"
    gender = "gender"
    disability = "disability"
    ethnicity = "ethnicity"


class Figures(StrEnum):
    exact = "exact"
    published = "published"


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
    "exclusive (the day after; `period.last_day` is the last day, inclusive — in CSV and XLSX "
    "`period_from`, `period_to_exclusive`, `period_last_day`), on occurred_on (default: the 12 months to the 1st of next month). Funder keys "
    "always get published figures (staff with `figures=published`): cell-key perturbed "
    '(`"perturbed": true`, `"method": "cellkey-2"`), withheld by population only, for lattice '
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
                    "period": {"from": "2026-07-01", "to": "2026-10-01", "last_day": "2026-09-30"},
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
        raise InvalidInput("as_of", DATETIME_MESSAGE) from exc


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
    report: ReportQuery,
    fmt: str | None,
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
    options = report.options
    if report.figures is not None and report.figures not in ("exact", "published"):
        raise InvalidInput("figures", "must be exact or published")
    published = run.publishes(principal, report.figures)
    if published and options.interval == "week":
        raise InvalidInput("interval", "published figures are by month or quarter")
    period = resolve_period(
        principal, banks, report.date_from, report.date_to, report.as_of, published=published
    )
    settings: Settings = request.app.state.settings
    async with reads_that_may_lag(request.app.state.replica, session) as reads:
        built, threshold = await run.build(
            reads,
            name,
            banks,
            period,
            options,
            timeout_ms=settings.report_timeout_ms,
            published=published,
        )
    meta = run.meta_of(name, banks, period, threshold, published=published)
    filename = run.filename_of(meta)
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


@dataclass(frozen=True)
class ReportQuery:
    """The parameters every report operation takes."""

    date_from: date | None
    date_to: date | None
    as_of: datetime | None
    options: service.Options
    figures: str | None


async def report_query(
    date_from: date | None = Parameter(
        query="from", default=None, description="First day (inclusive), YYYY-MM-DD"
    ),
    date_to: date | None = Parameter(
        query="to", default=None, description="Day after the last (exclusive), YYYY-MM-DD"
    ),
    as_of: str | None = AsOfParam,
    interval: Interval | None = Parameter(default=None, description="timeseries only"),
    dimension: Dimension | None = Parameter(default=None, description="demographics only"),
    rate_pence_per_hour: int | None = RatePence,
    figures: Figures | None = FiguresParam,
) -> ReportQuery:
    return ReportQuery(
        date_from,
        date_to,
        parse_as_of(as_of),
        _options(interval, dimension, rate_pence_per_hour),
        figures,
    )


QUERY = {"report": Provide(report_query)}
NameParam = Parameter(description="The report", schema_extra={"enum": list(service.REPORTS)})
# ``?format=`` and ``Accept`` on the JSON operations are for curl users: the document gives
# each file its own operation (generators read one media type per response).
FormatParam = Parameter(query="format", default=None, include_in_schema=False)
CSV, XLSX = "text/csv", render.XLSX_MEDIA_TYPE
FILE_OF = {CSV: "csv", XLSX: "xlsx"}
ONE_BANK = "/v1/timebanks/{tb:str}/reports/{name:str}"
CROSS_BANK = "/v1/reports/{name:str}"
CROSS_DOC = " Cross-bank reports use the highest threshold of the banks; `timebank=` repeats."


async def _one_bank(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    principal: Principal,
    tb: str,
    name: str,
    report: ReportQuery,
    fmt: str | None,
) -> Response[Any]:
    bank = await get_by_slug(session, principal, tb)
    return await _report(request, session, principal, [bank], name, report, fmt)


async def _cross_bank(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    principal: Principal,
    timebank: list[str],
    name: str,
    report: ReportQuery,
    fmt: str | None,
) -> Response[Any]:
    slugs = list(dict.fromkeys(timebank))
    if not slugs or len(slugs) > 50:
        raise InvalidInput("timebank", "give 1 to 50 time banks")
    banks = await run.banks_by_slug(session, principal, slugs)
    return await _report(request, session, principal, banks, name, report, fmt)


@get(
    ONE_BANK,
    tags=["reports"],
    responses=_responses(),
    dependencies=QUERY,
    summary="A report for one time bank (funder, broker, admin)",
    description=REPORT_DOC + " As files: `getReportCsv`, `getReportXlsx`.",
    operation_id="getReport",
)
async def timebank_report(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    report: ReportQuery,
    name: str = NameParam,
    fmt: str | None = FormatParam,
) -> Response[ReportOut]:
    return await _one_bank(request, db_session, principal, tb, name, report, fmt)


@get(
    ONE_BANK + "/csv",
    tags=["reports"],
    responses=_responses(),
    dependencies=QUERY,
    media_type=CSV,
    opt={FILE: CSV},
    summary="A report for one time bank, as tidy CSV",
    description="One row per cell, with the period, `definitions_version`, `perturbed`, "
    "`method` and `suppressed` columns. Parameters as `getReport`.",
    operation_id="getReportCsv",
)
async def timebank_report_csv(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    report: ReportQuery,
    name: str = NameParam,
) -> Response[str]:
    return await _one_bank(request, db_session, principal, tb, name, report, "csv")


@get(
    ONE_BANK + "/xlsx",
    tags=["reports"],
    responses=_responses(),
    dependencies=QUERY,
    media_type=XLSX,
    opt={FILE: XLSX},
    summary="A report for one time bank, as an Excel workbook",
    description="The same cells as the CSV. Parameters as `getReport`.",
    operation_id="getReportXlsx",
)
async def timebank_report_xlsx(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    report: ReportQuery,
    name: str = NameParam,
) -> Response[bytes]:
    return await _one_bank(request, db_session, principal, tb, name, report, "xlsx")


TimebanksParam = Parameter(query="timebank", description="A time bank's slug; repeat it")


@get(
    CROSS_BANK,
    tags=["reports"],
    responses=_responses(),
    dependencies=QUERY,
    summary="A report across time banks (`?timebank=a&timebank=b`)",
    description=REPORT_DOC + CROSS_DOC + " As files: `getCrossBankReportCsv`, "
    "`getCrossBankReportXlsx`.",
    operation_id="getCrossBankReport",
)
async def cross_bank_report(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    report: ReportQuery,
    timebank: list[str] = TimebanksParam,
    name: str = NameParam,
    fmt: str | None = FormatParam,
) -> Response[ReportOut]:
    return await _cross_bank(request, db_session, principal, timebank, name, report, fmt)


@get(
    CROSS_BANK + "/csv",
    tags=["reports"],
    responses=_responses(),
    dependencies=QUERY,
    media_type=CSV,
    opt={FILE: CSV},
    summary="A report across time banks, as tidy CSV",
    description="As `getReportCsv`, across the banks given." + CROSS_DOC,
    operation_id="getCrossBankReportCsv",
)
async def cross_bank_report_csv(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    report: ReportQuery,
    timebank: list[str] = TimebanksParam,
    name: str = NameParam,
) -> Response[str]:
    return await _cross_bank(request, db_session, principal, timebank, name, report, "csv")


@get(
    CROSS_BANK + "/xlsx",
    tags=["reports"],
    responses=_responses(),
    dependencies=QUERY,
    media_type=XLSX,
    opt={FILE: XLSX},
    summary="A report across time banks, as an Excel workbook",
    description="As `getReportXlsx`, across the banks given." + CROSS_DOC,
    operation_id="getCrossBankReportXlsx",
)
async def cross_bank_report_xlsx(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    report: ReportQuery,
    timebank: list[str] = TimebanksParam,
    name: str = NameParam,
) -> Response[bytes]:
    return await _cross_bank(request, db_session, principal, timebank, name, report, "xlsx")


ROUTES = [
    timebank_report,
    timebank_report_csv,
    timebank_report_xlsx,
    cross_bank_report,
    cross_bank_report_csv,
    cross_bank_report_xlsx,
]
