"""The canonical facts of an exchange, as the bytes a chain entry commits to.

One entry per state an exchange was sealed in (a proposal: ``pending``, then the status it
ended in). The facts are ids, account ids, minutes, the date, the kind, the status, the
reversal link and the postings (id, account, minutes, balance after) — no name, description,
reason or other text a person typed, so erasing a member changes none of them.

Encoding (docs/evidence.md): a JSON object, keys sorted, no whitespace, ASCII only; ids as
lower-case hyphenated UUID strings, dates as YYYY-MM-DD, amounts as integers, absent values
as ``null``; postings in ledger order (by id).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

VERSION = 1


@dataclass(frozen=True)
class Facts:
    """An exchange's immutable facts, read from its row."""

    id: uuid.UUID
    kind: str
    minutes: int
    occurred_on: date
    category: uuid.UUID | None
    provider: uuid.UUID | None
    recipient: uuid.UUID | None
    reverses: uuid.UUID | None


@dataclass(frozen=True)
class Leg:
    id: int
    account: uuid.UUID
    minutes: int
    balance_after: int


def _id(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def entry(bank: uuid.UUID, seq: int, facts: Facts, status: str, legs: list[Leg]) -> dict[str, Any]:
    return {
        "v": VERSION,
        "bank": str(bank),
        "seq": seq,
        "exchange": str(facts.id),
        "status": status,
        "kind": facts.kind,
        "minutes": facts.minutes,
        "occurred_on": facts.occurred_on.isoformat(),
        "category": _id(facts.category),
        "provider": _id(facts.provider),
        "recipient": _id(facts.recipient),
        "reverses": _id(facts.reverses),
        "postings": [
            {
                "id": g.id,
                "account": str(g.account),
                "minutes": g.minutes,
                "balance_after": g.balance_after,
            }
            for g in sorted(legs, key=lambda g: g.id)
        ],
    }


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def leaf(bank: uuid.UUID, seq: int, facts: Facts, status: str, legs: list[Leg]) -> bytes:
    return encode(entry(bank, seq, facts, status, legs))


def differences(sealed: bytes, now: bytes) -> list[str]:
    """What differs between a sealed entry and the same entry recomputed from the ledger,
    field by field, in words."""
    try:
        a, b = json.loads(sealed), json.loads(now)
    except ValueError:
        return ["the sealed entry is not valid JSON"]
    out = []
    for key in sorted(set(a) | set(b)):
        if key == "postings":
            pa = {p["id"]: p for p in a.get(key, [])}
            pb = {p["id"]: p for p in b.get(key, [])}
            for pid in sorted(set(pa) | set(pb)):
                if pid not in pb:
                    out.append(f"posting {pid} sealed but gone from the ledger")
                elif pid not in pa:
                    out.append(f"posting {pid} in the ledger but not sealed")
                else:
                    for f in sorted(pa[pid]):
                        if pa[pid][f] != pb[pid].get(f):
                            out.append(
                                f"posting {pid} {f}: sealed {pa[pid][f]}, ledger now {pb[pid].get(f)}"
                            )
        elif a.get(key) != b.get(key):
            out.append(f"{key}: sealed {a.get(key)}, ledger now {b.get(key)}")
    return out
