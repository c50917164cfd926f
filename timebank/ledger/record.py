"""Recording one exchange: the ledger's main use case, top to bottom."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.events.models import EventType
from timebank.events.service import Change, emit, exchange_change
from timebank.idempotency import Claim
from timebank.ledger.changes import prepared_members
from timebank.ledger.posting import (
    Book,
    Posted,
    exchange_row,
    insert_exchanges,
    lock_accounts,
    posted,
    posting_rows,
)
from timebank.ledger.reads import view
from timebank.ledger.schemas import ExchangeCreate, ExchangeOut
from timebank.ledger.validate import Lookup, check_active, draft, validate
from timebank.timebanks.models import TimeBank


async def record_exchange(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    data: ExchangeCreate,
    claim: Claim | None = None,
) -> ExchangeOut:
    """Record an exchange logged by a broker or admin, and commit it.

    Refusals: 403 for another role or bank; 422 for a malformed request (unknown party or
    category, a date in the future, over the bank's maximum); 409 ``duplicate`` for a used
    ``external_ref``, ``party_inactive`` for a suspended/left/erased party,
    ``balance_limit_exceeded`` when an account would move further outside its limits.
    """
    principal.require(tb.id, *STAFF)
    # validate: parties, kind, amounts, date, category, reference (one lookup)
    prepared = validate(data, await Lookup.load(session, tb, [data]))
    check_active(prepared)
    d = draft(data, prepared)
    # lock the accounts in id order, then check the limits on the locked balances
    book = Book(tb, await lock_accounts(session, (leg.account_id for leg in d.legs)))
    after = await book.apply_named(session, d.legs, enforce_limits=d.enforce_limits)
    # insert the exchange and its postings; update the balances
    row = exchange_row(principal, tb, d)
    await insert_exchanges(session, posting_rows(row["id"], d.legs, after), [row])
    await book.save(session)
    # audit, settle the Idempotency-Key, commit
    result = posted(row, d)
    await audit.record(session, recorded_event(principal, tb, data, result))
    out = view(result)
    if claim is not None:
        await claim.settle(session, out)
    await emit(session, tb.id, [recorded_change(row["id"], prepared_members(prepared))])
    await session.commit()
    return out


def recorded_change(exchange_id: uuid.UUID, members: Iterable[uuid.UUID]) -> Change:
    """The ``exchange.recorded`` event of an exchange just recorded."""
    return exchange_change(EventType.exchange_recorded, exchange_id, "recorded", members)


def recorded_event(
    principal: Principal, tb: TimeBank, data: ExchangeCreate, result: Posted
) -> dict[str, Any]:
    e = result.exchange
    return audit.event(
        principal,
        "exchange.override" if data.override_limits else "exchange.record",
        timebank_id=tb.id,
        target_type="exchange",
        target_id=e.id,
        reason=data.override_reason if data.override_limits else None,
        details={"kind": e.kind.value, "accounts": [str(p.account_id) for p in result.postings]},
    )
