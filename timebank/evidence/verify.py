"""``timebank verify``: recompute every bank's chain and tree heads from the ledger as it is
now, check each checkpoint's signature and that the checkpoints are consistent, and check the
ledger's own sums — every exchange's zero sum, each account's balance and flows against its
postings, each posting's running balance — and the report rollups against the postings.

Reads only, so it runs against a live database, a replica or a restored backup. Each thing
that does not hold is a :class:`Finding` naming the bank, the exchange (when there is one)
and what differs.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from timebank.config import Settings
from timebank.db import table_of
from timebank.evidence import canonical, merkle, note
from timebank.evidence.seal import (
    EX,
    FACTS,
    LOOKBACK,
    OPEN,
    C,
    E,
    N,
    P,
    chain_next,
    facts_of,
    frontier,
    nodes,
    origin_of,
)
from timebank.ledger.models import Account, ExchangeStatus
from timebank.reports.rollups import rollup_mismatches
from timebank.timebanks.models import TimeBank

A, T = table_of(Account), table_of(TimeBank)
Progress = Callable[[str, int, int], None]  # (what, done so far, total)
FINAL = {s.value for s in ExchangeStatus} - {"pending"}


@dataclass(frozen=True)
class Finding:
    bank: str
    exchange: uuid.UUID | None
    what: str

    def __str__(self) -> str:
        where = f"bank {self.bank}" + (f", exchange {self.exchange}" if self.exchange else "")
        return f"{where}: {self.what}"


@dataclass
class Report:
    checked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _quiet(_what: str, _done: int, _total: int) -> None:
    pass


async def verify(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    keys: list[note.Verifier],
    *,
    slug: str | None = None,
    from_checkpoint: int | None = None,
    progress: Progress = _quiet,
) -> Report:
    report = Report()
    async with sessions() as session:
        q = select(T.c.id, T.c.slug).order_by(T.c.slug)
        if slug is not None:
            q = q.where(T.c.slug == slug)
        banks = [(r.id, r.slug) for r in await session.execute(q)]
        if slug is not None and not banks:
            report.findings.append(Finding(slug, None, "no such time bank"))
            return report
        if not keys:
            report.notes.append("no trusted key given: checkpoint signatures cannot be checked")
        for tb, name in banks:
            await _bank(session, settings, keys, tb, name, from_checkpoint, report, progress)
        progress("report rollups", 0, 1)
        found = await rollup_mismatches(await session.connection())
        for what, n in found.items():
            if n:
                report.findings.append(
                    Finding(
                        "(all)", None, f"report rollup {what}: {n} rows differ from the postings"
                    )
                )
        report.checked["report rollup tables"] += len(found) // 2
        progress("report rollups", 1, 1)
    return report


async def _bank(
    session: AsyncSession,
    settings: Settings,
    keys: list[note.Verifier],
    tb: uuid.UUID,
    name: str,
    from_checkpoint: int | None,
    report: Report,
    progress: Progress,
) -> None:
    def bad(exchange: uuid.UUID | None, what: str) -> None:
        report.findings.append(Finding(name, exchange, what))

    # --- the ledger as it is now
    exchanges = {
        r.id: r
        for r in await session.execute(
            select(*FACTS, EX.c.recorded_at, EX.c.decided_at).where(EX.c.timebank_id == tb)
        )
    }
    accounts = {
        r.id: r
        for r in await session.execute(
            select(A.c.id, A.c.balance_minutes, A.c.earned_minutes, A.c.spent_minutes).where(
                A.c.timebank_id == tb
            )
        )
    }
    legs: dict[uuid.UUID, list[canonical.Leg]] = defaultdict(list)
    running: dict[uuid.UUID, int] = defaultdict(int)
    earned: dict[uuid.UUID, int] = defaultdict(int)
    spent: dict[uuid.UUID, int] = defaultdict(int)
    postings = await session.stream(
        select(P.c.id, P.c.exchange_id, P.c.account_id, P.c.minutes, P.c.balance_after_minutes)
        .join(A, A.c.id == P.c.account_id)
        .where(A.c.timebank_id == tb)
        .order_by(P.c.id)
        .execution_options(yield_per=10_000)
    )
    n_postings = 0
    async for chunk in postings.partitions():
        for p in chunk:
            n_postings += 1
            legs[p.exchange_id].append(
                canonical.Leg(p.id, p.account_id, p.minutes, p.balance_after_minutes)
            )
            running[p.account_id] += p.minutes
            if p.minutes > 0:
                earned[p.account_id] += p.minutes
            else:
                spent[p.account_id] -= p.minutes
            if running[p.account_id] != p.balance_after_minutes:
                bad(
                    p.exchange_id,
                    f"posting {p.id}: running balance {p.balance_after_minutes}, "
                    f"its account's postings so far sum to {running[p.account_id]}",
                )
                running[p.account_id] = p.balance_after_minutes  # name each break once
            if p.exchange_id not in exchanges:
                bad(p.exchange_id, f"posting {p.id} belongs to an exchange not in the ledger")
    report.checked["postings (running balances)"] += n_postings
    progress(f"{name}: ledger", 1, 3)
    for ex_id, ex in exchanges.items():
        mine = legs.get(ex_id, [])
        total = sum(g.minutes for g in mine)
        if ex.status is ExchangeStatus.recorded:
            if len(mine) < 2 or total != 0:
                bad(
                    ex_id, f"recorded with {len(mine)} postings summing to {total} (must be ≥ 2, 0)"
                )
        elif mine:
            bad(ex_id, f"{ex.status.value} but has {len(mine)} postings")
    report.checked["exchanges (zero sum)"] += len(exchanges)
    for acc_id, acc in accounts.items():
        got = (acc.balance_minutes, acc.earned_minutes, acc.spent_minutes)
        want = (earned[acc_id] - spent[acc_id], earned[acc_id], spent[acc_id])
        if got != want:
            bad(
                None,
                f"account {acc_id}: balance/earned/spent {got[0]}/{got[1]}/{got[2]}, "
                f"its postings sum to {want[0]}/{want[1]}/{want[2]}",
            )
    report.checked["accounts (balance = sum of postings)"] += len(accounts)
    progress(f"{name}: ledger", 2, 3)

    # --- the checkpoints, and where verification starts
    cps = (
        await session.execute(
            select(C.c.tree_size, C.c.root_hash, C.c.chain_head, C.c.created_at, C.c.note)
            .where(C.c.timebank_id == tb)
            .order_by(C.c.tree_size, C.c.created_at)
        )
    ).all()
    signed: dict[int, note.Checkpoint] = {}
    origin = origin_of(settings, tb)
    for cp in cps:
        where = f"checkpoint of size {cp.tree_size} made {cp.created_at:%Y-%m-%d %H:%M}"
        try:
            body = (
                note.open_note(cp.note, keys)[0]
                if keys
                else note.parse_checkpoint(note.split_note(cp.note)[0])
            )
        except note.NoteError as exc:
            bad(None, f"{where}: {exc}")
            continue
        report.checked["checkpoint signatures"] += bool(keys)
        if body.origin != origin:
            bad(None, f"{where}: signed for {body.origin}, not this bank ({origin})")
        if (body.size, body.root, body.chain) != (
            cp.tree_size,
            bytes(cp.root_hash),
            bytes(cp.chain_head),
        ):
            bad(
                None,
                f"{where}: the stored size/root/chain head ({cp.tree_size}, "
                f"{_b64(bytes(cp.root_hash))}) differ from the signed note's "
                f"({body.size}, {_b64(body.root)})",
            )
        signed.setdefault(body.size, body)
    start = 0
    chain = merkle.ZERO
    tree = merkle.Frontier()
    if from_checkpoint is not None:
        if from_checkpoint not in signed:
            bad(None, f"no valid signed checkpoint of size {from_checkpoint} to start from")
            return
        base = signed[from_checkpoint]
        try:
            tree = await frontier(session, tb, base.size)
        except RuntimeError as exc:
            bad(None, str(exc))
            return
        if tree.root() != base.root:
            bad(None, f"the stored tree of size {base.size} does not give the signed root")
            return
        start, chain = base.size, base.chain
        report.notes.append(f"bank {name}: entries 1–{start} trusted from the signed checkpoint")

    # --- the chain, entry by entry, against the ledger as it is now
    total = (
        await session.scalar(
            select(E.c.seq).where(E.c.timebank_id == tb).order_by(E.c.seq.desc()).limit(1)
        )
        or 0
    )
    roots: dict[int, bytes] = {start: tree.root()}
    heads: dict[int, bytes] = {start: chain}
    statuses: dict[uuid.UUID, list[str]] = defaultdict(list)
    computed: dict[tuple[int, int], bytes] = {}
    entries = await session.stream(
        select(E.c.seq, E.c.exchange_id, E.c.status, E.c.leaf, E.c.chain_hash)
        .where(E.c.timebank_id == tb, E.c.seq > start)
        .order_by(E.c.seq)
        .execution_options(yield_per=5000)
    )
    expected = start
    async for batch in entries.partitions():
        for e in batch:
            expected += 1
            ex_id = e.exchange_id
            statuses[ex_id].append(e.status)
            if e.seq != expected:
                bad(
                    ex_id, f"chain entry {e.seq} where {expected} was expected: entries are missing"
                )
                expected = e.seq
            stored = e.leaf.encode()
            row = exchanges.get(ex_id)
            if row is None:
                bad(ex_id, f"in the chain (entry {e.seq}) but not in the ledger")
            else:
                now = canonical.leaf(
                    tb,
                    e.seq,
                    facts_of(row),
                    e.status,
                    [] if e.status == "pending" else legs.get(ex_id, []),
                )
                if now != stored:
                    bad(
                        ex_id,
                        f"chain entry {e.seq} differs: "
                        + "; ".join(canonical.differences(stored, now)),
                    )
            lh = merkle.leaf_hash(stored)
            chain = chain_next(chain, lh)
            if chain != bytes(e.chain_hash):
                bad(
                    ex_id,
                    f"chain entry {e.seq}: the chain hash does not follow from the entries before it",
                )
                chain = bytes(e.chain_hash)
            for level, idx, h in tree.append(lh):
                computed[level, idx] = h
            if tree.size in signed:
                roots[tree.size] = tree.root()
                heads[tree.size] = chain
            if e.seq % 10_000 == 0:
                progress(f"{name}: chain", e.seq - start, total - start)
    report.checked["chain entries"] += expected - start
    progress(f"{name}: chain", total - start, total - start)
    # each exchange's states: [final] or [pending, final], the last its status now
    in_chain = set(statuses)
    open_ = set(
        (
            await session.execute(select(OPEN.c.exchange_id).where(OPEN.c.timebank_id == tb))
        ).scalars()
    )
    for ex_id, seen in statuses.items():
        now_row = exchanges.get(ex_id)
        if now_row is None:
            continue
        ok_path = seen in (["pending"], *([s] for s in FINAL), *(["pending", s] for s in FINAL))
        if not ok_path:
            bad(ex_id, f"sealed in states {seen}, which no exchange passes through")
        elif seen[-1] != now_row.status.value and not (seen == ["pending"] and ex_id in open_):
            bad(ex_id, f"sealed as {seen[-1]}, {now_row.status.value} in the ledger now")
    if start == 0:
        last_cp = max((cp.created_at for cp in cps), default=None)
        late = timedelta(minutes=settings.checkpoint_minutes) + LOOKBACK
        waiting = 0
        for ex_id, ex in exchanges.items():
            if ex_id in in_chain:
                continue
            if last_cp is not None and ex.recorded_at < last_cp - late:
                bad(ex_id, f"recorded {ex.recorded_at:%Y-%m-%d %H:%M} but missing from the chain")
            else:
                waiting += 1
        if waiting:
            report.notes.append(
                f"bank {name}: {waiting} exchanges recorded since the last seal are not in the chain yet"
            )

    # the stored tree (what proofs are built from) against the recomputed one
    wrong = 0
    stored_nodes = await session.stream(
        select(N.c.level, N.c.idx, N.c.hash)
        .where(N.c.timebank_id == tb)
        .execution_options(yield_per=20_000)
    )
    seen_nodes = 0
    async for part in stored_nodes.partitions():
        for node in part:
            key = (node.level, node.idx)
            if key in computed:
                seen_nodes += 1
                if computed[key] != bytes(node.hash):
                    wrong += 1
    if wrong or seen_nodes != len(computed):
        bad(None, f"stored Merkle tree: {wrong} nodes differ, {len(computed) - seen_nodes} missing")
    report.checked["tree nodes"] += seen_nodes

    # each signed tree head against the recomputed one, and consistency between them
    ok_sizes = sorted(s for s in signed if s <= start)
    for size in sorted(s for s in signed if s >= start):
        body = signed[size]
        if size > tree.size:
            bad(
                None,
                f"checkpoint of size {size}: the chain has only {tree.size} entries — entries were removed",
            )
            continue
        report.checked["tree heads recomputed"] += 1
        if roots[size] != body.root:
            after = ok_sizes[-1] if ok_sizes else 0
            changed = [
                r.exchange_id
                for r in await session.execute(
                    select(E.c.exchange_id)
                    .where(E.c.timebank_id == tb, E.c.seq > after, E.c.seq <= size)
                    .order_by(E.c.seq)
                    .limit(10)
                )
            ]
            bad(
                None,
                f"checkpoint of size {size}: the chain's tree head is {_b64(roots[size])}, "
                f"the signed one {_b64(body.root)}; the change lies in entries {after + 1}–{size} "
                f"(exchanges {', '.join(map(str, changed))}{' …' if size - after > 10 else ''})",
            )
            continue
        if heads[size] != body.chain:
            bad(None, f"checkpoint of size {size}: the chain head differs from the signed one")
            continue
        ok_sizes.append(size)
    for old, new in itertools.pairwise(ok_sizes):
        have = await nodes(session, tb, merkle.consistency_nodes(old, new))
        try:
            proof = merkle.consistency_proof(merkle.reader(have), old, new)
        except KeyError:
            bad(None, f"checkpoints {old} → {new}: the stored tree cannot prove consistency")
            continue
        if not merkle.verify_consistency(old, new, signed[old].root, signed[new].root, proof):
            bad(None, f"checkpoints {old} → {new}: not consistent (the older is not a prefix)")
        report.checked["consistency proofs"] += 1
    progress(f"{name}: ledger", 3, 3)
