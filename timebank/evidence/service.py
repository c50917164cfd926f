"""Reading the evidence: checkpoints (staff and funders of the bank), an exchange's
inclusion proof (whoever may read the exchange), consistency proofs between checkpoints."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal, Role
from timebank.config import Settings
from timebank.errors import InvalidInput, NotCheckpointed, NotFound
from timebank.evidence import merkle, note
from timebank.evidence.schemas import CheckpointOut, ConsistencyOut, ProofEntry, ProofOut
from timebank.evidence.seal import C, E, load_signer, nodes
from timebank.ledger import reads
from timebank.timebanks.models import TimeBank

READERS = (*STAFF, Role.funder)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _verifier_of(settings: Settings, key_name: str) -> str | None:
    try:
        signer = load_signer(settings)
        known = [k for k in settings.verifier_keys.split(",") if k.strip()]
        if signer is not None:
            known.append(signer.verifier)
    except (OSError, note.SigningKeyError):
        return None
    return next((k.strip() for k in known if k.strip().split("+", 1)[0] == key_name), None)


def _view(settings: Settings, row: Any) -> CheckpointOut:
    body = note.parse_checkpoint(note.split_note(row.note)[0])
    return CheckpointOut(
        origin=body.origin,
        tree_size=row.tree_size,
        root_hash=_b64(bytes(row.root_hash)),
        chain_head=_b64(bytes(row.chain_head)),
        time=row.created_at,
        key_name=row.key_name,
        verifier_key=_verifier_of(settings, row.key_name),
        note=row.note,
    )


async def _checkpoint_row(session: AsyncSession, tb: TimeBank, size: int | None) -> Any:
    q = select(C).where(C.c.timebank_id == tb.id)
    if size is not None:
        q = q.where(C.c.tree_size == size)
    return (await session.execute(q.order_by(C.c.created_at.desc()).limit(1))).first()


async def get_checkpoint(
    session: AsyncSession, principal: Principal, tb: TimeBank, settings: Settings, size: int | None
) -> CheckpointOut:
    """The latest checkpoint, or the latest of ``size`` entries."""
    principal.require(tb.id, *READERS)
    row = await _checkpoint_row(session, tb, size)
    if row is None:
        if size is None:
            raise NotCheckpointed(
                "This time bank has no checkpoint yet; one is signed within minutes of its first exchange"
            )
        raise NotFound(f"No checkpoint of {size} entries in this time bank")
    return _view(settings, row)


async def exchange_proof(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    settings: Settings,
    exchange_id: uuid.UUID,
    size: int | None,
) -> ProofOut:
    """The exchange's chain entries covered by the checkpoint, each with its audit path."""
    await reads.get_exchange(session, principal, tb, exchange_id)  # who may read it, or 404
    row = await _checkpoint_row(session, tb, size)
    if row is None:
        if size is not None:
            raise InvalidInput("size", f"no checkpoint of {size} entries in this time bank")
        raise NotCheckpointed("This time bank has no checkpoint yet; try again in a few minutes")
    n = row.tree_size
    found = (
        await session.execute(
            select(E.c.seq, E.c.status, E.c.leaf)
            .where(E.c.timebank_id == tb.id, E.c.exchange_id == exchange_id, E.c.seq <= n)
            .order_by(E.c.seq)
        )
    ).all()
    if not found:
        raise NotCheckpointed(
            "This exchange is not in a signed checkpoint yet; a checkpoint is signed every "
            f"{settings.checkpoint_minutes} minutes — try again then"
        )
    need: set[tuple[int, int]] = set()
    for e in found:
        need |= merkle.inclusion_nodes(e.seq - 1, n)
    have = await nodes(session, tb.id, need | {(0, e.seq - 1) for e in found})
    entries = [
        ProofEntry(
            leaf_index=e.seq - 1,
            status=e.status,
            leaf=e.leaf,
            leaf_hash=_b64(have[0, e.seq - 1]),
            inclusion_proof=[
                _b64(h) for h in merkle.inclusion_proof(lambda lv, i: have[lv, i], e.seq - 1, n)
            ],
        )
        for e in found
    ]
    return ProofOut(exchange_id=exchange_id, checkpoint=_view(settings, row), entries=entries)


async def consistency(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    size: int,
    from_size: int | None,
) -> ConsistencyOut:
    principal.require(tb.id, *READERS)
    if from_size is None:
        raise InvalidInput("from", "give the size of the older checkpoint, e.g. ?from=120")
    if from_size < 0 or from_size > size:
        raise InvalidInput("from", f"must be between 0 and {size}, the newer checkpoint's size")
    new = await _checkpoint_row(session, tb, size)
    if new is None:
        raise NotFound(f"No checkpoint of {size} entries in this time bank")
    old = await _checkpoint_row(session, tb, from_size)
    if old is None:
        raise InvalidInput("from", f"no checkpoint of {from_size} entries in this time bank")
    have = await nodes(session, tb.id, merkle.consistency_nodes(from_size, size))
    proof = merkle.consistency_proof(merkle.reader(have), from_size, size)
    return ConsistencyOut(
        from_size=from_size,
        to_size=size,
        from_root=_b64(bytes(old.root_hash)),
        to_root=_b64(bytes(new.root_hash)),
        proof=[_b64(h) for h in proof],
    )


async def checkpointed_at(session: AsyncSession, timebank_ids: list[uuid.UUID]) -> Any:
    """When the banks' ledgers were last checkpointed — the oldest of their latest
    checkpoints (the dashboard's line) — or None while any of them has none."""
    if not timebank_ids:
        return None
    found = await session.execute(
        select(C.c.timebank_id, func.max(C.c.created_at))
        .where(C.c.timebank_id.in_(timebank_ids))
        .group_by(C.c.timebank_id)
    )
    rows = dict(list(found.tuples()))
    if len(rows) < len(set(timebank_ids)):
        return None
    return min(rows.values())
