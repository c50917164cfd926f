"""Statement responses shared by members and organisations: JSON (paged), CSV and XLSX
(the whole period). One order everywhere: value date (``occurred_on``), then recording
order, with the running balance in that order (docs/statements.md)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from litestar import Request, Response
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.errors import InvalidInput
from timebank.ledger import reads
from timebank.ledger.schemas import StatementEntry, StatementOut
from timebank.spreadsheets import XLSX_OPTIONS, safe_cell, slug_name
from timebank.timebanks.models import TimeBank
from timebank.web.pagination import check_limit, encode_statement_cursor, statement_cursor

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_COLUMNS = [
    "row",
    "entry_id",
    "exchange_id",
    "kind",
    "occurred_on",
    "recorded_at",
    "minutes",
    "hours",
    "balance_after_minutes",
    "balance_after_hours",
    "counterparties",
    "category",
    "description",
    "reverses",
    "reason",
]
# ``?format=csv`` and ``Accept: text/csv`` on the JSON operation are for curl users; the
# document offers the CSV as its own operation (generated clients read one media type).
FormatParam = Parameter(query="format", default=None, include_in_schema=False)
FromParam = Parameter(
    query="from", default=None, description="First day of the period (inclusive), YYYY-MM-DD"
)
ToParam = Parameter(
    query="to", default=None, description="Last day of the period (inclusive), YYYY-MM-DD"
)


def wants_csv(request: Request[Any, Any, Any], fmt: str | None) -> bool:
    if fmt is not None:
        if fmt not in ("json", "csv"):
            raise InvalidInput("format", "must be json or csv")
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _check_period(date_from: date | None, date_to: date | None) -> None:
    if date_from and date_to and date_from > date_to:
        raise InvalidInput("from", "is after to")


async def statement_json(
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    *,
    date_from: date | None,
    date_to: date | None,
    limit: int | None,
    cursor: str | None,
) -> StatementOut:
    _check_period(date_from, date_to)
    n = check_limit(limit)
    opening, closing, entries, next_after = await reads.statement(
        session, tb, account_id, date_from, date_to, statement_cursor(cursor), n
    )
    return StatementOut(
        account_id=account_id,
        period={"from": date_from, "to": date_to},
        opening_balance_minutes=opening,
        closing_balance_minutes=closing,
        items=[StatementEntry(**e) for e in entries],
        next_cursor=encode_statement_cursor(next_after) if next_after is not None else None,
        resume_cursor=encode_statement_cursor((entries[-1]["occurred_on"], entries[-1]["entry_id"]))
        if entries
        else cursor or encode_statement_cursor((date.min, 0)),
    )


def period_label(date_from: date | None, date_to: date | None) -> str:
    """How a file name says the period: ``2026-11`` for a whole month, ``2026`` for a whole
    year, else ``2026-11-03-to-2026-11-20``, ``from-…``, ``to-…`` or nothing (everything)."""
    if date_from and date_to:
        if (date_from.year, date_from.month, date_from.day) == (date_to.year, 1, 1) and (
            date_to.month,
            date_to.day,
        ) == (12, 31):
            return str(date_from.year)
        next_month = date(date_to.year + (date_to.month == 12), date_to.month % 12 + 1, 1)
        if (
            date_from.day == 1
            and (date_from.year, date_from.month) == (date_to.year, date_to.month)
            and date_to.toordinal() == next_month.toordinal() - 1
        ):
            return date_from.strftime("%Y-%m")
        return f"{date_from.isoformat()}-to-{date_to.isoformat()}"
    if date_from:
        return f"from-{date_from.isoformat()}"
    if date_to:
        return f"to-{date_to.isoformat()}"
    return ""


def statement_filename(name: str, date_from: date | None, date_to: date | None) -> str:
    """``statement-sian-llyr-2026-11`` (without its extension): the person, the period."""
    parts = ["statement", slug_name(name) or "account", period_label(date_from, date_to)]
    return "-".join(p for p in parts if p)


def _hours(minutes: int) -> Decimal:
    return (Decimal(minutes) / 60).quantize(Decimal("0.01"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _reverses(e: dict[str, Any]) -> str:
    rev = e.get("reverses")
    if not rev:
        return ""
    who = "; ".join(c["display_name"] for c in rev["counterparties"])
    bits = [rev["occurred_on"].isoformat(), who, rev["category"] or ""]
    return " · ".join(b for b in bits if b)


def _period_words(date_from: date | None, date_to: date | None) -> str:
    if date_from and date_to:
        return f"{date_from.isoformat()} to {date_to.isoformat()}"
    if date_from:
        return f"from {date_from.isoformat()}"
    if date_to:
        return f"up to {date_to.isoformat()}"
    return "every entry"


async def statement_table(
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    name: str,
    date_from: date | None,
    date_to: date | None,
) -> tuple[list[list[Any]], list[list[Any]]]:
    """The header rows (bank, person, period) and the table (column names, the opening
    balance, one row per entry, the closing balance) of a statement file."""
    _check_period(date_from, date_to)
    opening, closing, entries, _ = await reads.statement(
        session, tb, account_id, date_from, date_to, None, None
    )
    header: list[list[Any]] = [
        ["time_bank", tb.name],
        ["statement_of", name],
        ["period", _period_words(date_from, date_to)],
        ["order", "occurred_on, then recording order; balances run in this order"],
    ]
    blank = dict.fromkeys(CSV_COLUMNS, "")

    def edge(row: str, day: date | None, minutes: int) -> list[Any]:
        cells = {
            **blank,
            "row": row,
            "occurred_on": day.isoformat() if day else "",
            "balance_after_minutes": minutes,
            "balance_after_hours": _hours(minutes),
        }
        return list(cells.values())

    table: list[list[Any]] = [list(CSV_COLUMNS), edge("opening_balance", date_from, opening)]
    for e in entries:
        cells = {
            "row": "entry",
            "entry_id": e["entry_id"],
            "exchange_id": str(e["exchange_id"]),
            "kind": e["kind"],
            "occurred_on": e["occurred_on"].isoformat(),
            "recorded_at": _iso(e["recorded_at"]),
            "minutes": e["minutes"],
            "hours": _hours(e["minutes"]),
            "balance_after_minutes": e["balance_after_minutes"],
            "balance_after_hours": _hours(e["balance_after_minutes"]),
            "counterparties": "; ".join(c["display_name"] for c in e["counterparties"]),
            "category": e["category"] or "",
            "description": e["description"] or "",
            "reverses": _reverses(e),
            "reason": e["reason"] or "",
        }
        table.append([safe_cell(cells[c]) for c in CSV_COLUMNS])
    table.append(edge("closing_balance", date_to, closing))
    return [[safe_cell(c) for c in row] for row in header], table


async def statement_csv(
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    *,
    name: str,
    date_from: date | None,
    date_to: date | None,
) -> Response[bytes]:
    """UTF-8 with a byte-order mark (so Excel reads accents): the header rows, a blank row,
    then the table (``row``: opening_balance, entry, closing_balance)."""
    header, table = await statement_table(session, tb, account_id, name, date_from, date_to)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerows(header)
    writer.writerow([])
    writer.writerows(table)
    filename = statement_filename(name, date_from, date_to)
    return Response(
        buf.getvalue().encode("utf-8-sig"),
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


async def statement_xlsx(
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    *,
    name: str,
    date_from: date | None,
    date_to: date | None,
) -> Response[bytes]:
    """The CSV's rows in a workbook, figures as numbers."""
    import xlsxwriter

    header, table = await statement_table(session, tb, account_id, name, date_from, date_to)
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(
        buf, {"in_memory": True, "strings_to_numbers": False, **XLSX_OPTIONS}
    )
    bold = book.add_format({"bold": True})
    sheet = book.add_worksheet("Statement")
    for r, (label, value) in enumerate(header):
        sheet.write_string(r, 0, label, bold)
        sheet.write_string(r, 1, str(value))
    start = len(header) + 1
    sheet.write_row(start, 0, table[0], bold)
    for r, row in enumerate(table[1:], start + 1):
        for c, value in enumerate(row):
            if value == "":
                continue
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                sheet.write_number(r, c, float(value) if isinstance(value, Decimal) else value)
            else:
                sheet.write_string(r, c, str(value))
    sheet.set_column(0, 0, 18)
    sheet.set_column(10, 14, 24)
    book.close()
    filename = statement_filename(name, date_from, date_to)
    return Response(
        buf.getvalue(),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
    )
