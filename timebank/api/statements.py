"""Statement responses shared by members and organisations: JSON (paged) or CSV (the whole
period, SPEC §7.8)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from typing import Any

from litestar import Request, Response
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.errors import InvalidInput
from timebank.ledger import reads
from timebank.ledger.schemas import StatementEntry, StatementOut
from timebank.spreadsheets import safe_cell
from timebank.timebanks.models import TimeBank
from timebank.web.pagination import check_limit, encode_cursor, seq_cursor

CSV = "text/csv"
CSV_COLUMNS = [
    "row",
    "entry_id",
    "exchange_id",
    "kind",
    "occurred_on",
    "recorded_at",
    "minutes",
    "balance_after_minutes",
    "counterparties",
    "category",
    "description",
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
        session, tb, account_id, date_from, date_to, seq_cursor(cursor), n
    )
    return StatementOut(
        account_id=account_id,
        period={"from": date_from, "to": date_to},
        opening_balance_minutes=opening,
        closing_balance_minutes=closing,
        items=[StatementEntry(**e) for e in entries],
        next_cursor=encode_cursor(next_after) if next_after is not None else None,
        resume_cursor=encode_cursor(entries[-1]["entry_id"])
        if entries
        else cursor or encode_cursor(0),
    )


async def statement_csv(
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    *,
    date_from: date | None,
    date_to: date | None,
    filename: str,
) -> Response[str]:
    """Every entry of the period, the opening balance as the first row and the closing
    balance as the last (``row``: opening_balance, entry, closing_balance)."""
    _check_period(date_from, date_to)
    opening, closing, entries, _ = await reads.statement(
        session, tb, account_id, date_from, date_to, None, None
    )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    blank = dict.fromkeys(CSV_COLUMNS, "")
    writer.writerow(
        {
            **blank,
            "row": "opening_balance",
            "occurred_on": date_from or "",
            "balance_after_minutes": opening,
        }.values()
    )
    for e in entries:
        cells = {**e, "row": "entry"}
        cells["counterparties"] = "; ".join(c["display_name"] for c in e["counterparties"])
        writer.writerow([safe_cell(cells[c]) for c in CSV_COLUMNS])
    writer.writerow(
        {
            **blank,
            "row": "closing_balance",
            "occurred_on": date_to or "",
            "balance_after_minutes": closing,
        }.values()
    )
    return Response(
        buf.getvalue(),
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )
