"""Balance and statement responses shared by members and organisations (JSON or CSV)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from typing import Any

from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.errors import InvalidInput
from timebank.ledger import reads
from timebank.ledger.schemas import StatementEntry, StatementOut
from timebank.spreadsheets import safe_cell
from timebank.timebanks.models import TimeBank
from timebank.web.pagination import check_limit, encode_cursor, seq_cursor

CSV_COLUMNS = [
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


def wants_csv(request: Request[Any, Any, Any], fmt: str | None) -> bool:
    if fmt is not None:
        if fmt not in ("json", "csv"):
            raise InvalidInput("format", "must be json or csv")
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


async def statement_response(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    tb: TimeBank,
    account_id: uuid.UUID,
    *,
    date_from: date | None,
    date_to: date | None,
    limit: int | None,
    cursor: str | None,
    fmt: str | None,
    filename: str,
) -> Response[Any]:
    if date_from and date_to and date_from > date_to:
        raise InvalidInput("from", "is after to")
    csv_out = wants_csv(request, fmt)
    n = None if csv_out else check_limit(limit)
    opening, closing, entries, next_after = await reads.statement(
        session, tb, account_id, date_from, date_to, seq_cursor(cursor), n
    )
    if csv_out:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for e in entries:
            cps = "; ".join(c["display_name"] for c in e["counterparties"])
            writer.writerow(
                [safe_cell(e[c] if c != "counterparties" else cps) for c in CSV_COLUMNS]
            )
        return Response(
            buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}.csv"',
                "X-Opening-Balance-Minutes": str(opening),
                "X-Closing-Balance-Minutes": str(closing),
            },
        )
    body = StatementOut(
        account_id=account_id,
        period={"from": date_from, "to": date_to},
        opening_balance_minutes=opening,
        closing_balance_minutes=closing,
        items=[StatementEntry(**e) for e in entries],
        next_cursor=encode_cursor(next_after) if next_after is not None else None,
    )
    return Response(body)
