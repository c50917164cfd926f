"""Published figures (SPEC §3.7 "Disclosure control", §7.3, §7.4): the cell-key method's
table and its promises (unit tests, no database), then the service: funder keys get
published figures, the same cell publishes the same value in every report and format,
small cells never show their true value, large cells stay within the documented bound,
rows that can appear always appear, and a row is withheld by its population only.

Published figures count what was recorded by the start of the UTC day (``as_of`` rounded
down); these tests record everything "today", so they read the reports with a clock two
days ahead (``reports_clock``).
"""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from tests.test_reports import QUARTER, rows_by, worked_community
from timebank.ledger.models import Exchange
from timebank.members.models import Member
from timebank.organisations.models import Organisation
from timebank.reports import cellkey, periods

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def reports_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The reports' clock two days ahead, so what the test records counts as of a day."""
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(periods, "utcnow", lambda: later)
    return later


# --- the table (no database) --------------------------------------------------------------


def _column_widths(n: int) -> dict[int, int]:
    """d → how many of the 2³² cell keys give it, for a true count n."""
    out, low = {}, 0
    for bound, d in cellkey.TABLE[min(n, cellkey.SMALL)]:
        out[d] = bound - low
        low = bound
    return out


@pytest.mark.parametrize("n", range(1, 30))
def test_the_count_table_keeps_its_promises(n: int) -> None:
    widths = _column_widths(n)
    assert sum(widths.values()) == cellkey.MODULUS
    assert all(abs(d) <= cellkey.MAX_COUNT_CHANGE for d in widths)
    assert all(n + d >= 1 for d in widths), "a positive count never publishes 0 or less"
    if n < cellkey.SMALL:
        assert 0 not in widths, "a small count never publishes its true value"
    mean = sum(d * w for d, w in widths.items()) / cellkey.MODULUS
    if n >= 2:
        assert abs(mean) < 1e-6, "the perturbation has mean zero"
    keys = random.Random(n).sample(range(cellkey.MODULUS), 2000)
    assert {cellkey.count_change(n, k) for k in keys} <= set(widths)


def test_zero_stays_zero_and_the_same_cell_key_always_gives_the_same_value() -> None:
    rng = random.Random(7)
    for _ in range(200):
        key = rng.getrandbits(32)
        assert cellkey.publish_count(0, key) == 0
        assert cellkey.publish_minutes(0, key) == 0
        n = rng.randint(1, 500)
        assert cellkey.publish_count(n, key) == cellkey.publish_count(n, key)
    assert cellkey.cell_key([2**32 - 1, 5]) == 4


def test_minutes_are_spread_over_a_window_with_a_floor_and_large_cells_stay_within_5_per_cent() -> (
    None
):
    rng = random.Random(11)
    for _ in range(3000):
        total = rng.choice([rng.randint(1, 400), rng.randint(1, 20_000)])
        key = rng.getrandbits(32)
        published = cellkey.publish_minutes(total, key)
        assert published == cellkey.publish_minutes(total, key), "the same cell, the same value"
        assert published != total, "never the true minutes"
        low, high = cellkey.minutes_window(total)
        assert 1 <= low <= published <= high and high - low == 2 * max(
            cellkey.MINUTES_FLOOR, int(total * cellkey.MINUTES_SHARE)
        )
        if total >= cellkey.MINUTES_FLOOR / cellkey.MINUTES_SHARE:
            assert abs(published - total) <= 0.05 * total, "a large cell within 5 %"
        else:
            assert abs(published - total) <= 2 * cellkey.MINUTES_FLOOR


def test_minutes_noise_is_uniform_over_the_window() -> None:
    """Every minute of the window but the true one is equally likely, for every total: the
    same width whatever the total, so no candidate is favoured."""
    rng = random.Random(4)
    for total in (60, 240, 1000):
        low, high = cellkey.minutes_window(total)
        seen = defaultdict(int)
        for _ in range(40_000):
            seen[cellkey.publish_minutes(total, rng.getrandbits(32))] += 1
        assert set(seen) == set(range(low, high + 1)) - {total}
        expected = 40_000 / (high - low)
        assert max(seen.values()) < 1.6 * expected and min(seen.values()) > 0.5 * expected


def test_a_cell_over_many_records_gets_keys_spread_over_the_whole_table() -> None:
    rng = random.Random(3)
    keys = [rng.getrandbits(32) for _ in range(4000)]
    changes = [
        cellkey.count_change(40, cellkey.cell_key(keys[i : i + 40])) for i in range(0, 4000, 40)
    ]
    assert len(set(changes)) >= 7  # the differences of neighbouring cells are noise


# --- the service ----------------------------------------------------------------------------


def figures_of(body: dict[str, Any]) -> dict[Any, Any]:
    """Every figure of a JSON report, without the times it was made."""
    skip = {"generated_at"}
    out: dict[Any, Any] = {k: v for k, v in body.items() if k not in skip and k != "rows"}
    for i, row in enumerate(body["rows"]):
        for k, v in row.items():
            out[(i, k)] = v
    return out


async def test_a_funder_gets_published_figures_the_same_in_every_report_and_format(
    api: Api, reports_clock: datetime
) -> None:
    w = await worked_community(api)
    slug = w["slug"]
    funder = api.as_key(await api.key(slug, "funder"))

    async def get(who: Api, name: str, **params: Any) -> dict[str, Any]:
        r = await who.get(f"/v1/timebanks/{slug}/reports/{name}", params={**QUARTER, **params})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    summary = await get(funder, "summary")
    assert (summary["perturbed"], summary["method"]) == (True, "cellkey-2")
    assert figures_of(await get(funder, "summary")) == figures_of(summary), "asked twice"
    staff = await get(api, "summary", figures="published")
    assert figures_of(staff) == figures_of(summary), "staff's published = the funder's"
    exact = await get(api, "summary")
    assert exact["perturbed"] is False and exact["exchanges"] == 7
    r = await funder.get("/v1/reports/summary", params={**QUARTER, "timebank": [slug]})
    assert figures_of(r.json()) == figures_of(summary), (
        "the same cells through the cross-bank route"
    )

    # the same cell in other reports: all service exchanges, all participating members
    for name in ("exchange-types", "categories", "social-value"):
        other = await get(funder, name)
        assert (other["exchanges"], other["minutes"]) == (summary["exchanges"], summary["minutes"])
    for name in ("reciprocity", "localities"):
        other = await get(funder, name)
        assert other["participating_members"] == summary["participating_members"]
    timeseries = await get(funder, "timeseries", interval="quarter")
    (quarter,) = timeseries["rows"]
    assert (quarter["exchanges"], quarter["minutes"]) == (summary["exchanges"], summary["minutes"])
    assert quarter["cumulative_minutes"] == summary["minutes"]
    monthly = await get(funder, "timeseries", interval="month")
    running = [r["cumulative_minutes"] for r in monthly["rows"]]
    assert running[-1] == monthly["minutes"] == summary["minutes"], "ends at the total"
    assert running == sorted(running), "a running total never goes down"

    # small cells never show their true value (7 exchanges, 675 minutes, 6 people)
    assert summary["exchanges"] != 7 and summary["exchanges"] >= 1
    assert summary["minutes"] != 675 and summary["participating_members"] != 6

    # CSV and XLSX carry the same published figures, and say so
    r = await funder.get(
        f"/v1/timebanks/{slug}/reports/categories", params={**QUARTER, "format": "csv"}
    )
    lines = list(csv.DictReader(io.StringIO(r.text)))
    assert {(x["perturbed"], x["method"]) for x in lines} == {("true", "cellkey-2")}
    categories = await get(funder, "categories")
    by_slug = rows_by(categories, "category")
    for x in lines:
        if x["category"]:
            value = by_slug[x["category"]][x["figure"]]
            assert x["value"] == ("" if value is None else str(value)), x
    r = await funder.get(
        f"/v1/timebanks/{slug}/reports/categories", params={**QUARTER, "format": "xlsx"}
    )
    assert r.headers["content-type"].startswith(XLSX)
    book = load_workbook(io.BytesIO(r.content))
    report = {row[0]: row[1] for row in book["Report"].iter_rows(values_only=True) if row[0]}
    assert report["perturbed"] is True and report["method"] == "cellkey-2"
    assert "Published figures" in report["note"]


async def test_rows_always_appear_and_are_withheld_by_population_only(
    api: Api, reports_clock: datetime
) -> None:
    """Six registered members in Irvine who never trade, one in Largs who does: Irvine's row
    publishes an exact zero (its population reaches the threshold of 5), Largs' row is
    withheld whether or not she trades, and every category, kind and organisation appears."""
    tb = await api.timebank(suppression_threshold=5, member_min_balance_minutes=None)
    slug = tb["slug"]
    for i in range(6):
        await api.member(slug, f"I{i}", locality="Irvine", joined_on="2026-01-05")
    lone = await api.member(slug, "Lone", locality="Largs", joined_on="2026-01-05")
    await api.organisation(slug, "Quiet Trust")
    busy = await api.organisation(slug, "Busy Hall")
    r = await api.exchange(slug, simple(lone, busy, 90, occurred_on="2026-02-03"))
    assert r.status_code == 201, r.text
    funder = api.as_key(await api.key(slug, "funder"))

    async def get(name: str, **params: Any) -> dict[str, Any]:
        r = await funder.get(f"/v1/timebanks/{slug}/reports/{name}", params={**QUARTER, **params})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    rows = rows_by(await get("localities"), "locality")
    assert set(rows) == {"Irvine", "Largs", "not_stated"}
    assert rows["Irvine"]["suppressed"] is False
    assert rows["Irvine"]["participating_members"] == 0 and rows["Irvine"]["minutes_given"] == 0
    assert rows["Largs"]["suppressed"] is True and rows["Largs"]["participating_members"] is None
    assert rows["not_stated"]["suppressed"] is True
    # the same shape in a month when nobody traded
    march = rows_by(
        await get("localities", **{"from": "2026-03-01", "to": "2026-04-01"}), "locality"
    )
    assert {k: v["suppressed"] for k, v in march.items()} == {
        k: v["suppressed"] for k, v in rows.items()
    }
    orgs = rows_by(await get("organisations"), "organisation")
    assert set(orgs) == {"Quiet Trust", "Busy Hall"}
    assert orgs["Quiet Trust"]["exchanges"] == 0
    assert orgs["Busy Hall"]["exchanges"] not in (None, 1)  # one exchange, never shown as 1
    assert len((await get("categories"))["rows"]) == 14
    assert [x["kind"] for x in (await get("exchange-types"))["rows"]] == [
        "p2p",
        "p2o",
        "o2p",
        "o2o",
    ]
    cohorts = (await get("retention"))["rows"]
    assert [c["cohort"] for c in cohorts] == ["2026-01", "2026-02", "2026-03"]
    assert cohorts[0]["suppressed"] is False  # seven joined in January
    assert cohorts[1]["suppressed"] is True and cohorts[1]["members"] is None  # nobody
    assert len((await get("demographics", dimension="gender"))["rows"]) == 6


async def test_large_cells_stay_within_the_documented_bound(
    api: Api, reports_clock: datetime
) -> None:
    tb = await api.timebank(member_min_balance_minutes=None)
    slug = tb["slug"]
    people = [await api.member(slug, f"P{i}", joined_on="2026-01-02") for i in range(60)]
    rng = random.Random(5)
    items, true_minutes = [], 0
    for i in range(400):
        a, b = rng.sample(range(60), 2)
        minutes = rng.choice([30, 60, 90, 120, 180])
        true_minutes += minutes
        day = f"2026-0{1 + i % 3}-{1 + i % 28:02d}"
        items.append(simple(people[a], people[b], minutes, occurred_on=day))
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/batch", json={"exchanges": items, "atomic": True}
    )
    assert r.status_code == 200, r.text
    funder = api.as_key(await api.key(slug, "funder"))
    body = (await funder.get(f"/v1/timebanks/{slug}/reports/summary", params=QUARTER)).json()
    assert 0 < abs(body["minutes"] - true_minutes) <= 0.05 * true_minutes
    assert true_minutes >= cellkey.MINUTES_FLOOR / cellkey.MINUTES_SHARE, "a large cell"
    assert abs(body["exchanges"] - 400) <= cellkey.MAX_COUNT_CHANGE
    assert abs(body["participating_members"] - 60) <= cellkey.MAX_COUNT_CHANGE
    assert abs(body["registered_members"] - 60) <= cellkey.MAX_COUNT_CHANGE


async def test_every_record_gets_a_random_key_that_no_response_shows(
    api: Api, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    """Members, organisations and exchanges get a record key on every insert path: the ORM,
    a batch (COPY on PostgreSQL from 50 rows) and the two-statement simple form (PostgreSQL's
    ``ledger/fast.py``); no response carries it."""
    tb = await api.timebank(member_min_balance_minutes=None)
    slug = tb["slug"]
    people = [await api.member(slug, f"K{i}") for i in range(6)]
    org = await api.organisation(slug, "Keyed Trust")
    one = await api.exchange(slug, simple(people[0], people[1], 30, occurred_on="2026-02-01"))
    assert one.status_code == 201, one.text
    items = [
        simple(people[i % 6], people[(i + 1) % 6], 30 + i, occurred_on="2026-02-02")
        for i in range(60)
    ]
    r = await api.post(f"/v1/timebanks/{slug}/exchanges/batch", json={"exchanges": items})
    assert r.status_code == 200, r.text
    async with session_maker() as s:
        tb_id = (
            await s.execute(select(Member.timebank_id).where(Member.display_name == "K0"))
        ).scalar_one()
        keys = [
            *(
                await s.execute(select(Member.record_key).where(Member.timebank_id == tb_id))
            ).scalars(),
            *(
                await s.execute(
                    select(Organisation.record_key).where(Organisation.timebank_id == tb_id)
                )
            ).scalars(),
            *(
                await s.execute(select(Exchange.record_key).where(Exchange.timebank_id == tb_id))
            ).scalars(),
        ]
    assert len(keys) == 6 + 1 + 61
    assert all(0 <= k < 2**32 for k in keys)
    assert len(set(keys)) == len(keys), "random 32-bit keys (a clash here is one in ~10⁶)"
    for body in (
        people[0],
        org,
        one.json(),
        r.json(),
        await api.ok("get", f"/v1/timebanks/{slug}/members/{people[0]['id']}"),
        await api.ok("get", f"/v1/timebanks/{slug}/exchanges"),
    ):
        assert "record_key" not in str(body)
