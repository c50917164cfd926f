"""Paper time sheets (SPEC §3.10, §7.7): reading every accepted format, resolving names,
never recording a line twice, and a 1 000-line sheet previewed and committed on both
engines with the ledger's invariants checked after."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from tests.conftest import Api, simple
from tests.servers import check_ledger, server_env
from timebank.imports.sheet import SheetError, date_of, minutes_of, read

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "docs" / "sample-time-sheet.csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# --- reading a sheet (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "minutes"),
    [
        ("1.5", 90),
        ("1,5", 90),
        ("1:30", 90),
        ("90m", 90),
        ("90 min", 90),
        ("2h", 120),
        ("1h 30m", 90),
        ("1h30", 90),
        ("0.25", 15),
        ("3", 180),
        ("2 hours", 120),
    ],
)
def test_hours_as_people_write_them(hours: str, minutes: int) -> None:
    assert minutes_of(hours) == minutes


def test_a_minutes_column_and_bad_hours() -> None:
    assert minutes_of("", "45") == 45
    for bad, words in (("x", "not understood"), ("1.33", "whole number"), ("", "no hours")):
        with pytest.raises(ValueError, match=words):
            minutes_of(bad)


def test_dates_iso_or_uk_and_nothing_else() -> None:
    assert str(date_of("2026-11-28")) == str(date_of("28/11/2026")) == "2026-11-28"
    assert str(date_of("1/2/2026")) == "2026-02-01"
    for bad in ("11/28/2026", "28.11.2026", "Nov 28", "31/02/2026"):
        with pytest.raises(ValueError, match="date"):
            date_of(bad)


def test_headers_matched_forgivingly_with_bom_and_semicolons() -> None:
    text = "\ufeffDATE ; Given by;Received_By;Hrs;Type;Notes;Ref\n"
    text += "28/11/2026;Ann;Bob;1:30;Pets;dog;A1\n\n2026-11-29;Bob;Ann;2;;;\n"
    sheet = read(text.encode())
    assert set(sheet.columns) == {
        "date",
        "provider",
        "recipient",
        "hours",
        "category",
        "description",
        "reference",
    }
    assert [(r.number, r.cells["provider"], r.cells["reference"]) for r in sheet.rows] == [
        (2, "Ann", "A1"),
        (4, "Bob", ""),
    ]


def test_xlsx_sheets_are_read_and_formulas_never_run() -> None:
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["Date", "Provider", "Recipient", "Minutes"])
    ws.append(["2026-11-28", "Ann", "Bob", 90])
    ws.append(["2026-11-28", '=HYPERLINK("http://evil","Ann")', "Bob", 30])
    buf = io.BytesIO()
    book.save(buf)
    sheet = read(buf.getvalue())
    assert sheet.rows[0].cells["minutes"] == "90" and not sheet.rows[0].formulas
    assert sheet.rows[1].formulas == ["provider"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"\xff\xfeD\x00a\x00", "not UTF-8"),
        (b"name,email\nAnn,a@b.c\n", "missing: date, provider, recipient, hours"),
        (b"Date,Giver,Receiver,Hours\n", "no lines"),
        ("Date,Giver,Receiver,Hours\n" + "2026-11-28,A,B,1\n" * 10_001, "limit is 10,000"),
        (b"PK\x03\x04not really a zip", "not"),
    ],
)
def test_a_sheet_that_cannot_be_read_says_why(content: bytes | str, words: str) -> None:
    raw = content.encode() if isinstance(content, str) else content
    with pytest.raises(SheetError, match=words):
        read(raw)


# --- the API ---------------------------------------------------------------------------------


async def upload(api: Api, slug: str, body: bytes | str, **params: Any) -> Any:
    content = body.encode() if isinstance(body, str) else body
    return await api.client.post(
        f"/v1/timebanks/{slug}/imports",
        content=content,
        params=params,
        headers=api.headers({"Content-Type": "text/csv"}),
    )


async def community(api: Api) -> tuple[str, dict[str, Any]]:
    tb = await api.timebank()
    slug = tb["slug"]
    people = {
        "may": await api.member(slug, "May Reid", external_ref="M-1", email="may@example.org"),
        "raj": await api.member(slug, "Raj Patel"),
        "jo1": await api.member(slug, "Jo Smith", external_ref="M-7"),
        "jo2": await api.member(slug, "jo smith ", email="jo@example.org"),
        "org": await api.organisation(slug, "Irvine Food Bank"),
    }
    return slug, people


async def test_a_sheet_is_previewed_line_by_line_then_committed_once(api: Api) -> None:
    slug, p = await community(api)
    sheet = (
        "Date,Giver,Receiver,Hours,Category,Notes\n"
        "28/11/2026,may reid,Raj Patel,1:30,Home and garden,hedge\n"  # 2 ready (by name)
        "28/11/2026,M-1,irvine food bank,2,community-events,\n"  # 3 ready (by ref)
        "29/11/2026,Jo Smith,Raj Patel,1,Home and garden,\n"  # 4 ambiguous
        "29/11/2026,Ray Patel,May Reid,1,Home and garden,\n"  # 5 unknown, did you mean
        "30/11/2026,jo@example.org,Pool,1,Community events,\n"  # 6 ready (email → pool grant)
        "31/11/2026,May Reid,Raj Patel,1,Home and garden,\n"  # 7 bad date
        "30/11/2026,May Reid,Raj Patel,lots,Home and garden,\n"  # 8 bad hours
        "30/11/2026,May Reid,Raj Patel,1,Astrology,\n"  # 9 unknown category
        "30/11/2026,Raj Patel,May Reid,14,Home and garden,\n"  # 10 over May's limit (-600)
    )
    r = await upload(api, slug, sheet, sheet="november")
    assert r.status_code == 201, r.text
    preview = r.json()
    assert r.headers["location"] == f"/v1/timebanks/{slug}/imports/{preview['id']}"
    assert preview["status"] == "preview" and preview["date_formats"]
    verdicts = {
        line["line"]: (line["status"], (line["error"] or {}).get("code"))
        for line in preview["lines"]
    }
    assert verdicts == {
        2: ("ready", None),
        3: ("ready", None),
        4: ("refused", "ambiguous_party"),
        5: ("refused", "unknown_party"),
        6: ("ready", None),
        7: ("refused", "bad_date"),
        8: ("refused", "bad_hours"),
        9: ("refused", "unknown_category"),
        10: ("refused", "balance_limit_exceeded"),
    }
    lines = {line["line"]: line for line in preview["lines"]}
    assert {c["id"] for c in lines[4]["error"]["candidates"]} == {p["jo1"]["id"], p["jo2"]["id"]}
    # the broker picks which Jo Smith it was: line 4 is ready, the rest judged again
    chosen = await api.patch(
        f"/v1/timebanks/{slug}/imports/{preview['id']}/lines/4",
        {"provider": {"member_id": p["jo1"]["id"]}},
    )
    assert chosen.status_code == 200, chosen.text
    fixed = {line["line"]: line for line in chosen.json()["lines"]}
    assert (fixed[4]["status"], fixed[4]["provider"]["id"]) == ("ready", p["jo1"]["id"])
    assert fixed[10]["status"] == "refused"
    preview = chosen.json()
    assert "did you mean 'Raj Patel'" in lines[5]["error"]["message"]
    assert lines[2]["provider"]["id"] == p["may"]["id"] and lines[2]["minutes"] == 90
    assert lines[6]["recipient"]["type"] == "pool"
    assert "May Reid" in lines[10]["error"]["message"]
    assert lines[2]["external_ref"] == "november/2"
    # nothing recorded by the preview
    assert (await api.get(f"/v1/timebanks/{slug}/exchanges")).json()["items"] == []
    assert (await api.get(r.headers["location"])).json() == preview

    done = await api.post(f"/v1/timebanks/{slug}/imports/{preview['id']}/commit")
    assert done.status_code == 200, done.text
    committed = done.json()
    assert committed["status"] == "committed"
    assert committed["summary"]["recorded"] == 4
    recorded = [line for line in committed["lines"] if line["status"] == "recorded"]
    assert [line["line"] for line in recorded] == [2, 3, 4, 6]
    exchanges = (await api.get(f"/v1/timebanks/{slug}/exchanges")).json()["items"]
    assert sorted(e["external_ref"] for e in exchanges) == [
        "november/2",
        "november/3",
        "november/4",
        "november/6",
    ]
    # committing again, or uploading the same sheet again, records nothing new
    again = await api.post(f"/v1/timebanks/{slug}/imports/{preview['id']}/commit")
    assert again.json()["summary"] == committed["summary"]
    second = (await upload(api, slug, sheet, sheet="november")).json()
    assert [line["status"] for line in second["lines"] if line["line"] in (2, 3, 6)] == [
        "already_recorded"
    ] * 3
    await api.post(f"/v1/timebanks/{slug}/imports/{second['id']}/commit")
    assert len((await api.get(f"/v1/timebanks/{slug}/exchanges")).json()["items"]) == 4
    assert (await api.delete(f"/v1/timebanks/{slug}/imports/{preview['id']}")).status_code == 409


async def test_a_line_entered_by_hand_is_not_recorded_again_and_a_different_one_conflicts(
    api: Api,
) -> None:
    slug, p = await community(api)
    by_hand = simple(p["may"], p["raj"], 90, category="home-garden", occurred_on="2026-11-28")
    assert (await api.exchange(slug, {**by_hand, "external_ref": "oct/2"})).status_code == 201
    assert (await api.exchange(slug, {**by_hand, "external_ref": "oct/3"})).status_code == 201
    sheet = (
        "Date,Provider,Recipient,Minutes,Category\n"
        "2026-11-28,May Reid,Raj Patel,90,home-garden\n"  # the same as oct/2
        "2026-11-28,May Reid,Raj Patel,60,home-garden\n"  # oct/3 differs → conflict
    )
    preview = (await upload(api, slug, sheet, sheet="oct")).json()
    assert [(x["status"], x["exchange_id"] is not None) for x in preview["lines"]] == [
        ("already_recorded", True),
        ("conflict", True),
    ]


async def test_an_atomic_commit_records_nothing_when_a_line_is_refused(api: Api) -> None:
    slug, p = await community(api)
    sheet = (
        "Date,Provider,Recipient,Hours,Category\n"
        "2026-11-28,May Reid,Raj Patel,1,home-garden\n"
        "2026-11-28,Raj Patel,May Reid,2,home-garden\n"
    )
    preview = (await upload(api, slug, sheet, sheet="atomic")).json()
    # meanwhile May goes to her limit, so line 3 can no longer be recorded
    await api.exchange(slug, simple(p["raj"], p["may"], 550, category="home-garden"))
    r = await api.post(f"/v1/timebanks/{slug}/imports/{preview['id']}/commit", {"atomic": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "preview"
    assert [line["status"] for line in out["lines"]] == ["ready", "refused"]
    assert len((await api.get(f"/v1/timebanks/{slug}/exchanges")).json()["items"]) == 1


async def test_bad_uploads_get_a_clear_error_and_keep_nothing(api: Api) -> None:
    slug, _ = await community(api)
    for body, params, words in (
        ("a,b\n1,2\n", {"sheet": "x"}, "missing: date"),
        ("Date,Giver,Receiver,Hours\n2026-11-28,A,B,1\n", {}, "name the sheet"),
        (b"\x00\x01\x02garbage", {"sheet": "x"}, "not"),
    ):
        r = await upload(api, slug, body, **params)
        assert r.status_code == 422, r.text
        assert words in r.json()["detail"], r.text
    member_key = await api.key(slug, "member", member_id=(await api.member(slug, "Zed"))["id"])
    r = await api.as_key(member_key).client.post(
        f"/v1/timebanks/{slug}/imports?sheet=x",
        content=b"Date,Giver,Receiver,Hours\n",
        headers={"Authorization": f"Bearer {member_key}", "Content-Type": "text/csv"},
    )
    assert r.status_code == 403


async def test_an_xlsx_upload_and_a_multipart_form(api: Api) -> None:
    slug, _ = await community(api)
    book = openpyxl.Workbook()
    book.active.append(["Date", "Giver", "Receiver", "Hours", "Category"])
    book.active.append(["2026-11-28", "May Reid", "Raj Patel", 1.5, "home-garden"])
    buf = io.BytesIO()
    book.save(buf)
    r = await api.client.post(
        f"/v1/timebanks/{slug}/imports",
        files={"file": ("week-48.xlsx", buf.getvalue(), XLSX)},
        headers=api.headers(),
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["sheet"], out["filename"]) == ("week-48", "week-48.xlsx")
    assert [(x["status"], x["minutes"]) for x in out["lines"]] == [("ready", 90)]


async def test_a_1000_line_sheet_goes_in_whole(api: Api, db_url: str) -> None:
    slug = (await api.timebank())["slug"]
    names = [f"Member {i:03d}" for i in range(40)]
    for name in names:
        await api.member(slug, name)
    rows = ["Date,Giver,Receiver,Minutes,Category"]
    for i in range(1000):
        day = f"2026-{1 + i // 280:02d}-{1 + i % 28:02d}"  # no two lines alike
        rows.append(f"{day},{names[i % 40]},{names[(i * 7 + 1) % 40]},30,other")
    preview = (await upload(api, slug, "\n".join(rows) + "\n", sheet="big")).json()
    assert preview["summary"]["ready"] == 1000, preview["summary"]
    done = (await api.post(f"/v1/timebanks/{slug}/imports/{preview['id']}/commit")).json()
    assert done["summary"]["recorded"] == 1000
    facts = await check_ledger(db_url)  # asserts SPEC §2's invariants
    assert facts.exchanges == 1000


async def test_the_cli_previews_commits_and_exits_1_when_a_line_is_refused(
    api: Api, db_url: str, tmp_path: Path
) -> None:
    """The README's walk-through with docs/sample-time-sheet.csv."""
    slug = (await api.timebank())["slug"]
    for name in ("May Reid", "Raj Singh"):
        await api.member(slug, name)
    await api.organisation(slug, "Harbour Shed", kind="community_group")
    timebank = str(ROOT / ".venv" / "bin" / "timebank")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [timebank, "import", str(SAMPLE), "--timebank", slug, *args],
            env=server_env(db_url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    preview = run()  # Jo Smyth is not a member here: one line refused, nothing recorded
    assert preview.returncode == 1, preview.stdout + preview.stderr
    assert "4 ready" in preview.stdout and "1 refused" in preview.stdout
    assert "line 6" in preview.stdout and "Jo Smyth" in preview.stdout
    assert (await api.get(f"/v1/timebanks/{slug}/exchanges")).json()["items"] == []
    await api.member(slug, "Jo Smyth")
    done = run("--commit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 recorded" in done.stdout
    again = run("--commit")
    assert again.returncode == 0 and "5 already recorded" in again.stdout, again.stdout
    assert len((await api.get(f"/v1/timebanks/{slug}/exchanges")).json()["items"]) == 5


async def test_suspended_parties_are_refused_and_erased_ones_are_not_found(api: Api) -> None:
    slug, p = await community(api)
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{p['raj']['id']}", {"status": "suspended"})
    await api.ok("post", f"/v1/timebanks/{slug}/members/{p['jo2']['id']}/erase", status=200)
    sheet = (
        "Date,Provider,Recipient,Hours,Category\n"
        "2026-11-28,May Reid,Raj Patel,1,home-garden\n"  # Raj is suspended
        "2026-11-28,May Reid,jo@example.org,1,home-garden\n"  # erased: no longer findable
        "2026-11-28,May Reid,Jo Smith,1,home-garden\n"  # only one Jo Smith left now
    )
    preview = (await upload(api, slug, sheet, sheet="status")).json()
    verdicts = [(x["status"], (x["error"] or {}).get("code")) for x in preview["lines"]]
    assert verdicts == [
        ("refused", "party_inactive"),
        ("refused", "unknown_party"),
        ("ready", None),
    ]
    assert (
        "Raj Patel" in preview["lines"][0]["error"]["message"]
        or "member" in (preview["lines"][0]["error"]["message"])
    )
