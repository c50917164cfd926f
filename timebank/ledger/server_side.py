"""Recording a simple exchange on PostgreSQL in one round trip.

The same use case as :func:`timebank.ledger.record.record_exchange` — validate, lock the
accounts in id order, check the limits, insert the exchange and its postings, update the
balances, audit, store the Idempotency-Key's response — done by one server-side function
(``timebank_record_simple``, migration 0003) in one statement, in autocommit: the statement
is its own transaction, so the round trip is also the commit. It authenticates the API key
and finds the bank itself. Anything it does not take on (a member or funder key, an
unknown, revoked or expired key, a bank out of the key's scope) comes back as ``None``
having written nothing, and the in-process path answers. The state machine holds both
paths to one model; SQLite has only the in-process one.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

from timebank import errors
from timebank.errors import BalanceLimitExceeded, DomainError, InvalidInput, PartyInactive
from timebank.ledger.schemas import ExchangeCreate, PartyRef

RECORD = "SELECT timebank_record_simple(" + ", ".join(f"${i}" for i in range(1, 18)) + ")"
REFUSED = "TB001"  # the SQLSTATE the function refuses with; its message is JSON
RETRYABLE = {"40001", "40P01"}

_BY_CODE: dict[str, type[DomainError]] = {
    cls.code: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, DomainError)
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    replayed: bool


def _party(ref: PartyRef) -> tuple[str, Any]:
    if ref.member_id is not None:
        return "member", ref.member_id
    if ref.organisation_id is not None:
        return "organisation", ref.organisation_id
    return "pool", ref.account_id


def refusal(message: str) -> DomainError:
    """The domain error the function refused with."""
    out = json.loads(message)
    code = out.pop("code")
    detail = out.pop("detail")
    if code == InvalidInput.code:
        return InvalidInput(out["field"], out["message"])
    if code == BalanceLimitExceeded.code:
        return BalanceLimitExceeded(detail, account_id=out["account_id"])
    return _BY_CODE[code](detail, **out)


async def record_simple(
    conn: Any,
    *,
    secret_hash: str,
    slug: str,
    idempotency_key: str | None,
    fingerprint: str,
    request_id: str | None,
    exchange_id: Any,
    data: ExchangeCreate,
    retries: int,
) -> Answer | None:
    """Record ``data`` (the simple form) with one call on ``conn`` (an asyncpg connection
    in autocommit). ``None``: not taken on, nothing written."""
    assert data.provider is not None and data.recipient is not None
    provider, recipient = _party(data.provider), _party(data.recipient)
    args = (
        secret_hash,
        slug,
        idempotency_key,
        fingerprint,
        request_id,
        exchange_id,
        *provider,
        *recipient,
        data.minutes,
        data.category,
        data.description,
        data.occurred_on,
        data.external_ref,
        data.override_limits,
        data.override_reason,
    )
    attempt = 0
    while True:
        try:
            raw = await conn.fetchval(RECORD, *args)
            break
        except Exception as exc:
            state = getattr(exc, "sqlstate", None)
            if state == REFUSED:
                refused = refusal(str(getattr(exc, "message", exc)))
                if isinstance(refused, BalanceLimitExceeded | PartyInactive):
                    # Nothing was written: the in-process path answers, naming the party
                    # (the wording of the refusal lives once, in Python).
                    return None
                raise refused from None
            if state in RETRYABLE and attempt < retries:
                attempt += 1
                await asyncio.sleep(min(0.5, 0.005 * (2**attempt)) * random.random())
                continue
            raise
    out = json.loads(raw)
    if out.get("fallback"):
        return None
    return Answer(int(out["status"]), str(out["body"]).encode(), bool(out["replayed"]))


BALANCE = "SELECT timebank_member_balance($1, $2, $3)"


async def member_balance(conn: Any, *, secret_hash: str, slug: str, member_id: Any) -> bytes | None:
    """A member's balance as JSON (``BalanceOut``) with one call; ``None``: not taken on."""
    raw = await conn.fetchval(BALANCE, secret_hash, slug, member_id)
    if raw.startswith('{"fallback"'):
        return None
    return str(raw).encode()
