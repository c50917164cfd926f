"""Statements add up (docs/statements.md): value-date order (occurred_on, then recording
order), each line's running balance in that order, opening = every entry dated before
`from`, closing = opening + the lines = every entry dated on or before `to`, no period →
closing = the current balance; paging keeps it. The same in JSON, CSV, XLSX and the
console; reversal lines say what they reverse and why; files are named for the person and
the period, UTF-8 with a BOM, hours beside minutes, ISO 8601 times. Both engines."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from typing import Any

import openpyxl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from tests import test_console
from tests.conftest import Api, simple

# the console's fixtures: an app, a signed-in broker of a bank with May Reid and Sam Cole
clock = test_console.clock
app = test_console.app
browser = test_console.browser
bank = test_console.bank
broker = test_console.broker

TODAY = date.today() - timedelta(days=1)  # yesterday: today in any bank's time zone


def statement_path(slug: str, m: dict[str, Any]) -> str:
    return f"/v1/timebanks/{slug}/members/{m['id']}/statement"


async def walk(api: Api, slug: str, m: dict[str, Any], limit: int, **period: str) -> list[Any]:
    """Every page of a statement."""
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit, **period}
    while True:
        r = await api.get(statement_path(slug, m), params=params)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
        params = {"limit": limit, "cursor": cursor, **period}


def check_pages(pages: list[dict[str, Any]], opening: int, closing: int) -> list[Any]:
    """Every page reconciles on its own and with the pages before it."""
    running = opening
    items = []
    for page in pages:
        assert (page["opening_balance_minutes"], page["closing_balance_minutes"]) == (
            opening,
            closing,
        )
        for e in page["items"]:
            running += e["minutes"]
            assert e["balance_after_minutes"] == running, (e, running)
            items.append(e)
    assert running == closing  # opening + the lines = closing
    order = [(e["occurred_on"], e["entry_id"]) for e in items]
    assert order == sorted(order)
    return items


history = st.lists(
    st.tuples(
        st.sampled_from(["gives", "receives", "org"]),
        st.integers(1, 240),
        st.integers(0, 40),  # days before yesterday
        st.booleans(),  # reversed later
    ),
    min_size=1,
    max_size=10,
)
period = st.tuples(st.none() | st.integers(0, 45), st.none() | st.integers(0, 45))


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(exchanges=history, periods=st.lists(period, min_size=1, max_size=3), size=st.integers(1, 4))
async def test_random_backdated_exchanges_reconcile_for_any_period_on_every_page(
    api: Api, exchanges: list[Any], periods: list[Any], size: int
) -> None:
    tb = await api.timebank(member_min_balance_minutes=-100_000)
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    bob = await api.member(slug, "Bob")
    org = await api.organisation(slug, "Shed")
    entries: list[tuple[date, int]] = []  # Ann's entries: (occurred_on, minutes)
    for kind, minutes, back, undo in exchanges:
        on = TODAY - timedelta(days=back)
        other = org if kind == "org" else bob
        a, b = (other, ann) if kind == "receives" else (ann, other)
        r = await api.exchange(slug, simple(a, b, minutes, occurred_on=on.isoformat()))
        assert r.status_code == 201, r.text
        signed = -minutes if kind == "receives" else minutes
        entries.append((on, signed))
        if undo:
            rev = await api.post(
                f"/v1/timebanks/{slug}/exchanges/{r.json()['id']}/reverse", {"reason": "wrong"}
            )
            assert rev.status_code == 201, rev.text
            entries.append((date.fromisoformat(rev.json()["occurred_on"]), -signed))

    everything = walk(api, slug, ann, size)
    items = check_pages(await everything, 0, sum(m for _, m in entries))
    assert sum(m for _, m in entries) == await api.balance(slug, ann["id"])
    assert sorted((date.fromisoformat(e["occurred_on"]), e["minutes"]) for e in items) == sorted(
        entries
    )
    for start, end in periods:
        first = TODAY - timedelta(days=start) if start is not None else None
        last = TODAY - timedelta(days=end) if end is not None else None
        if first and last and first > last:
            first, last = last, first
        params = {k: v.isoformat() for k, v in (("from", first), ("to", last)) if v}
        opening = sum(m for on, m in entries if first and on < first)
        closing = sum(m for on, m in entries if not last or on <= last)
        pages = await walk(api, slug, ann, size, **params)
        items = check_pages(pages, opening, closing)
        inside = [(on, m) for on, m in entries if (not first or on >= first)]
        inside = [(on, m) for on, m in inside if not last or on <= last]
        assert sorted((date.fromisoformat(e["occurred_on"]), e["minutes"]) for e in items) == (
            sorted(inside)
        )


async def test_the_issues_statement_reads_by_date_and_reconciles(api: Api) -> None:
    """Recorded on one day, four backdated: 7 Dec ×4 read first before; now 1, 3, 3, 4, 7."""
    tb = await api.timebank(member_min_balance_minutes=-1000)
    slug = tb["slug"]
    sian = await api.member(slug, "Siân Llŷr")
    bob = await api.member(slug, "Bob")
    day = TODAY
    recorded = [
        (day, 60),
        (day - timedelta(days=6), 90),  # backdated
        (day - timedelta(days=4), -45),
        (day - timedelta(days=4), 30),
        (day - timedelta(days=3), -15),
    ]
    ids = []
    for on, minutes in recorded:
        a, b = (sian, bob) if minutes > 0 else (bob, sian)
        r = await api.exchange(slug, simple(a, b, abs(minutes), occurred_on=on.isoformat()))
        ids.append(r.json()["id"])
    st_ = (await api.get(statement_path(slug, sian))).json()
    assert [(e["occurred_on"], e["minutes"], e["balance_after_minutes"]) for e in st_["items"]] == [
        ((day - timedelta(days=6)).isoformat(), 90, 90),
        ((day - timedelta(days=4)).isoformat(), -45, 45),
        ((day - timedelta(days=4)).isoformat(), 30, 75),
        ((day - timedelta(days=3)).isoformat(), -15, 60),
        (day.isoformat(), 60, 120),
    ]
    assert st_["closing_balance_minutes"] == 120 == await api.balance(slug, sian["id"])
    # a period starting after the backdated entry: it counts in the opening balance
    since = (day - timedelta(days=3)).isoformat()
    part = (await api.get(statement_path(slug, sian), params={"from": since})).json()
    assert part["opening_balance_minutes"] == 75
    assert [e["balance_after_minutes"] for e in part["items"]] == [60, 120]
    assert part["closing_balance_minutes"] == 120
    # old-style cursors (a bare entry id) and made-up ones are refused, not misread
    for bad in ("MTI", "not-a-cursor!", "MjAyNi0xMy0wMS8x"):
        r = await api.get(statement_path(slug, sian), params={"cursor": bad})
        assert r.status_code == 422, (bad, r.text)


async def reversal_story(api: Api) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    tb = await api.timebank(member_min_balance_minutes=-1000)
    slug = tb["slug"]
    sian = await api.member(slug, "Siân Llŷr")
    bob = await api.member(slug, "Bob Jones")
    gave = await api.exchange(
        slug,
        simple(sian, bob, 90, category="home-garden", occurred_on="2026-11-03"),
    )
    wrong = gave.json()
    await api.exchange(slug, simple(bob, sian, 30, occurred_on="2026-11-20"))
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/{wrong['id']}/reverse",
        {"reason": "Bob was away that week"},
    )
    assert r.status_code == 201, r.text
    return slug, sian, bob, wrong


async def test_a_reversal_line_says_what_it_reverses_and_why(api: Api) -> None:
    slug, sian, _bob, wrong = await reversal_story(api)
    items = (await api.get(statement_path(slug, sian))).json()["items"]
    reversal = items[-1]
    assert reversal["kind"] == "reversal"
    assert reversal["reason"] == "Bob was away that week"
    assert reversal["reverses"] == {
        "exchange_id": wrong["id"],
        "occurred_on": "2026-11-03",
        "counterparties": reversal["counterparties"],
        "category": "home-garden",
    }
    assert [c["display_name"] for c in reversal["counterparties"]] == ["Bob Jones"]
    assert items[0]["reverses"] is None and items[0]["reason"] is None


def csv_parts(body: bytes) -> tuple[list[list[str]], list[dict[str, str]]]:
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 with a byte-order mark
    head, table = body.decode("utf-8-sig").split("\r\n\r\n", 1)
    return list(csv.reader(io.StringIO(head))), list(csv.DictReader(io.StringIO(table)))


async def test_statement_files_name_the_person_and_period_and_read_in_excel(api: Api) -> None:
    slug, sian, _bob, wrong = await reversal_story(api)
    period = {"from": "2026-11-01", "to": "2026-11-30"}
    r = await api.get(statement_path(slug, sian) + ".csv", params=period)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == (
        'attachment; filename="statement-sian-llyr-2026-11.csv"'
    )
    head, rows = csv_parts(r.content)
    assert head == [
        ["time_bank", slug.title()],
        ["statement_of", "Siân Llŷr"],
        ["period", "2026-11-01 to 2026-11-30"],
        ["order", "occurred_on, then recording order; balances run in this order"],
    ]
    assert [(x["row"], x["minutes"], x["hours"], x["balance_after_minutes"]) for x in rows] == [
        ("opening_balance", "", "", "0"),
        ("entry", "90", "1.50", "90"),
        ("entry", "-30", "-0.50", "60"),
        ("closing_balance", "", "", "60"),
    ]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", x["recorded_at"])
        for x in rows
        if x["row"] == "entry"
    )
    # everything, with the reversal (dated today) saying what and why
    whole = await api.get(statement_path(slug, sian) + ".csv")
    assert 'filename="statement-sian-llyr.csv"' in whole.headers["content-disposition"]
    _, rows = csv_parts(whole.content)
    last = rows[-2]
    assert last["kind"] == "reversal" and last["reason"] == "Bob was away that week"
    assert last["reverses"] == "2026-11-03 · Bob Jones · home-garden"
    assert rows[-1]["balance_after_minutes"] == "-30" == last["balance_after_minutes"]
    assert rows[-1]["balance_after_hours"] == "-0.50"

    x = await api.get(statement_path(slug, sian) + ".xlsx", params=period)
    assert x.status_code == 200, x.text
    assert x.headers["content-disposition"] == (
        'attachment; filename="statement-sian-llyr-2026-11.xlsx"'
    )
    book = openpyxl.load_workbook(io.BytesIO(x.content), read_only=True)
    sheet = book.worksheets[0]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    book.close()
    assert cells[1][:2] == ("statement_of", "Siân Llŷr") or cells[1][:2] == [
        "statement_of",
        "Siân Llŷr",
    ]
    table = [row for row in cells[5:] if any(c is not None for c in row)]
    columns = table[0]
    got = [dict(zip(columns, row, strict=False)) for row in table[1:]]
    assert [(g["row"], g["minutes"], g["balance_after_minutes"]) for g in got] == [
        ("opening_balance", None, 0),
        ("entry", 90, 90),
        ("entry", -30, 60),
        ("closing_balance", None, 60),
    ]
    assert got[1]["hours"] == 1.5

    # an organisation's file too; the JSON and the CSV agree line by line
    org = await api.organisation(slug, "Siop Ŵy & Co")
    r = await api.get(f"/v1/timebanks/{slug}/organisations/{org['id']}/statement.csv")
    assert 'filename="statement-siop-wy-co.csv"' in r.headers["content-disposition"]
    js = (await api.get(statement_path(slug, sian), params=period)).json()
    assert [
        int(x["balance_after_minutes"])
        for x in csv_parts(
            (await api.get(statement_path(slug, sian) + ".csv", params=period)).content
        )[1][1:-1]
    ] == [e["balance_after_minutes"] for e in js["items"]]
    assert wrong["id"] not in r.text


async def test_the_console_statement_takes_a_period_and_reads_the_same(
    broker: AsyncTestClient[Any],
    bank: dict[str, Any],
    admin_secret: str,
) -> None:
    api = Api(broker, admin_secret)
    slug = bank["tb"]["slug"]
    may, sam = bank["may"], bank["sam"]
    old = await api.exchange(
        slug, simple(may, sam, 90, category="home-garden", occurred_on="2026-11-03")
    )
    await api.exchange(slug, simple(sam, may, 30, occurred_on="2026-11-20"))
    await api.exchange(slug, simple(may, sam, 45, occurred_on="2026-10-10"))  # backdated
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/{old.json()['id']}/reverse", {"reason": "never happened"}
    )
    assert r.status_code == 201
    page = await broker.get(f"/console/{slug}/members/{may['id']}?from=2026-11-01&to=2026-11-30")
    assert page.status_code == 200
    html = page.text
    assert 'data-opening="45"' in html and 'data-closing="105"' in html
    assert "statement.csv?from=2026-11-01&amp;to=2026-11-30" in html
    assert "statement.xlsx?from=2026-11-01&amp;to=2026-11-30" in html
    whole = (await broker.get(f"/console/{slug}/members/{may['id']}")).text
    assert "Reverses the exchange of 3 November 2026 with Sam Cole" in whole
    assert "never happened" in whole
    bad = await broker.get(f"/console/{slug}/members/{may['id']}?from=2026-12-01&to=2026-11-01")
    assert bad.status_code == 200 and "the first no later than the second" in bad.text
    f = await broker.get(
        f"/console/{slug}/members/{may['id']}/statement.xlsx?from=2026-11-01&to=2026-11-30"
    )
    assert f.status_code == 200
    assert 'filename="statement-may-reid-2026-11.xlsx"' in f.headers["content-disposition"]
    c = await broker.get(f"/console/{slug}/members/{may['id']}/statement.csv")
    assert c.content.startswith(b"\xef\xbb\xbf")
