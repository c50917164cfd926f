"""The evidence: each bank's hash chain, signed checkpoints, inclusion and consistency proofs,
and ``timebank verify`` — on a clean ledger (erasures and reversals included) and on ledgers a
database superuser changed behind the service's back (triggers bypassed), where the verifier
must name what changed."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests import test_console
from tests.conftest import Api, simple
from tests.test_console import Clock, make_user, sign_in
from timebank.access import Role
from timebank.app import create_app
from timebank.config import Settings
from timebank.db import create_engine
from timebank.evidence import merkle, note, seal
from timebank.evidence.models import EvidenceEntry
from timebank.evidence.verify import Report, verify
from timebank.tools.demo import generate, get_or_create_bank

ROOT = Path(__file__).resolve().parent.parent
SIGNER = note.new_signer("test-bank-2026")
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def ev_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"signing_key": SIGNER.encode()})


@pytest.fixture
async def ev_engine(ev_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(ev_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(ev_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(ev_engine, expire_on_commit=False)


@pytest.fixture
async def ev_api(ev_settings: Settings, admin_secret: str) -> AsyncIterator[Api]:
    async with AsyncTestClient(app=create_app(ev_settings), timeout=60) as c:
        yield Api(c, admin_secret)


@dataclass
class Bank:
    slug: str
    id: uuid.UUID
    ann: dict[str, Any]
    bob: dict[str, Any]
    cat: dict[str, Any]
    lift: dict[str, Any]
    reversed_: dict[str, Any]
    reversal: dict[str, Any]
    confirmed: dict[str, Any]
    rejected: dict[str, Any]
    pending: dict[str, Any]
    ann_key: str


async def _created(r: Any, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


async def build_bank(api: Api, sessions: async_sessionmaker[AsyncSession] | None = None) -> Bank:
    """Exchanges of every kind of history: recorded, reversed, a proposal confirmed, one
    rejected, one still pending. With ``sessions``, a seal while the two decided proposals
    were still pending (so each has two entries)."""
    tb = await api.timebank()
    slug = tb["slug"]
    path = f"/v1/timebanks/{slug}/exchanges"
    ann, bob, cat = [await api.member(slug, n) for n in ("Ann", "Bob", "Cat")]
    ann_key = await api.key(slug, "member", member_id=ann["id"])
    bob_api = api.as_key(await api.key(slug, "member", member_id=bob["id"]))
    lift = await _created(await api.exchange(slug, simple(ann, bob, 60)))
    wrong = await _created(await api.exchange(slug, simple(bob, cat, 45, category="diy-repairs")))
    reversal = await _created(await api.post(f"{path}/{wrong['id']}/reverse", {"reason": "typo"}))
    ann_api = api.as_key(ann_key)
    offer = await _created(await ann_api.exchange(slug, simple(ann, bob, 30)))
    no = await _created(await ann_api.exchange(slug, simple(ann, bob, 15)))
    if sessions is not None:
        assert await seal.seal(sessions, uuid.UUID(tb["id"])) == 5
    confirmed = await _created(await bob_api.post(f"{path}/{offer['id']}/confirm", {}), 200)
    rejected = await _created(
        await bob_api.post(f"{path}/{no['id']}/reject", {"reason": "no"}), 200
    )
    pending = await _created(await ann_api.exchange(slug, simple(ann, cat, 20)))
    return Bank(
        slug,
        uuid.UUID(tb["id"]),
        ann,
        bob,
        cat,
        lift,
        wrong,
        reversal,
        confirmed,
        rejected,
        pending,
        ann_key,
    )


async def seal_and_sign(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, tb: uuid.UUID, at: datetime
) -> int:
    assert await seal.seal(sessions, tb, now=at) is not None
    made = await seal.checkpoint(sessions, tb, SIGNER, settings, now=at, force=True)
    assert made is not None
    return made.size


async def run_verify(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    slug: str | None = None,
    **kw: Any,
) -> Report:
    keys = [note.parse_verifier(SIGNER.verifier)]
    return await verify(sessions, settings, keys, slug=slug, **kw)


# --- pure parts ---------------------------------------------------------------------------


def test_merkle_proofs_verify_for_every_size_and_index() -> None:
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(40)]
    tree = merkle.tree_of(leaves)
    node = lambda lv, i: tree[lv, i]  # noqa: E731
    for n in range(1, 41):
        root = merkle.root(node, n)

        # the recursion of RFC 6962, computed the slow way
        def mth(items: list[bytes]) -> bytes:
            if len(items) == 1:
                return items[0]
            k = merkle.split(len(items))
            return merkle.node_hash(mth(items[:k]), mth(items[k:]))

        assert root == mth(leaves[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(node, i, n)
            assert merkle.root_from_inclusion(i, n, leaves[i], proof) == root
            if i + 1 < n:
                try:
                    moved = merkle.root_from_inclusion(i + 1, n, leaves[i], proof)
                except ValueError:
                    continue
                assert moved != root
        for m in range(0, n + 1):
            proof = merkle.consistency_proof(node, m, n)
            old = merkle.root(node, m)
            assert merkle.verify_consistency(m, n, old, root, proof), (m, n)
            if 0 < m < n:
                assert not merkle.verify_consistency(m, n, root, root, proof)


def test_a_note_signed_by_one_key_does_not_open_with_another_or_once_edited() -> None:
    cp = note.Checkpoint("o/1", 5, b"\x01" * 32, T0, b"\x02" * 32)
    signed = SIGNER.sign(cp.text())
    me = note.parse_verifier(SIGNER.verifier)
    assert note.open_note(signed, [me])[0] == cp
    other = note.parse_verifier(note.new_signer("test-bank-2026").verifier)
    with pytest.raises(note.NoteError):
        note.open_note(signed, [other])
    with pytest.raises(note.NoteError):
        note.open_note(signed.replace("\n5\n", "\n6\n"), [me])
    assert note.parse_signer(SIGNER.encode()).verifier == SIGNER.verifier


# --- a clean ledger -----------------------------------------------------------------------


async def test_a_clean_ledger_with_reversals_proposals_and_an_erasure_verifies(
    ev_api: Api, sessions: async_sessionmaker[AsyncSession], ev_settings: Settings
) -> None:
    b = await build_bank(ev_api, sessions)
    first = await seal_and_sign(sessions, ev_settings, b.id, T0)
    # 6 exchanges; the confirmed and the rejected proposal were also sealed while pending
    assert first == 8
    # erasing a member changes no sealed fact; the pending proposal is then cancelled
    await ev_api.ok("post", f"/v1/timebanks/{b.slug}/members/{b.cat['id']}/erase", status=200)
    path = f"/v1/timebanks/{b.slug}/exchanges"
    ann = ev_api.as_key(b.ann_key)
    await ann.ok("post", f"{path}/{b.pending['id']}/cancel", {"reason": "not needed"}, status=200)
    more = await _created(await ev_api.exchange(b.slug, simple(b.bob, b.ann, 25)))
    second = await seal_and_sign(sessions, ev_settings, b.id, T0 + timedelta(minutes=10))
    assert second == first + 2  # the cancellation and the new exchange
    report = await run_verify(sessions, ev_settings, b.slug)
    assert report.ok, [str(f) for f in report.findings]
    assert report.checked["chain entries"] == second
    assert report.checked["checkpoint signatures"] == 2
    assert report.checked["consistency proofs"] == 1
    assert report.checked["tree heads recomputed"] == 2
    assert report.checked["exchanges (zero sum)"] == 7
    assert report.notes == []
    # from the first checkpoint on, only what follows is recomputed
    partial = await run_verify(sessions, ev_settings, b.slug, from_checkpoint=first)
    assert partial.ok, [str(f) for f in partial.findings]
    assert partial.checked["chain entries"] == 2
    assert more["id"]


async def test_the_sealer_task_seals_new_exchanges_and_signs_checkpoints(
    ev_api: Api, sessions: async_sessionmaker[AsyncSession], ev_settings: Settings
) -> None:
    tb = await ev_api.timebank()
    slug = tb["slug"]
    a, b = await ev_api.member(slug, "A"), await ev_api.member(slug, "B")
    for m in (10, 20, 30):
        await _created(await ev_api.exchange(slug, simple(a, b, m)))
    halt = seal.start_sealer(ev_settings.model_copy(update={"seal_seconds": 0.02}))
    try:
        async with asyncio.timeout(30):
            while True:
                async with sessions() as s:
                    n = await s.scalar(
                        select(func.count())
                        .select_from(EvidenceEntry)
                        .where(EvidenceEntry.timebank_id == uuid.UUID(tb["id"]))
                    )
                if n == 3:
                    break
                await asyncio.sleep(0.02)
        await _created(await ev_api.exchange(slug, simple(b, a, 5)))
        async with asyncio.timeout(30):
            while True:
                async with sessions() as s:
                    n = await s.scalar(
                        select(func.count())
                        .select_from(EvidenceEntry)
                        .where(EvidenceEntry.timebank_id == uuid.UUID(tb["id"]))
                    )
                if n == 4:
                    break
                await asyncio.sleep(0.02)
    finally:
        await asyncio.to_thread(halt)
    r = await ev_api.ok("get", f"/v1/timebanks/{slug}/checkpoints/latest")
    assert r["tree_size"] == 3  # the first checkpoint; the next is due checkpoint_minutes later
    report = await run_verify(sessions, ev_settings, slug)
    assert report.ok, [str(f) for f in report.findings]


@pytest.mark.postgres_only
async def test_two_sealers_at_once_never_fork_a_chain(
    ev_api: Api, sessions: async_sessionmaker[AsyncSession], ev_settings: Settings
) -> None:
    b = await build_bank(ev_api)
    results = await asyncio.gather(*(seal.seal(sessions, b.id, limit=1) for _ in range(4)))
    done = [r for r in results if r is not None]
    assert sum(done) + (await seal.seal(sessions, b.id) or 0) == 6
    await seal_and_sign(sessions, ev_settings, b.id, T0)
    report = await run_verify(sessions, ev_settings, b.slug)
    assert report.ok, [str(f) for f in report.findings]


# --- the API ------------------------------------------------------------------------------


async def test_checkpoints_and_proofs_over_the_api_check_out_with_the_rfc_algorithms(
    ev_api: Api, sessions: async_sessionmaker[AsyncSession], ev_settings: Settings
) -> None:
    b = await build_bank(ev_api, sessions)
    base = f"/v1/timebanks/{b.slug}"
    r = await ev_api.get(f"{base}/checkpoints/latest")
    assert r.status_code == 409 and r.json()["code"] == "not_checkpointed"
    first = await seal_and_sign(sessions, ev_settings, b.id, T0)
    await _created(await ev_api.exchange(b.slug, simple(b.bob, b.ann, 25)))
    second = await seal_and_sign(sessions, ev_settings, b.id, T0 + timedelta(hours=1))

    funder = ev_api.as_key(await ev_api.key(b.slug, "funder"))
    latest = await funder.ok("get", f"{base}/checkpoints/latest")
    assert latest["tree_size"] == second
    assert latest["verifier_key"] == SIGNER.verifier
    body, _signer = note.open_note(latest["note"], [note.parse_verifier(SIGNER.verifier)])
    assert base64.b64encode(body.root).decode() == latest["root_hash"]
    old = await funder.ok("get", f"{base}/checkpoints/{first}")
    assert old["tree_size"] == first
    assert (await funder.get(f"{base}/checkpoints/{first + 100}")).status_code == 404

    c = await funder.ok("get", f"{base}/checkpoints/{second}/consistency?from={first}")
    proof = [base64.b64decode(p) for p in c["proof"]]
    roots = base64.b64decode(old["root_hash"]), base64.b64decode(latest["root_hash"])
    assert merkle.verify_consistency(first, second, *roots, proof)
    for bad, why in (("", "from"), ("?from=99", "from"), ("?from=3", "from"), ("?from=x", None)):
        r = await funder.get(f"{base}/checkpoints/{second}/consistency{bad}")
        assert r.status_code in (400, 422), (bad, r.text)
        if why:
            assert r.json()["code"] == "validation_error"
            assert r.json()["errors"][0]["field"] == why

    # a member's own exchange, from the member's key; a proposal has two entries
    ann = ev_api.as_key(b.ann_key)
    p = await ann.ok("get", f"{base}/exchanges/{b.confirmed['id']}/proof")
    assert [e["status"] for e in p["entries"]] == ["pending", "recorded"]
    root = base64.b64decode(p["checkpoint"]["root_hash"])
    for e in p["entries"]:
        leaf = merkle.leaf_hash(e["leaf"].encode())
        path = [base64.b64decode(h) for h in e["inclusion_proof"]]
        assert merkle.root_from_inclusion(e["leaf_index"], second, leaf, path) == root
        assert json.loads(e["leaf"])["exchange"] == b.confirmed["id"]
    assert "Ann" not in json.dumps(p)  # ids and amounts only
    # by an older checkpoint; another member's exchange is not found; funders see no exchange
    p1 = await ann.ok("get", f"{base}/exchanges/{b.lift['id']}/proof?size={first}")
    assert p1["checkpoint"]["tree_size"] == first
    cat = ev_api.as_key(await ev_api.key(b.slug, "member", member_id=b.cat["id"]))
    assert (await cat.get(f"{base}/exchanges/{b.lift['id']}/proof")).status_code == 404
    assert (await funder.get(f"{base}/exchanges/{b.lift['id']}/proof")).status_code == 403
    assert (await ann.get(f"{base}/checkpoints/latest")).status_code == 403
    r = await ev_api.get(f"{base}/exchanges/{b.lift['id']}/proof?size=2")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "size"
    # recorded after the last checkpoint: not in one yet
    late = await _created(await ev_api.exchange(b.slug, simple(b.bob, b.ann, 5)))
    r = await ev_api.get(f"{base}/exchanges/{late['id']}/proof")
    assert r.status_code == 409 and r.json()["code"] == "not_checkpointed"


def _outsider_snippet() -> str:
    doc = (ROOT / "docs" / "evidence.md").read_text()
    m = re.search(r"<!-- outsider-check -->\s*```python\n(.*?)```", doc, re.S)
    assert m, "docs/evidence.md lost its outsider's snippet"
    return m.group(1)


async def test_the_outsiders_snippet_in_the_docs_checks_a_members_exchange(
    ev_api: Api, sessions: async_sessionmaker[AsyncSession], ev_settings: Settings
) -> None:
    """Exactly the code of docs/evidence.md, with nothing of this project imported."""
    b = await build_bank(ev_api)
    await seal_and_sign(sessions, ev_settings, b.id, T0)
    ann = ev_api.as_key(b.ann_key)
    proof = await ann.ok("get", f"/v1/timebanks/{b.slug}/exchanges/{b.lift['id']}/proof")
    snippet = _outsider_snippet()
    assert "timebank" not in snippet
    printed: list[str] = []
    scope = {
        "proof": proof,
        "verifier_key": SIGNER.verifier,
        "print": lambda *a: printed.append(" ".join(map(str, a))),
    }
    code = compile(snippet, "docs/evidence.md", "exec")
    exec(code, scope)  # noqa: S102
    assert printed == [f"in the signed ledger: {b.lift['id']} recorded"]
    # a forged checkpoint or a wrong leaf fails the same code
    forged = json.loads(json.dumps(proof))
    forged["entries"][0]["leaf"] = forged["entries"][0]["leaf"].replace(
        '"minutes":60', '"minutes":600'
    )
    with pytest.raises(AssertionError):
        exec(code, {**scope, "proof": forged})  # noqa: S102
    other = note.new_signer("test-bank-2026")
    with pytest.raises(ValueError, match="not signed"):
        exec(code, {**scope, "verifier_key": other.verifier})  # noqa: S102


# --- tampering behind the service's back (PostgreSQL superuser, triggers bypassed) ---------


async def _as_superuser(engine: AsyncEngine, *statements: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for sql in statements:
            await conn.execute(text(sql), params)


@pytest.fixture
async def sealed(
    ev_api: Api, sessions: async_sessionmaker[AsyncSession], ev_settings: Settings
) -> Bank:
    b = await build_bank(ev_api, sessions)
    await seal_and_sign(sessions, ev_settings, b.id, T0)
    await _created(await ev_api.exchange(b.slug, simple(b.bob, b.ann, 25)))
    await seal_and_sign(sessions, ev_settings, b.id, T0 + timedelta(hours=1))
    report = await run_verify(sessions, ev_settings, b.slug)
    assert report.ok, [str(f) for f in report.findings]
    return b


def _named(report: Report, exchange: Any, *words: str) -> bool:
    return any(
        str(f.exchange) == str(exchange) and all(w in f.what for w in words)
        for f in report.findings
    )


@pytest.mark.postgres_only
async def test_minutes_changed_consistently_everywhere_are_named(
    sealed: Bank,
    ev_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    ev_settings: Settings,
) -> None:
    """The lift of 60 becomes 90 in the exchange row, both postings, every later running
    balance of both accounts and both balances: the ledger's own sums all hold."""
    ex = sealed.lift["id"]
    await _as_superuser(
        ev_engine,
        "UPDATE exchanges SET minutes = 90 WHERE id = :ex",
        "UPDATE postings SET balance_after_minutes = balance_after_minutes + 30 * sign(q.m) "
        "FROM (SELECT account_id a, id first, minutes m FROM postings WHERE exchange_id = :ex) q "
        "WHERE postings.account_id = q.a AND postings.id >= q.first",
        "UPDATE postings SET minutes = minutes + 30 * sign(minutes) WHERE exchange_id = :ex",
        "UPDATE accounts SET balance_minutes = balance_minutes + 30, earned_minutes = earned_minutes + 30 "
        "WHERE id = (SELECT account_id FROM postings WHERE exchange_id = :ex AND minutes > 0)",
        "UPDATE accounts SET balance_minutes = balance_minutes - 30, spent_minutes = spent_minutes + 30 "
        "WHERE id = (SELECT account_id FROM postings WHERE exchange_id = :ex AND minutes < 0)",
        "UPDATE activity_months SET given_minutes = given_minutes + 30 "
        "WHERE account_id = (SELECT account_id FROM postings WHERE exchange_id = :ex AND minutes > 0)",
        "UPDATE activity_months SET received_minutes = received_minutes + 30 "
        "WHERE account_id = (SELECT account_id FROM postings WHERE exchange_id = :ex AND minutes < 0)",
        ex=uuid.UUID(ex),
    )
    report = await run_verify(sessions, ev_settings, sealed.slug)
    assert not report.ok
    assert _named(report, ex, "minutes: sealed 60, ledger now 90"), [
        str(f) for f in report.findings
    ]
    assert not [f for f in report.findings if "running balance" in f.what or "account " in f.what]


@pytest.mark.postgres_only
async def test_a_deleted_exchange_and_its_postings_are_named(
    sealed: Bank,
    ev_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    ev_settings: Settings,
) -> None:
    ex = sealed.lift["id"]
    await _as_superuser(
        ev_engine,
        "DELETE FROM postings WHERE exchange_id = :ex",
        "DELETE FROM exchanges WHERE id = :ex",
        ex=uuid.UUID(ex),
    )
    report = await run_verify(sessions, ev_settings, sealed.slug)
    assert _named(report, ex, "in the chain", "not in the ledger"), [
        str(f) for f in report.findings
    ]


@pytest.mark.postgres_only
async def test_two_reordered_entries_are_named(
    sealed: Bank,
    ev_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    ev_settings: Settings,
) -> None:
    tb = sealed.id
    await _as_superuser(
        ev_engine,
        "UPDATE evidence_entries SET seq = 1000 WHERE timebank_id = :tb AND seq = 1",
        "UPDATE evidence_entries SET seq = 1 WHERE timebank_id = :tb AND seq = 2",
        "UPDATE evidence_entries SET seq = 2 WHERE timebank_id = :tb AND seq = 1000",
        tb=tb,
    )
    report = await run_verify(sessions, ev_settings, sealed.slug)
    found = [str(f) for f in report.findings]
    assert _named(report, sealed.lift["id"], "seq: sealed 1, ledger now 2"), found
    assert _named(report, sealed.reversed_["id"], "seq: sealed 2, ledger now 1"), found
    assert any("checkpoint of size" in f.what and "tree head" in f.what for f in report.findings), (
        found
    )


@pytest.mark.postgres_only
async def test_reordered_entries_with_their_hashes_recomputed_fail_the_signed_root(
    sealed: Bank,
    ev_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    ev_settings: Settings,
) -> None:
    """A forger who rewrites every stored hash consistently still cannot sign: the first
    signed checkpoint that disagrees bounds where the change is, and names its exchanges."""
    tb = sealed.id
    async with sessions() as s:
        rows = (
            (
                await s.execute(
                    select(EvidenceEntry)
                    .where(EvidenceEntry.timebank_id == tb)
                    .order_by(EvidenceEntry.seq)
                )
            )
            .scalars()
            .all()
        )
    leaves = [json.loads(r.leaf) for r in rows]
    leaves[0], leaves[1] = leaves[1], leaves[0]
    leaves[0]["seq"], leaves[1]["seq"] = 1, 2
    from timebank.evidence.canonical import encode

    chain, statements = merkle.ZERO, []
    tree = merkle.Frontier()
    for i, leaf in enumerate(leaves, 1):
        data = encode(leaf)
        lh = merkle.leaf_hash(data)
        chain = seal.chain_next(chain, lh)
        for level, idx, h in tree.append(lh):
            statements.append(
                (
                    "UPDATE evidence_nodes SET hash = :h WHERE timebank_id = :tb AND level = :l AND idx = :i",
                    {"h": h, "tb": tb, "l": level, "i": idx},
                )
            )
        statements.append(
            (
                "UPDATE evidence_entries SET leaf = :leaf, chain_hash = :c, exchange_id = :x, status = :st WHERE timebank_id = :tb AND seq = :s",
                {
                    "leaf": data.decode(),
                    "c": chain,
                    "x": uuid.UUID(leaf["exchange"]),
                    "st": leaf["status"],
                    "tb": tb,
                    "s": i,
                },
            )
        )
    async with ev_engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for sql, params in statements:
            await conn.execute(text(sql), params)
    report = await run_verify(sessions, ev_settings, sealed.slug)
    found = [str(f) for f in report.findings]
    assert not any("chain hash" in f or "differs:" in f for f in found), found
    assert any(
        "checkpoint of size 8" in f and sealed.lift["id"] in f and sealed.reversed_["id"] in f
        for f in found
    ), found


@pytest.mark.postgres_only
async def test_a_checkpoints_swapped_root_is_named(
    sealed: Bank,
    ev_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    ev_settings: Settings,
) -> None:
    async with ev_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT tree_size, root_hash FROM evidence_checkpoints WHERE timebank_id = :tb ORDER BY tree_size"
                ),
                {"tb": sealed.id},
            )
        ).all()
    (small, r1), (_big, r2) = rows
    old, new = base64.b64encode(bytes(r1)).decode(), base64.b64encode(bytes(r2)).decode()
    await _as_superuser(
        ev_engine,
        "UPDATE evidence_checkpoints SET root_hash = :r2, note = replace(note, :old, :new) "
        "WHERE timebank_id = :tb AND tree_size = :n",
        r2=bytes(r2),
        old=old,
        new=new,
        tb=sealed.id,
        n=small,
    )
    report = await run_verify(sessions, ev_settings, sealed.slug)
    found = [str(f) for f in report.findings]
    assert any(f"checkpoint of size {small}" in f and "signature" in f for f in found), found


@pytest.mark.postgres_only
def test_the_verify_command_exits_non_zero_and_names_the_exchange(
    sealed: Bank,
    ev_engine: AsyncEngine,
    ev_settings: Settings,
) -> None:
    import os
    import subprocess

    ex = sealed.lift["id"]
    asyncio.run(_as_superuser_sync(ev_settings.database_url, ex))
    env = {
        **os.environ,
        "TIMEBANK_DATABASE_URL": ev_settings.database_url,
        "TIMEBANK_SIGNING_KEY": SIGNER.encode(),
    }
    r = subprocess.run(
        [str(ROOT / ".venv/bin/timebank"), "verify", "--timebank", sealed.slug],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert (
        f"bank {sealed.slug}, exchange {ex}: chain entry 1 differs: minutes: sealed 60, ledger now 61"
        in r.stdout
    )
    assert "chain entries" in r.stdout


async def _as_superuser_sync(url: str, ex: str) -> None:
    engine = create_engine(Settings(database_url=url))
    try:
        await _as_superuser(
            engine, "UPDATE exchanges SET minutes = 61 WHERE id = :ex", ex=uuid.UUID(ex)
        )
    finally:
        await engine.dispose()


# --- the funders' dashboard ----------------------------------------------------------------

app = test_console.app
browser = test_console.browser


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.now = datetime.now(UTC)
    return c


async def test_funders_see_when_the_ledger_behind_the_figures_was_checkpointed(
    browser: AsyncTestClient[Any],
    session_maker: async_sessionmaker[AsyncSession],
    ev_settings: Settings,
    clock: Clock,
) -> None:
    async with session_maker() as session:
        tb, _ = await get_or_create_bank(session, f"cp-{uuid.uuid4().hex[:6]}")
        await generate(session, tb, members=40, exchanges=300, seed=3)
    await make_user(session_maker, "funder@example.org", Role.funder, [str(tb.id)], clock)
    assert (await sign_in(browser, "funder@example.org")).status_code in (302, 303)
    page = await browser.get("/console/dashboard")
    assert page.status_code == 200, page.text
    assert "data-checkpoint" not in page.text  # no checkpoint yet: no line
    at = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    await seal_and_sign(session_maker, ev_settings, tb.id, at)
    page = await browser.get("/console/dashboard")
    assert "Figures from a ledger checkpointed on 30 November 2026." in page.text, page.text
    welsh = await browser.get("/console/dashboard", headers={"Accept-Language": "cy"})
    assert "Ffigurau o gyfriflyfr a seliwyd mewn pwynt gwirio ar 30 Tachwedd 2026." in welsh.text
