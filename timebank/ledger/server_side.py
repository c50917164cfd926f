"""Reading a member's balance on PostgreSQL in one round trip.

``timebank_member_balance`` (migration 0003) authenticates the API key, finds the bank and
the member's account and sums its pending flows in one statement. Anything it does not take
on (an unknown, revoked or expired key, a key due for its ``last_used_at`` touch, a bank out
of the key's scope, an unknown member) comes back as ``None`` and the in-process path
answers. Recording is :mod:`timebank.ledger.fast`.
"""

from __future__ import annotations

from typing import Any

BALANCE = "SELECT timebank_member_balance($1, $2, $3)"


async def member_balance(conn: Any, *, secret_hash: str, slug: str, member_id: Any) -> bytes | None:
    """A member's balance as JSON (``BalanceOut``) with one call; ``None``: not taken on."""
    raw = await conn.fetchval(BALANCE, secret_hash, slug, member_id)
    if raw.startswith('{"fallback"'):
        return None
    return str(raw).encode()
