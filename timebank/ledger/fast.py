"""Recording an exchange on PostgreSQL in two round trips, and reading a balance in one,
every rule in Python.

The use case of :func:`timebank.ledger.record.record_exchange`, for a broker's or admin's
API key, shaped for speed:

1. **one read** (autocommit): the API key, the bank, the parties and their accounts, the
   category, whether the ``external_ref`` is taken, the Idempotency-Key's record — facts;
2. **the rules, in Python**, the same functions the in-process path calls: the key's
   (:func:`timebank.auth.service.check_key`), the bank's scope
   (:func:`timebank.timebanks.service.visible`), the request's (:func:`validate`,
   :func:`check_active`), the limits (:meth:`Book.apply`), the Idempotency-Key's
   (:func:`timebank.idempotency.judge`); then the rows and the response, built as the
   in-process path builds them;
3. **one write statement** (autocommit: it is its own transaction and its commit): lock
   the accounts in id order, move each balance by a conditional UPDATE that keeps it inside
   the range of starting balances the limit rule allows (:func:`rules.admissible`, so the
   limit is checked atomically however the balance moved since the read), insert the
   postings (their balance after from the UPDATE), the exchange, the audit event, its
   ``exchange.recorded`` event (numbered from the bank's event counter, as
   :func:`timebank.events.service.emit` does) and the Idempotency-Key's record with the
   response, and touch the key's ``last_used_at`` when
   due. If a balance left its range meanwhile, or the key was claimed meanwhile,
   ``timebank_assert`` (migration 0009) stops the statement: nothing is written, and the
   in-process path answers (it locks first, so it words the refusal or replays).

A balance (:func:`balance`) is one read of the same kind — the key, the bank, the
member's account and its pending proposals — judged by the same functions as the
in-process read (:func:`timebank.ledger.reads.balance_view`, the bank's expiry cutoff).

The database enforces SPEC §2 on these rows as on any other (zero-sum, sealed and
append-only postings, the balance columns). Anything this path does not take on — a member
(a proposal) or funder key — comes back as ``None`` before anything is written. SQLite has
only the in-process path; the state machine holds both to one model.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from timebank import idempotency
from timebank.access import STAFF, Principal, Role, require_self_or_staff
from timebank.audit.models import AuditEvent
from timebank.auth import service as auth
from timebank.auth.models import ApiKey
from timebank.db import record_key, table_of, transient, utcnow, uuid7
from timebank.errors import BalanceLimitExceeded
from timebank.idempotency import IdempotencyRecord
from timebank.ledger.changes import prepared_members
from timebank.ledger.models import Account, Exchange, OwnerType
from timebank.ledger.posting import Book, duplicate_ref, exchange_row, limit_refusal, posted
from timebank.ledger.reads import balance_view, expiry_cutoff, no_such, view
from timebank.ledger.record import recorded_change, recorded_event
from timebank.ledger.rules import admissible, effective_limits
from timebank.ledger.schemas import BalanceOut, ExchangeCreate, PartyRef
from timebank.ledger.validate import Lookup, check_active, draft, party_refs, validate
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.service import visible

RETRYABLE = {"40001", "40P01"}
STOPPED = "TB002"  # timebank_assert: a guard failed, nothing was written

_BANK = (
    "id",
    "slug",
    "pool_account_id",
    "member_min_balance_minutes",
    "member_max_balance_minutes",
    "organisation_min_balance_minutes",
    "organisation_max_balance_minutes",
    "max_exchange_minutes",
    "time_zone",
)
_KEY = [
    "id",
    "secret_hash",
    "role",
    "timebank_id",
    "member_id",
    "expires_at",
    "revoked_at",
    "last_used_at",
]
_ACCOUNT = [
    "id",
    "owner_type",
    "owner_id",
    "balance_minutes",
    "earned_minutes",
    "spent_minutes",
    "custom_limits",
    "min_balance_minutes",
    "max_balance_minutes",
]

FACTS = f"""
WITH party AS (
  SELECT id, timebank_id, account_id, status = 'active' AS active, 'member' AS owner_type,
         display_name AS name
  FROM members WHERE id = ANY($3::uuid[])
  UNION ALL
  SELECT id, timebank_id, account_id, status = 'active', 'organisation', name
  FROM organisations WHERE id = ANY($4::uuid[])
)
SELECT {", ".join(f"k.{c} AS k_{c}" for c in _KEY)},
       {", ".join(f"t.{c} AS t_{c}" for c in _BANK)},
       c.id AS c_id, c.slug AS c_slug, c.retired_at AS c_retired,
       EXISTS (SELECT 1 FROM exchanges x
               WHERE x.timebank_id = t.id AND x.external_ref = $5) AS ref_taken,
       i.fingerprint AS i_fingerprint, i.status_code AS i_status_code,
       i.response_body AS i_response_body,
       ARRAY(SELECT ROW(id, timebank_id, account_id, active, owner_type, name) FROM party)
         AS parties,
       ARRAY(SELECT ROW({", ".join(_ACCOUNT)}) FROM accounts
             WHERE id IN (SELECT account_id FROM party UNION ALL SELECT unnest($6::uuid[])))
         AS accounts
FROM (SELECT 1) AS one
LEFT JOIN api_keys k ON k.secret_hash = $1
LEFT JOIN timebanks t ON t.slug = $2
LEFT JOIN categories c ON c.timebank_id = t.id AND c.slug = $7
LEFT JOIN idempotency_keys i ON i.api_key_id = k.id AND i.key = $8
"""


def _casts(table: Table, columns: list[str], first: int) -> str:
    """``CAST($n AS type)`` for each column, numbered from ``first``."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return ", ".join(
        f"CAST(${first + i} AS {table.c[c].type.compile(dialect=dialect)})"
        for i, c in enumerate(columns)
    )


_EXCHANGE_COLUMNS = [c.name for c in table_of(Exchange).columns]
_AUDIT_COLUMNS = [c.name for c in table_of(AuditEvent).columns if c.name != "id"]
_FIRST_EXCHANGE = 13
_FIRST_AUDIT = _FIRST_EXCHANGE + len(_EXCHANGE_COLUMNS)
_FIRST_EVENT = _FIRST_AUDIT + len(_AUDIT_COLUMNS) + 1

WRITE = f"""
WITH locked AS (
  SELECT id FROM accounts WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
), moved AS (
  UPDATE accounts a
  SET balance_minutes = a.balance_minutes + v.delta,
      earned_minutes = a.earned_minutes + greatest(v.delta, 0),
      spent_minutes = a.spent_minutes + greatest(-v.delta, 0)
  FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v(id, delta, low, high)
  WHERE a.id = v.id AND a.id IN (SELECT id FROM locked)
    AND (v.low IS NULL OR a.balance_minutes >= v.low)
    AND (v.high IS NULL OR a.balance_minutes <= v.high)
  RETURNING a.id, a.balance_minutes
), claimed AS (
  INSERT INTO idempotency_keys (api_key_id, key, fingerprint, status_code, response_body,
                                created_at)
  SELECT $5::uuid, $6::text, $7::text, 201, $8::text, $9::timestamptz WHERE $6::text IS NOT NULL
  ON CONFLICT DO NOTHING
  RETURNING 1
), ok AS (
  SELECT timebank_assert((SELECT count(*) FROM moved) = cardinality($1::uuid[]), 'limits')
     AND timebank_assert($6::text IS NULL OR EXISTS (SELECT 1 FROM claimed), 'idempotency')
     AS ok
), posted AS (
  INSERT INTO postings (exchange_id, account_id, minutes, balance_after_minutes)
  SELECT $10::uuid, l.account_id, l.minutes, m.balance_minutes
  FROM unnest($11::uuid[], $12::integer[]) WITH ORDINALITY AS l(account_id, minutes, n)
  JOIN moved m ON m.id = l.account_id CROSS JOIN ok
  WHERE ok.ok
  ORDER BY l.n
  RETURNING 1
), exchange AS (
  -- after its postings (it counts them): postings_sealed refuses a posting on an exchange
  -- already recorded, and the statement-level zero-sum check sees them all at the end
  INSERT INTO exchanges ({", ".join(_EXCHANGE_COLUMNS)})
  SELECT {_casts(table_of(Exchange), _EXCHANGE_COLUMNS, _FIRST_EXCHANGE)}
  WHERE (SELECT count(*) FROM posted) = cardinality($11::uuid[])
  RETURNING 1
), audited AS (
  INSERT INTO audit_events ({", ".join(_AUDIT_COLUMNS)})
  SELECT {_casts(table_of(AuditEvent), _AUDIT_COLUMNS, _FIRST_AUDIT)}
  WHERE EXISTS (SELECT 1 FROM exchange)
  RETURNING 1
), touched AS (
  UPDATE api_keys SET last_used_at = $9::timestamptz
  WHERE id = $5::uuid AND ${_FIRST_AUDIT + len(_AUDIT_COLUMNS)}::boolean
  RETURNING 1
), counted AS (
  -- the bank's next event number, its counter row locked to the commit (the statement's
  -- own): numbers follow the commit order (timebank.events.models)
  INSERT INTO event_counters (timebank_id, last_seq, pruned_through)
  SELECT ${_FIRST_EVENT + 1}::uuid, 1, 0 WHERE EXISTS (SELECT 1 FROM exchange)
  ON CONFLICT (timebank_id) DO UPDATE SET last_seq = event_counters.last_seq + 1
  RETURNING last_seq
), evented AS (
  INSERT INTO events (id, timebank_id, seq, type, created_at, data)
  SELECT ${_FIRST_EVENT}::uuid, ${_FIRST_EVENT + 1}::uuid, last_seq, 'exchange.recorded',
         $9::timestamptz, CAST(${_FIRST_EVENT + 2}::text AS json)
  FROM counted
  RETURNING seq
), subjects AS (
  INSERT INTO event_members (member_id, seq, event_id)
  SELECT m, e.seq, ${_FIRST_EVENT}::uuid
  FROM unnest(${_FIRST_EVENT + 3}::uuid[]) AS m CROSS JOIN evented e
  RETURNING 1
)
SELECT (SELECT count(*) FROM exchange) + (SELECT count(*) FROM audited) FROM ok
"""
TOUCH = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    replayed: bool


def _party_ids(refs: list[PartyRef]) -> tuple[list[uuid.UUID], list[uuid.UUID], list[uuid.UUID]]:
    members = [r.member_id for r in refs if r.member_id is not None]
    orgs = [r.organisation_id for r in refs if r.organisation_id is not None]
    pools = [r.account_id for r in refs if r.account_id is not None]
    return members, orgs, pools


async def record(
    conn: Any,
    *,
    secret_hash: str,
    slug: str,
    idempotency_key: str | None,
    fingerprint: str,
    data: ExchangeCreate,
    retries: int,
) -> Answer | None:
    """Record ``data`` with two calls on ``conn`` (an asyncpg connection in autocommit).
    ``None``: not taken on here (another role; or a guard stopped the write) — nothing was
    written, and the in-process path answers."""
    members, orgs, pools = _party_ids(party_refs(data))
    f = await conn.fetchrow(
        FACTS,
        secret_hash,
        slug,
        members,
        orgs,
        data.external_ref,
        pools,
        data.category,
        idempotency_key,
    )
    now = utcnow()
    # the key, and the bank in its scope
    key = auth.check_key(_key(f), secret_hash, now)
    if key.role not in STAFF:
        return None  # a member's proposal, a funder's refusal: the in-process path
    principal: Principal = auth.principal_of(key)
    tb = visible(_bank(f), principal, slug)
    principal.require(tb.id, *STAFF)
    # the Idempotency-Key: a replay, or a refusal, before anything else
    if idempotency_key is not None and f["i_fingerprint"] is not None:
        earlier = idempotency.judge(
            transient(
                IdempotencyRecord,
                {
                    "fingerprint": f["i_fingerprint"],
                    "status_code": f["i_status_code"],
                    "response_body": f["i_response_body"],
                },
            ),
            fingerprint,
        )
        assert earlier is not None
        if auth.due_for_touch(key, now):
            await conn.execute(TOUCH, key.id, now)
        return Answer(earlier.status, earlier.body, True)
    # validate: parties, kind, amounts, date, category, reference
    categories = {}
    if f["c_id"] is not None:
        categories[f["c_slug"]] = transient(
            Category,
            {
                "id": f["c_id"],
                "slug": f["c_slug"],
                "timebank_id": tb.id,
                "retired_at": f["c_retired"],
            },
        )
    lookup = Lookup.of(
        tb,
        [_PartyRow(*p) for p in f["parties"]],
        categories,
        {data.external_ref} if f["ref_taken"] and data.external_ref is not None else set(),
    )
    prepared = validate(data, lookup)
    check_active(prepared)
    d = draft(data, prepared)
    # the limits, on the balances read (the write keeps them within what the rule allows)
    accounts = {}
    for values in f["accounts"]:
        account = _account(dict(zip(_ACCOUNT, values, strict=True)))
        accounts[account.id] = account
    book = Book(tb, accounts)
    try:
        book.apply(d.legs, enforce_limits=d.enforce_limits)
    except BalanceLimitExceeded as exc:
        names = {p.owner_id: p.name for p in prepared.parties}
        exc.detail = limit_refusal(exc.extra, names.get(uuid.UUID(exc.extra["party"]["id"])))
        raise
    # the rows and the response, as the in-process path builds them
    row = exchange_row(principal, tb, d)
    result = posted(row, d)
    body = idempotency.dump(view(result).model_dump(mode="json"))
    event = recorded_event(principal, tb, data, result)
    delta = {leg.account_id: leg.minutes for leg in d.legs}  # one leg per account
    ids = sorted(delta)
    ranges = [
        admissible(delta[a], *effective_limits(accounts[a], tb))
        if d.enforce_limits
        else (None, None)
        for a in ids
    ]
    args = (
        ids,
        [delta[a] for a in ids],
        [r[0] for r in ranges],
        [r[1] for r in ranges],
        key.id,
        idempotency_key,
        fingerprint,
        body.decode(),
        now,
        row["id"],
        [leg.account_id for leg in d.legs],
        [leg.minutes for leg in d.legs],
        *_values(row | {"record_key": record_key()}, _EXCHANGE_COLUMNS),
        *_values(event, _AUDIT_COLUMNS),
        auth.due_for_touch(key, now),
        uuid7(),
        tb.id,
        json.dumps(recorded_change(row["id"], prepared_members(prepared)).data),
        prepared_members(prepared),
    )
    attempt = 0
    while True:
        try:
            await conn.fetchval(WRITE, *args)
            break
        except Exception as exc:
            state = getattr(exc, "sqlstate", None)
            if state == STOPPED:
                return None
            if state == "23505" and "external_ref" in str(exc):
                raise duplicate_ref(data.external_ref) from None
            if state in RETRYABLE and attempt < retries:
                attempt += 1
                await asyncio.sleep(min(0.5, 0.005 * (2**attempt)) * random.random())
                continue
            raise
    return Answer(201, body, False)


def _key(f: Any) -> ApiKey | None:
    if f["k_id"] is None:
        return None
    values = {c: f[f"k_{c}"] for c in _KEY}
    values["role"] = Role(values["role"])
    return transient(ApiKey, values)


def _bank(f: Any, *more: str) -> TimeBank | None:
    if f["t_id"] is None:
        return None
    return transient(TimeBank, {c: f[f"t_{c}"] for c in (*_BANK, *more)})


def _account(values: dict[str, Any]) -> Account:
    values["owner_type"] = OwnerType(values["owner_type"])
    return transient(Account, values)


@dataclass(frozen=True)
class _PartyRow:
    id: uuid.UUID
    timebank_id: uuid.UUID
    account_id: uuid.UUID
    active: bool
    owner_type: str
    name: str


def _values(row: dict[str, Any], columns: list[str]) -> list[Any]:
    out = []
    for c in columns:
        value = row[c]
        if c == "details":
            value = None if value is None else json.dumps(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        out.append(value)
    return out


BALANCE_FACTS = f"""
SELECT {", ".join(f"k.{c} AS k_{c}" for c in _KEY)},
       {", ".join(f"t.{c} AS t_{c}" for c in (*_BANK, "pending_expiry_days"))},
       {", ".join(f"a.{c} AS a_{c}" for c in _ACCOUNT)},
       ARRAY(SELECT ROW(recorded_at, minutes, true) FROM exchanges
             WHERE provider_account_id = a.id AND status = 'pending'
             UNION ALL
             SELECT ROW(recorded_at, minutes, false) FROM exchanges
             WHERE recipient_account_id = a.id AND status = 'pending') AS pending
FROM (SELECT 1) AS one
LEFT JOIN api_keys k ON k.secret_hash = $1
LEFT JOIN timebanks t ON t.slug = $2
LEFT JOIN members m ON m.id = $3 AND m.timebank_id = t.id
LEFT JOIN accounts a ON a.id = m.account_id
"""


async def balance(conn: Any, *, secret_hash: str, slug: str, member_id: uuid.UUID) -> bytes | None:
    """A member's balance as JSON (``BalanceOut``) with one read on ``conn`` (asyncpg,
    autocommit); ``None`` for a funder key, which the in-process path refuses."""
    f = await conn.fetchrow(BALANCE_FACTS, secret_hash, slug, member_id)
    now = utcnow()
    key = auth.check_key(_key(f), secret_hash, now)
    if key.role is Role.funder:
        return None
    principal = auth.principal_of(key)
    tb = visible(_bank(f, "pending_expiry_days"), principal, slug)
    require_self_or_staff(principal, tb.id, member_id)
    if f["a_id"] is None:
        raise no_such(OwnerType.member)
    if auth.due_for_touch(key, now):
        await conn.execute(TOUCH, key.id, now)
    account = _account({c: f[f"a_{c}"] for c in _ACCOUNT})
    cutoff = expiry_cutoff(tb)
    live = [(minutes, incoming) for at, minutes, incoming in f["pending"] if at >= cutoff]
    out = balance_view(
        account,
        tb,
        sum(m for m, incoming in live if incoming),
        sum(m for m, incoming in live if not incoming),
    )
    return BalanceOut.__pydantic_serializer__.to_json(out)
