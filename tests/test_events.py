"""Events (docs/events.md): every write path leaves its event in the same transaction, in
one increasing order per bank; the feed is scoped to the key, always gives a cursor to
resume from, waits when asked (on an injected clock), and says 410 for a cursor older than
the events kept."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import Api, party, simple
from tests.test_console import Clock as ConsoleClock
from tests.test_console import make_user, sign_in, token
from timebank.access import SYSTEM, Role
from timebank.app import create_app
from timebank.config import Settings
from timebank.db import utcnow
from timebank.events import feed
from timebank.events.models import Event, EventCounter, EventMember, EventType
from timebank.events.service import Change, emit
from timebank.ledger.models import Exchange
from timebank.ledger.proposals import expire_stale
from timebank.lifecycle.register import create_member
from timebank.members.schemas import MemberCreate
from timebank.timebanks.models import TimeBank
from timebank.web.pagination import encode_cursor

Maker = async_sessionmaker[AsyncSession]


class FakeClock:
    """Wall time from a fixed start, a monotonic time, and a sleep that only moves them."""

    def __init__(self) -> None:
        self.start = datetime.now(UTC)
        self.offset = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.offset

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.offset += seconds
        await asyncio.sleep(0)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta).total_seconds()


class World:
    def __init__(self, api: Api, slug: str, tb: dict[str, Any], maker: Maker) -> None:
        self.api, self.slug, self.tb, self.maker = api, slug, tb, maker
        self.people: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, Api] = {}

    def path(self, rest: str = "") -> str:
        return f"/v1/timebanks/{self.slug}{rest}"

    async def events(self, after: int = 0) -> list[tuple[int, str, dict[str, Any], set[str]]]:
        """Every event of the bank after ``after``, from the tables: number, type, data and
        the members it is about."""
        async with self.maker() as s:
            rows = (
                await s.execute(
                    select(Event)
                    .where(Event.timebank_id == uuid.UUID(self.tb["id"]), Event.seq > after)
                    .order_by(Event.seq)
                )
            ).scalars()
            out = []
            for e in rows:
                members = (
                    await s.execute(
                        select(EventMember.member_id).where(EventMember.event_id == e.id)
                    )
                ).scalars()
                out.append((e.seq, e.type, e.data, {str(m) for m in members}))
            return out

    async def last(self) -> int:
        found = await self.events()
        return found[-1][0] if found else 0


@pytest.fixture
async def world(api: Api, session_maker: Maker) -> World:
    tb = await api.timebank(member_min_balance_minutes=-600)
    w = World(api, tb["slug"], tb, session_maker)
    for name in ("ann", "bob", "cai"):
        w.people[name] = await api.member(w.slug, name.title())
    w.people["org"] = await api.organisation(w.slug)
    for name in ("ann", "bob", "cai"):
        w.keys[name] = api.as_key(await api.key(w.slug, "member", member_id=w.people[name]["id"]))
    w.keys["broker"] = api.as_key(await api.key(w.slug, "broker"))
    w.keys["funder"] = api.as_key(await api.key(w.slug, "funder"))
    return w


def ids(*people: dict[str, Any]) -> set[str]:
    return {p["id"] for p in people}


# --- every write path ------------------------------------------------------------------------


async def test_registering_a_member_writes_member_created_and_the_grant_recorded(
    api: Api, session_maker: Maker
) -> None:
    tb = await api.timebank(starting_grant_minutes=120)
    w = World(api, tb["slug"], tb, session_maker)
    may = await api.member(w.slug, "May")
    (created, grant) = await w.events()
    assert created[1:] == ("member.created", {"member_id": may["id"]}, {may["id"]})
    assert grant[1] == "exchange.recorded" and grant[3] == {may["id"]}
    assert grant[2]["status"] == "recorded"
    assert created[0] < grant[0]


async def test_recording_through_the_api_writes_exchange_recorded_about_both_members(
    world: World,
) -> None:
    """On PostgreSQL this is the one-statement path (its event inserted by that statement)."""
    before = await world.last()
    ann, bob = world.people["ann"], world.people["bob"]
    ex = await world.keys["broker"].ok("post", world.path("/exchanges"), simple(ann, bob, 30))
    (event,) = await world.events(before)
    assert event[0] == before + 1
    assert event[1:] == (
        "exchange.recorded",
        {"exchange_id": ex["id"], "status": "recorded"},
        ids(ann, bob),
    )


@pytest.mark.postgres_only
async def test_the_fast_path_writes_its_event_in_its_one_statement(
    world: World, session_maker: Maker
) -> None:
    from tests.test_fast_path import _record

    engine = session_maker.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    before = await world.last()
    ann, org = world.people["ann"], world.people["org"]
    answer = await _record(engine, world.keys["broker"].secret, world.slug, simple(ann, org, 45))
    assert answer is not None and answer.status == 201  # taken on by the fast path
    (event,) = await world.events(before)
    assert event[1] == "exchange.recorded" and event[3] == ids(ann)


async def test_a_group_exchange_and_a_refused_one(world: World) -> None:
    """The in-process path writes the event; a refusal writes none."""
    ann, bob, cai = (world.people[n] for n in ("ann", "bob", "cai"))
    before = await world.last()
    body = {
        "providers": [{"party": party(ann), "minutes": 60}],
        "recipients": [
            {"party": party(bob), "minutes": 30},
            {"party": party(cai), "minutes": 30},
        ],
        "category": "transport",
    }
    ex = await world.keys["broker"].ok("post", world.path("/exchanges"), body)
    refused = await world.keys["broker"].exchange(world.slug, simple(bob, ann, 700))
    assert refused.status_code == 409
    (event,) = await world.events(before)
    assert event[1] == "exchange.recorded" and event[2]["exchange_id"] == ex["id"]
    assert event[3] == ids(ann, bob, cai)


async def test_a_batch_writes_one_event_per_item_recorded(world: World) -> None:
    ann, bob = world.people["ann"], world.people["bob"]
    before = await world.last()
    r = await world.keys["broker"].ok(
        "post",
        world.path("/exchanges/batch"),
        {"exchanges": [simple(ann, bob, 10), simple(bob, ann, 700), simple(bob, ann, 20)]},
        status=200,
    )
    recorded = [x["exchange"]["id"] for x in r["results"] if x["status"] == 201]
    assert len(recorded) == 2
    found = await world.events(before)
    assert [e[2]["exchange_id"] for e in found] == recorded
    assert [e[0] for e in found] == [before + 1, before + 2]


async def test_committing_a_sheet_writes_an_event_per_line_recorded(world: World) -> None:
    before = await world.last()
    sheet = "Date,Giver,Receiver,Hours,Category\n2026-11-28,Ann,Bob,1,transport\n"
    r = await world.api.client.post(
        world.path("/imports"),
        params={"sheet": "week-48"},
        content=sheet.encode(),
        headers=world.api.headers({"Content-Type": "text/csv"}),
    )
    assert r.status_code == 201, r.text
    done = await world.api.post(world.path(f"/imports/{r.json()['id']}/commit"))
    assert done.status_code == 200, done.text
    (event,) = await world.events(before)
    assert event[1] == "exchange.recorded" and event[3] == ids(
        world.people["ann"], world.people["bob"]
    )


async def test_a_proposal_is_proposed_then_confirmed_rejected_or_cancelled(world: World) -> None:
    ann, bob = world.people["ann"], world.people["bob"]
    before = await world.last()
    decided = {}
    for decision in ("confirm", "reject", "cancel"):
        p = await world.keys["ann"].ok("post", world.path("/exchanges"), simple(ann, bob, 15))
        who = world.keys["ann"] if decision == "cancel" else world.keys["bob"]
        body = {"reason": "not this week"} if decision != "confirm" else {}
        await who.ok("post", world.path(f"/exchanges/{p['id']}/{decision}"), body, status=200)
        decided[decision] = p["id"]
    found = await world.events(before)
    assert [(e[1], e[2]["exchange_id"], e[2]["status"]) for e in found] == [
        ("exchange.proposed", decided["confirm"], "pending"),
        ("exchange.confirmed", decided["confirm"], "recorded"),
        ("exchange.proposed", decided["reject"], "pending"),
        ("exchange.rejected", decided["reject"], "rejected"),
        ("exchange.proposed", decided["cancel"], "pending"),
        ("exchange.cancelled", decided["cancel"], "cancelled"),
    ]
    assert all(e[3] == ids(ann, bob) for e in found)


async def test_maintenance_expiry_writes_exchange_expired(world: World) -> None:
    ann, bob = world.people["ann"], world.people["bob"]
    p = await world.keys["ann"].ok("post", world.path("/exchanges"), simple(ann, bob, 15))
    before = await world.last()
    async with world.maker() as s:
        await s.execute(
            update(Exchange)
            .where(Exchange.id == uuid.UUID(p["id"]))
            .values(recorded_at=utcnow() - timedelta(days=60))
        )
        await s.commit()
        assert await expire_stale(s, uuid.UUID(world.tb["id"]), 30) == 1
        await s.commit()
    (event,) = await world.events(before)
    assert event[1:] == (
        "exchange.expired",
        {"exchange_id": p["id"], "status": "expired"},
        ids(ann, bob),
    )


async def test_a_reversal_writes_exchange_reversed_naming_both_exchanges(world: World) -> None:
    ann, bob = world.people["ann"], world.people["bob"]
    ex = await world.keys["broker"].ok("post", world.path("/exchanges"), simple(ann, bob, 30))
    before = await world.last()
    rev = await world.keys["broker"].ok(
        "post", world.path(f"/exchanges/{ex['id']}/reverse"), {"reason": "typed twice"}
    )
    (event,) = await world.events(before)
    assert event[1:] == (
        "exchange.reversed",
        {"exchange_id": ex["id"], "status": "recorded", "reversal_id": rev["id"]},
        ids(ann, bob),
    )


async def test_a_member_updated_suspended_and_erased(world: World) -> None:
    cai = world.people["cai"]
    path = world.path(f"/members/{cai['id']}")
    before = await world.last()
    await world.api.ok("patch", path, {"email": "cai@example.org", "locality": "Irvine"}, 200)
    await world.api.ok("patch", path, {"status": "suspended"}, 200)
    await world.api.ok("patch", path, {"status": "active"}, 200)
    await world.api.ok("post", path + "/erase", status=200)
    await world.api.ok("post", path + "/erase", status=200)  # again: changes nothing
    found = [e[1:] for e in await world.events(before)]
    me = {cai["id"]}
    assert found == [
        ("member.updated", {"member_id": cai["id"], "changed": ["email", "locality"]}, me),
        ("member.suspended", {"member_id": cai["id"], "status": "suspended"}, me),
        ("member.updated", {"member_id": cai["id"], "changed": ["status"], "status": "active"}, me),
        ("member.erased", {"member_id": cai["id"]}, me),
    ]
    assert "Cai" not in repr(found) and "cai@example.org" not in repr(found)


async def test_the_console_writes_the_same_events_through_the_same_services(
    settings: Settings, session_maker: Maker, admin_secret: str
) -> None:
    clock = ConsoleClock()
    app = create_app(settings)
    app.state.clock = clock
    async with AsyncTestClient(app=app, timeout=60) as browser:
        api = Api(browser, admin_secret)
        tb = await api.timebank()
        w = World(api, tb["slug"], tb, session_maker)
        may, sam = await api.member(w.slug, "May Reid"), await api.member(w.slug, "Sam Cole")
        await make_user(session_maker, "b@example.org", Role.broker, [tb["id"]], clock)
        assert (await sign_in(browser, "b@example.org")).status_code == 303
        before = await w.last()
        page = await browser.get(f"/console/{w.slug}/exchanges/new")
        form = {
            "csrf_token": token(page.text),
            "idempotency_key": token(page.text, "idempotency_key"),
            "provider": "May Reid",
            "recipient": "Sam Cole",
            "hours": "1",
            "minutes": "0",
            "category": "transport",
        }
        r = await browser.post(
            f"/console/{w.slug}/exchanges/new", data=form, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        (event,) = await w.events(before)
        assert event[1] == "exchange.recorded" and event[3] == ids(may, sam)


# --- order ---------------------------------------------------------------------------------


@pytest.mark.postgres_only
async def test_numbers_follow_the_commit_order_a_second_writer_waits_for_the_first(
    world: World, session_maker: Maker
) -> None:
    """The counter row is held to the commit: a writer that takes its number while another
    has not committed waits, then gets the next number — never a smaller one committed
    later."""
    tb_id = uuid.UUID(world.tb["id"])
    m = uuid.UUID(world.people["ann"]["id"])
    first = session_maker()
    await emit(first, tb_id, [Change(EventType.member_updated, {"member_id": str(m)}, (m,))])
    (first_pid,) = (await first.execute(text("SELECT pg_backend_pid()"))).one()

    async def second() -> None:
        async with session_maker() as s:
            await emit(s, tb_id, [Change(EventType.member_updated, {"member_id": str(m)}, (m,))])
            await s.commit()

    task = asyncio.create_task(second())
    async with session_maker() as watcher:
        for _ in range(500):  # wait for the state: the second blocked by the first's lock
            blocked = (
                await watcher.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE :pid = ANY(pg_blocking_pids(pid))"
                    ),
                    {"pid": first_pid},
                )
            ).scalar_one()
            await watcher.rollback()
            if blocked:
                break
            await asyncio.sleep(0.01)
        assert blocked == 1
    assert not task.done()
    await first.commit()
    await first.close()
    await task
    last_two = [e[0] for e in (await world.events())[-2:]]
    assert last_two[1] == last_two[0] + 1


# --- the feed ------------------------------------------------------------------------------


async def test_a_member_key_reads_only_its_own_members_events_and_a_funder_none(
    world: World,
) -> None:
    ann, bob, cai = (world.people[n] for n in ("ann", "bob", "cai"))
    broker = world.keys["broker"]
    await broker.ok("post", world.path("/exchanges"), simple(ann, bob, 30))
    await broker.ok("post", world.path("/exchanges"), simple(bob, cai, 40))
    await world.api.ok("patch", world.path(f"/members/{bob['id']}"), {"phone": "0123"}, 200)
    everything = await world.api.ok("get", world.path("/events"))
    assert {e["type"] for e in everything["items"]} >= {"member.created", "exchange.recorded"}
    mine = await world.keys["ann"].ok("get", world.path("/events"))
    assert [e["type"] for e in mine["items"]] == ["member.created", "exchange.recorded"]
    assert mine["items"][0]["data"] == {"member_id": ann["id"]}
    assert all(e in everything["items"] for e in mine["items"])
    for item in mine["items"]:
        assert bob["id"] not in str(item["data"]) and cai["id"] not in str(item["data"])
        assert "balance" not in str(item["data"])
    cai_feed = await world.keys["cai"].ok("get", world.path("/events"))
    assert [e["type"] for e in cai_feed["items"]] == ["member.created", "exchange.recorded"]
    r = await world.keys["funder"].get(world.path("/events"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # the member's cursor moved past the others' events too
    assert mine["cursor"] == everything["cursor"]


async def test_the_cursor_is_always_there_and_reading_resumes_from_it(world: World) -> None:
    first = await world.api.ok("get", world.path("/events?limit=2"))
    assert len(first["items"]) == 2 and first["cursor"]
    rest = await world.api.ok("get", world.path(f"/events?after={first['cursor']}&limit=500"))
    everything = await world.api.ok("get", world.path("/events?limit=500"))
    assert first["items"] + rest["items"] == everything["items"]
    assert rest["cursor"] == everything["cursor"]
    # nothing new: an empty page, and still a cursor, the same
    empty = await world.api.ok("get", world.path(f"/events?after={rest['cursor']}"))
    assert empty == {"items": [], "cursor": rest["cursor"]}
    ann, bob = world.people["ann"], world.people["bob"]
    ex = await world.keys["broker"].ok("post", world.path("/exchanges"), simple(ann, bob, 5))
    later = await world.api.ok("get", world.path(f"/events?after={empty['cursor']}"))
    assert [e["data"].get("exchange_id") for e in later["items"]] == [ex["id"]]
    assert set(later["items"][0]) == {"id", "type", "created_at", "data"}
    # a bank with no events yet still gives a cursor
    tb = await world.api.timebank()
    assert (await world.api.ok("get", f"/v1/timebanks/{tb['slug']}/events"))["cursor"]


async def test_a_cursor_it_never_gave_is_refused_in_words(world: World) -> None:
    for bad in ("nonsense!", encode_cursor(10**9)):
        r = await world.api.get(world.path(f"/events?after={bad}"))
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] in ("after", "cursor")


async def test_a_cursor_older_than_the_events_kept_gets_410(world: World) -> None:
    old = await world.api.ok("get", world.path("/events?limit=1"))
    async with world.maker() as s:
        gone = await feed.prune(s, utcnow() + feed.RETENTION + timedelta(days=1))
        await s.commit()
    assert gone >= 1
    r = await world.api.get(world.path(f"/events?after={old['cursor']}"))
    assert r.status_code == 410, r.text
    body = r.json()
    assert body["code"] == "cursor_expired" and "90 days" in body["detail"]
    fresh = await world.api.ok("get", world.path("/events"))
    assert fresh["items"] == [] and fresh["cursor"]
    again = await world.api.ok("get", world.path(f"/events?after={fresh['cursor']}"))
    assert again["items"] == []


@pytest.fixture
async def clocked(settings: Settings, admin_secret: str) -> Any:
    app = create_app(settings.model_copy(update={"events_poll_interval_seconds": 0.05}))
    clock = FakeClock()
    app.state.events_clock = clock
    async with AsyncTestClient(app=app, timeout=60) as c:
        yield Api(c, admin_secret), clock, app


async def test_a_long_poll_with_nothing_new_answers_at_its_deadline_without_sleeping(
    clocked: tuple[Api, FakeClock, Litestar],
) -> None:
    api, clock, _ = clocked
    tb = await api.timebank()
    now = await api.ok("get", f"/v1/timebanks/{tb['slug']}/events")
    r = await api.ok("get", f"/v1/timebanks/{tb['slug']}/events?after={now['cursor']}&wait=30")
    assert r == {"items": [], "cursor": now["cursor"]}
    assert sum(clock.slept) == pytest.approx(30) and clock.monotonic() == pytest.approx(30)
    too_long = await api.get(f"/v1/timebanks/{tb['slug']}/events?wait=31")
    assert too_long.status_code == 422


async def test_a_long_poll_answers_as_soon_as_an_event_is_committed(
    clocked: tuple[Api, FakeClock, Litestar],
) -> None:
    """While the poll waits, another session registers a member and commits (on the app's
    own loop: the test client sends one request at a time); the poll answers with it."""
    api, clock, app = clocked
    tb = await api.timebank()
    slug = tb["slug"]
    now = await api.ok("get", f"/v1/timebanks/{slug}/events")
    real_sleep = clock.sleep
    made: list[Any] = []

    async def sleep_while_someone_writes(seconds: float) -> None:
        await real_sleep(seconds / 1000)  # the deadline stays far away
        if not made:
            async with app.state.sessions() as s:
                bank = await s.get(TimeBank, uuid.UUID(tb["id"]))
                made.append(await create_member(s, SYSTEM, bank, MemberCreate(display_name="May")))

    clock.sleep = sleep_while_someone_writes  # type: ignore[method-assign]
    r = await api.ok("get", f"/v1/timebanks/{slug}/events?after={now['cursor']}&wait=30")
    assert [(e["type"], e["data"]) for e in r["items"]] == [
        ("member.created", {"member_id": str(made[0].id)})
    ]
    assert clock.monotonic() < 1  # answered at once, not at the deadline


async def test_pruning_keeps_recent_events_and_records_how_far_it_went(world: World) -> None:
    async with world.maker() as s:
        assert await feed.prune(s, utcnow()) == 0
        await s.commit()
        counter = await s.get(EventCounter, uuid.UUID(world.tb["id"]))
        assert counter is not None and counter.pruned_through == 0
