"""Concurrency across server processes (SPEC §2 limits and locking, §3 idempotency, §5
scale path): one PostgreSQL shared by two `timebank serve` processes (as two machines
would share it; the first has two workers), many clients at once.

A storm alternates its requests between the two servers, so conflicting requests (the two
reversals of one exchange, the duplicates of one Idempotency-Key...) really run in
different processes; every request opens its own connection and carries an X-Request-ID,
and the JSON access logs (request id, pid) show which process served it. After each storm
the ledger invariants are checked with SQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import party, simple
from tests.servers import (
    Bank,
    SharedServer,
    check_ledger,
    new_bank,
    no_server_errors,
    ok,
    pg_server,
    request_id,
)

__all__ = ["pg_server"]  # the module's two servers on one PostgreSQL database (a fixture)

pytestmark = pytest.mark.slow


class Storm:
    """Requests sent all at once, alternating between the two servers, each with its own
    request id (so the access logs tell which process served it)."""

    def __init__(self, shared: SharedServer, clients: list[httpx.AsyncClient]) -> None:
        self.shared = shared
        self.clients = clients
        self.request_ids: list[str] = []
        self.retries_before = self._write_retries()

    async def post(
        self, path: str, json: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        rid = request_id()
        c = self.clients[len(self.request_ids) % len(self.clients)]
        self.request_ids.append(rid)
        return await c.post(path, json=json, headers={"X-Request-ID": rid, **(headers or {})})

    def workers(self) -> dict[str, int]:
        """The pid of the process that served each request of the storm."""
        served = self.shared.worker_pids_by_request_id()
        missing = [rid for rid in self.request_ids if rid not in served]
        assert missing == [], f"{len(missing)} requests are not in the access logs"
        return {rid: served[rid] for rid in self.request_ids}

    def assert_several_processes_served(self) -> None:
        per_process = Counter(self.workers().values())
        assert len(per_process) >= 2, f"requests per process: {per_process}"

    def _write_retries(self) -> int:
        """Writes retried after a deadlock or serialization failure, so far."""
        return sum(
            1
            for server in self.shared.servers
            for line in server.log_lines()
            if str(line.get("msg", "")).startswith("retrying write")
        )

    def assert_no_deadlock(self) -> None:
        """Not only none surfaced to a client: none happened (accounts locked in id order)."""
        assert self._write_retries() == self.retries_before


@asynccontextmanager
async def _storm(shared: SharedServer) -> AsyncIterator[tuple[httpx.AsyncClient, Storm]]:
    """A client of the first server (for set-up and checks) and a storm over both."""
    async with shared.client(0) as first, shared.client(1) as second:
        yield first, Storm(shared, [first, second])


def _statuses(responses: list[httpx.Response]) -> Counter[tuple[int, str]]:
    return Counter(
        (r.status_code, r.json()["code"] if r.status_code >= 400 else "") for r in responses
    )


async def _balance(c: httpx.AsyncClient, bank: Bank, entity: dict[str, Any]) -> int:
    kind = "members" if "display_name" in entity else "organisations"
    body = await ok(c, "GET", f"/v1/timebanks/{bank.slug}/{kind}/{entity['id']}/balance")
    return int(body["balance_minutes"])


# --- hot accounts: the limit holds exactly ----------------------------------------------------


async def test_storm_on_a_member_near_its_limit_and_a_bounded_organisation_records_exactly_what_fits(
    pg_server: SharedServer,
) -> None:
    async with _storm(pg_server) as (c, storm):
        bank = await new_bank(c, members=5, organisation_min_balance_minutes=-1000)
        debtor, *helpers = bank.members
        # the debtor starts near the member minimum (-600): 300 minutes of room
        await ok(c, "POST", bank.exchanges, simple(helpers[0], debtor, 300))

        bodies = []
        for i in range(50):
            # a helper volunteers 25 minutes for the organisation: the organisation is debited
            bodies.append(("org", simple(helpers[i % 4], bank.org, 25, category="admin-it")))
            if i < 30:  # a helper does 30 minutes for the debtor: the debtor is debited
                bodies.append(("debtor", simple(helpers[(i + 1) % 4], debtor, 30)))
        responses = await asyncio.gather(*(storm.post(bank.exchanges, b) for _, b in bodies))

        no_server_errors(responses)
        by_target: dict[str, Counter[tuple[int, str]]] = defaultdict(Counter)
        for (target, _), r in zip(bodies, responses, strict=True):
            by_target[target].update(_statuses([r]))
        refused = (409, "balance_limit_exceeded")
        assert by_target["debtor"] == {(201, ""): 10, refused: 20}, by_target["debtor"]
        assert by_target["org"] == {(201, ""): 40, refused: 10}, by_target["org"]
        assert await _balance(c, bank, debtor) == -600
        assert await _balance(c, bank, bank.org) == -1000
        credited = [await _balance(c, bank, h) for h in helpers]
        assert sum(credited) == 600 + 1000
        storm.assert_several_processes_served()
    await check_ledger(pg_server.db_url)


# --- opposite exchanges between the same accounts (deadlock bait) ----------------------------


async def test_opposite_exchanges_between_the_same_accounts_all_succeed_and_never_deadlock(
    pg_server: SharedServer,
) -> None:
    async with _storm(pg_server) as (c, storm):
        bank = await new_bank(c, members=3, member_min_balance_minutes=-100_000)
        ann, bob, cat = bank.members
        bodies: list[dict[str, Any]] = []
        for i in range(12):
            bodies.append(simple(ann, bob, 30 + i))
            bodies.append(simple(bob, ann, 20 + i))
            bodies.append(  # group legs over the same accounts, in the other order
                {
                    "providers": [
                        {"party": party(cat), "minutes": 40},
                    ],
                    "recipients": [
                        {"party": party(bob), "minutes": 30},
                        {"party": party(ann), "minutes": 10},
                    ],
                    "category": "transport",
                }
            )
            bodies.append(simple(cat, bank.org, 15, category="admin-it"))
            bodies.append(simple(bank.org, ann, 15, category="admin-it"))
        responses = await asyncio.gather(*(storm.post(bank.exchanges, b) for b in bodies))

        no_server_errors(responses)
        assert _statuses(responses) == {(201, ""): len(bodies)}, [r.text for r in responses]
        expected: dict[str, int] = defaultdict(int)
        for r in responses:
            for posting in r.json()["postings"]:
                expected[posting["account_id"]] += posting["minutes"]
        parties = [ann, bob, cat, bank.org]
        balances = {p["account_id"]: await _balance(c, bank, p) for p in parties}
        assert balances == dict(expected)
        # and independently of the responses (providers credited, recipients debited),
        # per round: Ann +(30+i) -(20+i) -10 -15, Bob -(30+i) +(20+i) -30, Cat +40 +15
        assert balances[ann["account_id"]] == 12 * (10 - 10 - 15)
        assert balances[bob["account_id"]] == 12 * (-10 - 30)
        assert balances[cat["account_id"]] == 12 * (40 + 15)
        assert balances[bank.org["account_id"]] == 0
        storm.assert_several_processes_served()
        storm.assert_no_deadlock()
    await check_ledger(pg_server.db_url)


# --- every exchange reversed twice at once ----------------------------------------------------


async def test_every_exchange_reversed_twice_at_once_is_reversed_exactly_once(
    pg_server: SharedServer,
) -> None:
    async with _storm(pg_server) as (c, storm):
        bank = await new_bank(c, members=4)
        people = bank.members
        originals = await asyncio.gather(
            *(
                storm.post(bank.exchanges, simple(people[i % 4], people[(i + 1) % 4], 10 + i))
                for i in range(20)
            )
        )
        assert _statuses(originals) == {(201, ""): 20}, [r.text for r in originals]
        ids = [r.json()["id"] for r in originals]

        targets = [ex_id for ex_id in ids for _ in range(2)]
        responses = await asyncio.gather(
            *(
                storm.post(f"{bank.exchanges}/{ex_id}/reverse", {"reason": "entered twice"})
                for ex_id in targets
            )
        )

        no_server_errors(responses)
        outcomes: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for ex_id, r in zip(targets, responses, strict=True):
            outcomes[ex_id] += list(_statuses([r]))
        for ex_id in ids:
            assert sorted(outcomes[ex_id]) == [(201, ""), (409, "already_reversed")], outcomes
        reversals = {
            r.json()["reverses"]: r.json()["id"] for r in responses if r.status_code == 201
        }
        assert set(reversals) == set(ids)
        for ex_id in ids[:5]:
            shown = await ok(c, "GET", f"{bank.exchanges}/{ex_id}")
            assert shown["reversed_by"] == reversals[ex_id]
        assert [await _balance(c, bank, p) for p in people] == [0, 0, 0, 0]
        listed = await ok(c, "GET", f"{bank.exchanges}?kind=reversal&limit=500")
        assert len(listed["items"]) == 20
        storm.assert_several_processes_served()
    await check_ledger(pg_server.db_url)


# --- idempotent duplicates spread over the workers --------------------------------------------


async def test_idempotent_duplicates_spread_over_workers_have_exactly_one_effect_per_key(
    pg_server: SharedServer,
) -> None:
    async with _storm(pg_server) as (c, storm):
        bank = await new_bank(c, members=2)
        ann, bob = bank.members
        keys = [f"paper-sheet-12/line-{i}" for i in range(10)]
        # five of each in a row: they alternate between the servers
        sends = [(key, simple(ann, bob, 5 + i)) for i, key in enumerate(keys) for _ in range(5)]
        responses = await asyncio.gather(
            *(storm.post(bank.exchanges, body, {"Idempotency-Key": k}) for k, body in sends)
        )

        no_server_errors(responses)
        served_by = storm.workers()
        per_key: dict[str, list[httpx.Response]] = defaultdict(list)
        workers_per_key: dict[str, set[int]] = defaultdict(set)
        for (key, _), r, rid in zip(sends, responses, storm.request_ids, strict=True):
            per_key[key].append(r)
            workers_per_key[key].add(served_by[rid])
        for i, key in enumerate(keys):
            created = [r for r in per_key[key] if r.status_code == 201]
            originals = [r for r in created if "Idempotent-Replayed" not in r.headers]
            assert len(originals) == 1, (key, [(r.status_code, r.text) for r in per_key[key]])
            assert originals[0].json()["minutes"] == 5 + i
            for r in created:
                assert r.content == originals[0].content
                if r is not originals[0]:
                    assert r.headers["Idempotent-Replayed"] == "true"
            for r in per_key[key]:
                if r.status_code != 201:
                    assert (r.status_code, r.json()["code"]) == (409, "idempotency_in_flight")
        # the duplicates of every key really met in different processes
        assert all(len(w) >= 2 for w in workers_per_key.values()), workers_per_key

        # afterwards every key replays its one result, whichever worker answers
        replays = await asyncio.gather(
            *(storm.post(bank.exchanges, body, {"Idempotency-Key": k}) for k, body in sends)
        )
        assert _statuses(replays) == {(201, ""): len(sends)}
        listed = await ok(c, "GET", f"{bank.exchanges}?limit=500")
        assert len(listed["items"]) == len(keys)
        assert await _balance(c, bank, bob) == -sum(5 + i for i in range(len(keys)))
        storm.assert_several_processes_served()
    await check_ledger(pg_server.db_url)


# --- atomic batches racing for the room on one account ----------------------------------------


async def test_atomic_batches_racing_for_one_member_limit_record_whole_batches_only(
    pg_server: SharedServer,
) -> None:
    async with _storm(pg_server) as (c, storm):
        bank = await new_bank(c, members=5)  # member minimum -600
        debtor, *helpers = bank.members
        batches = [
            {
                "atomic": True,
                "exchanges": [simple(helpers[(b + i) % 4], debtor, 60) for i in range(4)],
            }
            for b in range(6)
        ]
        responses = await asyncio.gather(
            *(storm.post(f"{bank.exchanges}/batch", body) for body in batches)
        )

        no_server_errors(responses)
        assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
        shapes = Counter(tuple(item["status"] for item in r.json()["results"]) for r in responses)
        # two whole batches fit in the 600 minutes of room (-480); any later one gets to
        # -600 with its first two items, is refused at the third, and records nothing
        assert shapes == {(201, 201, 201, 201): 2, (424, 424, 409, 409): 4}, shapes
        for r in responses:
            for item in r.json()["results"]:
                if item["status"] == 409:
                    assert item["error"]["code"] == "balance_limit_exceeded"
                if item["status"] == 424:
                    assert item["error"]["code"] == "batch_aborted"
        assert await _balance(c, bank, debtor) == -480
        listed = await ok(c, "GET", f"{bank.exchanges}?limit=500")
        assert len(listed["items"]) == 8
        storm.assert_several_processes_served()
    await check_ledger(pg_server.db_url)


# --- decisions on a proposal raced from both workers -------------------------------------------


async def test_confirm_reject_and_cancel_of_one_proposal_at_once_decide_it_exactly_once(
    pg_server: SharedServer,
) -> None:
    async with _storm(pg_server) as (c, storm):
        bank = await new_bank(c, members=2)
        ann, bob = bank.members
        keys = {}
        for m in (ann, bob):
            created = await ok(
                c,
                "POST",
                f"/v1/timebanks/{bank.slug}/api-keys",
                {"role": "member", "member_id": m["id"]},
            )
            keys[m["id"]] = {"Authorization": f"Bearer {created['secret']}"}
        proposals = []
        for i in range(10):  # Ann's app proposes: Bob helped her for 10+i minutes
            r = await c.post(bank.exchanges, json=simple(bob, ann, 10 + i), headers=keys[ann["id"]])
            assert r.status_code == 201 and r.json()["status"] == "pending", r.text
            proposals.append(r.json()["id"])

        moves = []  # per proposal: Bob confirms, the admin rejects, Ann cancels
        for ex_id in proposals:
            moves += [
                (ex_id, "confirm", keys[bob["id"]]),
                (ex_id, "reject", {}),
                (ex_id, "cancel", keys[ann["id"]]),
            ]
        responses = await asyncio.gather(
            *(storm.post(f"{bank.exchanges}/{ex_id}/{how}", {}, who) for ex_id, how, who in moves)
        )

        no_server_errors(responses)
        winners: dict[str, str] = {}
        for (ex_id, how, _), r in zip(moves, responses, strict=True):
            if r.status_code == 200:
                assert ex_id not in winners, (ex_id, winners.get(ex_id), how)
                winners[ex_id] = how
            else:
                assert (r.status_code, r.json()["code"]) == (409, "not_pending"), r.text
        assert set(winners) == set(proposals)
        final = {"confirm": "recorded", "reject": "rejected", "cancel": "cancelled"}
        confirmed = 0
        for i, ex_id in enumerate(proposals):
            shown = await ok(c, "GET", f"{bank.exchanges}/{ex_id}")
            assert shown["status"] == final[winners[ex_id]], (shown, winners[ex_id])
            confirmed += (10 + i) if winners[ex_id] == "confirm" else 0
        assert await _balance(c, bank, bob) == confirmed
        assert await _balance(c, bank, ann) == -confirmed
        storm.assert_several_processes_served()
    await check_ledger(pg_server.db_url)
