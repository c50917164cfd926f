"""The sealer: appends each bank's new exchange states to its chain and Merkle tree just
after the ledger committed them, and signs checkpoints.

It reads the ledger and writes only the evidence tables, so a write never waits for it.
Several workers may run it: each pass of a bank holds a transaction-scoped lock on that bank
(PostgreSQL: an advisory lock tried, not waited for; SQLite: the write lock of BEGIN
IMMEDIATE), and the database refuses an entry that would leave a gap, so two sealers can
never fork a chain.

What is sealed, in order: decisions on proposals sealed while pending (by decision time),
then exchanges not in the chain at all (by recording time). A pass looks back
``LOOKBACK`` before the previous pass for new exchanges; a full scan runs on the first pass
and every ``checkpoint_minutes``, so a transaction that committed late is still sealed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from timebank.config import Settings
from timebank.db import begin_write, create_engine, table_of, utcnow, uuid7
from timebank.evidence import canonical, merkle, note
from timebank.evidence.models import EvidenceCheckpoint, EvidenceEntry, EvidenceNode, EvidenceOpen
from timebank.ledger.models import Exchange, ExchangeStatus, Posting
from timebank.timebanks.models import TimeBank

log = logging.getLogger("timebank.evidence")

EX, P = table_of(Exchange), table_of(Posting)
E, N, C, OPEN = (
    table_of(EvidenceEntry),
    table_of(EvidenceNode),
    table_of(EvidenceCheckpoint),
    table_of(EvidenceOpen),
)
LOOKBACK = timedelta(minutes=10)
DAY = timedelta(days=1)
FACTS = (
    EX.c.id,
    EX.c.kind,
    EX.c.minutes,
    EX.c.occurred_on,
    EX.c.category_id,
    EX.c.provider_account_id,
    EX.c.recipient_account_id,
    EX.c.reverses,
    EX.c.status,
)


def chain_next(previous: bytes, leaf_hash: bytes) -> bytes:
    return hashlib.sha256(previous + leaf_hash).digest()


def facts_of(row: Any) -> canonical.Facts:
    return canonical.Facts(
        id=row.id,
        kind=str(row.kind),
        minutes=row.minutes,
        occurred_on=row.occurred_on,
        category=row.category_id,
        provider=row.provider_account_id,
        recipient=row.recipient_account_id,
        reverses=row.reverses,
    )


async def legs_of(
    session: AsyncSession, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[canonical.Leg]]:
    out: dict[uuid.UUID, list[canonical.Leg]] = {}
    if not ids:
        return out
    rows = await session.execute(
        select(P.c.exchange_id, P.c.id, P.c.account_id, P.c.minutes, P.c.balance_after_minutes)
        .where(P.c.exchange_id.in_(ids))
        .order_by(P.c.id)
    )
    for r in rows:
        out.setdefault(r.exchange_id, []).append(
            canonical.Leg(r.id, r.account_id, r.minutes, r.balance_after_minutes)
        )
    return out


async def head(session: AsyncSession, tb: uuid.UUID) -> tuple[int, bytes]:
    """The bank's chain length and last chain hash (32 zero bytes when empty)."""
    row = (
        await session.execute(
            select(E.c.seq, E.c.chain_hash)
            .where(E.c.timebank_id == tb)
            .order_by(E.c.seq.desc())
            .limit(1)
        )
    ).first()
    return (row.seq, bytes(row.chain_hash)) if row else (0, merkle.ZERO)


async def nodes(
    session: AsyncSession, tb: uuid.UUID, keys: set[tuple[int, int]] | list[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    if not keys:
        return {}
    found = await session.execute(
        select(N.c.level, N.c.idx, N.c.hash).where(
            N.c.timebank_id == tb, or_(*(and_(N.c.level == lv, N.c.idx == i) for lv, i in keys))
        )
    )
    return {(r.level, r.idx): bytes(r.hash) for r in found}


async def frontier(session: AsyncSession, tb: uuid.UUID, size: int) -> merkle.Frontier:
    keys = merkle.Frontier.keys(size)
    have = await nodes(session, tb, keys)
    missing = [k for k in keys if k not in have]
    if missing:
        raise RuntimeError(f"the Merkle tree of bank {tb} lacks nodes {missing}")
    return merkle.Frontier(size, [have[k] for k in keys])


async def _locked(session: AsyncSession, tb: uuid.UUID) -> bool:
    """Start the pass's write transaction and take the bank's sealing lock, if free."""
    await begin_write(session)
    if session.get_bind().dialect.name != "postgresql":
        return True  # BEGIN IMMEDIATE: the database's one writer
    key = int.from_bytes(
        hashlib.sha256(b"timebank-seal" + tb.bytes).digest()[:8], "big", signed=True
    )
    got = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    return bool(got)


async def seal_batch(
    session: AsyncSession, tb: uuid.UUID, *, since: datetime | None, limit: int, now: datetime
) -> int | None:
    """Seal up to ``limit`` exchange states of one bank in one transaction (committed);
    None when another sealer holds the bank."""
    if not await _locked(session, tb):
        await session.rollback()
        return None
    decided = (
        await session.execute(
            select(*FACTS)
            .join(OPEN, OPEN.c.exchange_id == EX.c.id)
            .where(OPEN.c.timebank_id == tb, EX.c.status != ExchangeStatus.pending)
            .order_by(EX.c.decided_at, EX.c.id)
            .limit(limit)
        )
    ).all()
    fresh_q = select(*FACTS).where(
        EX.c.timebank_id == tb, ~exists().where(E.c.exchange_id == EX.c.id)
    )
    if since is not None:
        fresh_q = fresh_q.where(EX.c.recorded_at >= since)
    fresh = (
        await session.execute(
            fresh_q.order_by(EX.c.recorded_at, EX.c.id).limit(max(0, limit - len(decided)))
        )
    ).all()
    rows = [*decided, *fresh]
    if not rows:
        await session.rollback()
        return 0
    legs = await legs_of(session, [r.id for r in rows if r.status is not ExchangeStatus.pending])
    seq, chain = await head(session, tb)
    tree = await frontier(session, tb, seq)
    entries, made = [], []
    for r in rows:
        seq += 1
        status = str(r.status)
        leaf = canonical.leaf(tb, seq, facts_of(r), status, legs.get(r.id, []))
        lh = merkle.leaf_hash(leaf)
        chain = chain_next(chain, lh)
        made += tree.append(lh)
        entries.append(
            {
                "timebank_id": tb,
                "seq": seq,
                "exchange_id": r.id,
                "status": status,
                "leaf": leaf.decode(),
                "chain_hash": chain,
                "sealed_at": now,
            }
        )
    await session.execute(insert(E), entries)
    await session.execute(
        insert(N), [{"timebank_id": tb, "level": lv, "idx": i, "hash": h} for lv, i, h in made]
    )
    if decided:
        await session.execute(delete(OPEN).where(OPEN.c.exchange_id.in_([r.id for r in decided])))
    opened = [r.id for r in fresh if r.status is ExchangeStatus.pending]
    if opened:
        await session.execute(insert(OPEN), [{"exchange_id": i, "timebank_id": tb} for i in opened])
    await session.commit()
    return len(rows)


async def seal(
    sessions: async_sessionmaker[AsyncSession],
    tb: uuid.UUID,
    *,
    since: datetime | None = None,
    limit: int = 2000,
    now: datetime | None = None,
) -> int | None:
    """Seal everything waiting in one bank, a batch per transaction; the number sealed, or
    None when another sealer holds the bank."""
    total = 0
    while True:
        async with sessions() as session:
            n = await seal_batch(session, tb, since=since, limit=limit, now=now or utcnow())
        if n is None:
            return None if total == 0 else total
        total += n
        if n < limit:
            return total


def load_signer(settings: Settings) -> note.Signer | None:
    """The configured signing key, if any (the key itself beats the file)."""
    if settings.signing_key:
        return note.parse_signer(settings.signing_key)
    if settings.signing_key_file:
        return note.parse_signer(Path(settings.signing_key_file).read_text())
    return None


def trusted_keys(settings: Settings, extra: list[str] = ()) -> list[note.Verifier]:  # type: ignore[assignment]
    """The verifier keys a checkpoint may be signed with: the signing key's own, older keys
    kept in TIMEBANK_VERIFIER_KEYS, and any given."""
    out = [
        note.parse_verifier(k) for k in [*settings.verifier_keys.split(","), *extra] if k.strip()
    ]
    signer = load_signer(settings)
    if signer is not None:
        out.append(note.parse_verifier(signer.verifier))
    return out


def origin_of(settings: Settings, tb: uuid.UUID) -> str:
    return f"{settings.evidence_origin}/{tb}"


@dataclass(frozen=True)
class Made:
    size: int
    note: str


async def checkpoint(
    sessions: async_sessionmaker[AsyncSession],
    tb: uuid.UUID,
    signer: note.Signer,
    settings: Settings,
    *,
    now: datetime | None = None,
    force: bool = False,
) -> Made | None:
    """Sign the bank's tree head when one is due: the first, one every
    ``checkpoint_minutes`` while the chain grows, and one a day whatever happens."""
    now = now or utcnow()
    async with sessions() as session:
        if not await _locked(session, tb):
            await session.rollback()
            return None
        size, chain = await head(session, tb)
        last = (
            await session.execute(
                select(C.c.tree_size, C.c.created_at)
                .where(C.c.timebank_id == tb)
                .order_by(C.c.created_at.desc())
                .limit(1)
            )
        ).first()
        due = (
            force
            or last is None
            or now - last.created_at >= DAY
            or (
                size > last.tree_size
                and now - last.created_at >= timedelta(minutes=settings.checkpoint_minutes)
            )
        )
        if not due:
            await session.rollback()
            return None
        root = (await frontier(session, tb, size)).root()
        cp = note.Checkpoint(origin_of(settings, tb), size, root, now.replace(microsecond=0), chain)
        signed = signer.sign(cp.text())
        await session.execute(
            insert(C).values(
                id=uuid7(at=now),
                timebank_id=tb,
                tree_size=size,
                root_hash=root,
                chain_head=chain,
                created_at=cp.time,
                key_name=signer.name,
                note=signed,
            )
        )
        await session.commit()
        return Made(size, signed)


async def banks(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[uuid.UUID, str]]:
    T = table_of(TimeBank)
    async with sessions() as session:
        return [
            (r.id, r.slug)
            for r in await session.execute(select(T.c.id, T.c.slug).order_by(T.c.slug))
        ]


async def run_sealer(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, stop: threading.Event
) -> None:
    """``timebank serve``'s background task: seal every bank every ``seal_seconds`` (a full
    scan every ``checkpoint_minutes``) and sign a checkpoint when one is due, until ``stop`` is set."""
    signer = load_signer(settings)
    if signer is None:
        log.warning(
            "no signing key (TIMEBANK_SIGNING_KEY[_FILE]): chains are built, no checkpoints"
        )
    every = timedelta(minutes=settings.checkpoint_minutes)
    last_full: dict[uuid.UUID, datetime] = {}
    last_pass: datetime | None = None
    while not stop.is_set():
        started = utcnow()
        try:
            for tb, _slug in await banks(sessions):
                full = tb not in last_full or started - last_full[tb] >= every
                since = None if full or last_pass is None else last_pass - LOOKBACK
                done = await seal(sessions, tb, since=since)
                if done is None:
                    continue  # another worker is sealing this bank
                if full:
                    last_full[tb] = started
                if signer is not None:
                    await checkpoint(sessions, tb, signer, settings)
            last_pass = started
        except Exception:  # the service goes on; the next pass tries again
            log.exception("sealing failed")
        await asyncio.to_thread(stop.wait, settings.seal_seconds)


def start_sealer(settings: Settings) -> Callable[[], None]:
    """Run :func:`run_sealer` in a thread of its own, with its own event loop and engine, so
    that a pass holding a bank's lock never waits on the worker's event loop (SQLite's one
    write lock would otherwise stall a request behind it). Returns the function that stops
    it and waits for it."""
    stop = threading.Event()

    async def main() -> None:
        engine = create_engine(settings)
        try:
            await run_sealer(async_sessionmaker(engine, expire_on_commit=False), settings, stop)
        finally:
            await engine.dispose()

    thread = threading.Thread(
        target=asyncio.run, args=(main(),), name="timebank-sealer", daemon=True
    )
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join()

    return halt
