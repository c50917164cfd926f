"""Sheets never double-count (docs/imports.md): a line equal to an earlier line of the same
sheet, or to an exchange already in the ledger however it was recorded, is a `repeat` that
says what it repeats, and is recorded only when a broker says it is a separate exchange —
through the API's line PATCH, the CLI's --separate, or the console's button (the browser
test). Both engines."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Api, simple
from tests.servers import check_ledger, server_env
from tests.test_imports import ROOT, community, upload

SHEET = (
    "Date,Giver,Receiver,Hours,Category\n"
    "2026-11-28,May Reid,Raj Patel,1:30,home-garden\n"  # 2
    "2026-11-29,Raj Patel,May Reid,1,home-garden\n"  # 3
    "2026-11-28,may reid,raj patel,90m,Home and garden\n"  # 4: line 2 as typed again
    "2026-11-28,May Reid,Raj Patel,1:30,community-events\n"  # 5: another category
    "2026-11-28,M-1,Raj Patel,1.5,home-garden\n"  # 6: line 2 by membership number
)


def by_line(body: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {line["line"]: line for line in body["lines"]}


async def exchanges(api: Api, slug: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await api.get(f"/v1/timebanks/{slug}/exchanges")).json()["items"]
    return items


async def test_a_line_typed_twice_is_a_repeat_until_a_broker_says_it_is_separate(
    api: Api, db_url: str
) -> None:
    slug, _p = await community(api)
    preview = (await upload(api, slug, SHEET, sheet="tachwedd")).json()
    lines = by_line(preview)
    assert {n: line["status"] for n, line in lines.items()} == {
        2: "ready",
        3: "ready",
        4: "repeat",
        5: "ready",
        6: "repeat",
    }
    for n in (4, 6):
        assert lines[n]["repeats"]["line"] == 2
        assert lines[n]["error"]["code"] == "repeated_line"
        assert "the same as line 2" in lines[n]["error"]["message"]
        assert lines[n]["separate"] is False
    assert preview["summary"]["repeat"] == 2 and preview["summary"]["ready"] == 3

    # the broker: line 6 really was a second session that day
    path = f"/v1/timebanks/{slug}/imports/{preview['id']}/lines/6"
    r = await api.patch(path, {"separate": True})
    assert r.status_code == 200, r.text
    lines = by_line(r.json())
    assert (lines[6]["status"], lines[6]["separate"], lines[6]["repeats"]) == ("ready", True, None)
    assert lines[4]["status"] == "repeat"  # still the same as line 2
    # one word per PATCH: a side and `separate` at once is refused
    both = await api.patch(path, {"separate": True, "provider": {"member_id": _p["may"]["id"]}})
    assert both.status_code == 422, both.text
    # taken back, then given again
    back = by_line((await api.patch(path, {"separate": False})).json())
    assert back[6]["status"] == "repeat"
    await api.patch(path, {"separate": True})

    done = (await api.post(f"/v1/timebanks/{slug}/imports/{preview['id']}/commit")).json()
    assert {n: line["status"] for n, line in by_line(done).items()} == {
        2: "recorded",
        3: "recorded",
        4: "repeat",
        5: "recorded",
        6: "recorded",
    }
    assert len(await exchanges(api, slug)) == 4
    facts = await check_ledger(db_url)
    assert facts.exchanges == 4


async def test_the_same_sheet_uploaded_again_under_any_name_records_nothing_twice(
    api: Api,
) -> None:
    slug, p = await community(api)
    sheet = "\n".join(SHEET.splitlines()[:4]) + "\n"  # lines 2, 3 and the repeat 4
    first = await api.client.post(
        f"/v1/timebanks/{slug}/imports",
        files={"file": ("rhagfyr.csv", sheet.encode(), "text/csv")},
        headers=api.headers(),
    )
    assert first.status_code == 201, first.text
    assert first.json()["sheet"] == "rhagfyr"
    await api.post(f"/v1/timebanks/{slug}/imports/{first.json()['id']}/commit")
    assert len(await exchanges(api, slug)) == 2

    # as a browser names a second download: the same sheet, so already recorded
    again = await api.client.post(
        f"/v1/timebanks/{slug}/imports",
        files={"file": ("rhagfyr (1).csv", sheet.encode(), "text/csv")},
        headers=api.headers(),
    )
    body = again.json()
    assert body["sheet"] == "rhagfyr"
    assert [line["status"] for line in body["lines"]] == ["already_recorded"] * 2 + ["repeat"]

    # under any other name: every line is the same as an exchange in the ledger
    other = (await upload(api, slug, sheet, sheet="copi-arall")).json()
    recorded = {e["external_ref"]: e["id"] for e in await exchanges(api, slug)}
    assert [
        (line["status"], line["repeats"] and line["repeats"].get("exchange_id"))
        for line in other["lines"]
    ] == [
        ("repeat", recorded["rhagfyr/2"]),
        ("repeat", recorded["rhagfyr/3"]),
        ("repeat", None),  # the same as its own line 2 (itself already in the ledger)
    ]
    assert other["lines"][0]["error"]["code"] == "repeats_exchange"
    assert "rhagfyr/2" in other["lines"][0]["error"]["message"]
    assert other["lines"][0]["repeats"]["external_ref"] == "rhagfyr/2"
    for found in (body, other):
        done = await api.post(f"/v1/timebanks/{slug}/imports/{found['id']}/commit")
        assert done.json()["summary"]["recorded"] == 0
    assert len(await exchanges(api, slug)) == 2

    # an exchange typed in by hand is found too, however it was recorded
    by_hand = simple(p["raj"], p["may"], 45, category="home-garden", occurred_on="2026-11-30")
    hand = (await api.exchange(slug, by_hand)).json()
    late = (
        await upload(
            api,
            slug,
            "Date,Giver,Receiver,Minutes,Category\n30/11/2026,Raj Patel,May Reid,45,home-garden\n",
            sheet="late",
        )
    ).json()
    assert late["lines"][0]["status"] == "repeat"
    assert late["lines"][0]["repeats"]["exchange_id"] == hand["id"]
    assert "by hand" in late["lines"][0]["error"]["message"]


async def test_two_previews_of_one_sheet_committed_in_turn_record_it_once(api: Api) -> None:
    """Both previewed before either is committed: the second commit checks the ledger
    again and records nothing."""
    slug, _p = await community(api)
    sheet = "\n".join(SHEET.splitlines()[:3]) + "\n"
    a = (await upload(api, slug, sheet, sheet="a")).json()
    b = (await upload(api, slug, sheet, sheet="b")).json()
    assert [line["status"] for line in b["lines"]] == ["ready", "ready"]
    await api.post(f"/v1/timebanks/{slug}/imports/{a['id']}/commit")
    second = (await api.post(f"/v1/timebanks/{slug}/imports/{b['id']}/commit")).json()
    assert [line["status"] for line in second["lines"]] == ["repeat", "repeat"]
    assert len(await exchanges(api, slug)) == 2


async def test_a_reversed_exchange_is_not_a_repeat(api: Api) -> None:
    """A line that matches only an exchange since reversed records the exchange again (the
    reversal said it did not happen as recorded)."""
    slug, p = await community(api)
    wrong = (
        await api.exchange(
            slug, simple(p["may"], p["raj"], 90, category="home-garden", occurred_on="2026-11-28")
        )
    ).json()
    r = await api.post(
        f"/v1/timebanks/{slug}/exchanges/{wrong['id']}/reverse", {"reason": "typed twice"}
    )
    assert r.status_code == 201, r.text
    sheet = "Date,Giver,Receiver,Hours,Category\n2026-11-28,May Reid,Raj Patel,1.5,home-garden\n"
    preview = (await upload(api, slug, sheet, sheet="after-reversal")).json()
    assert preview["lines"][0]["status"] == "ready"


async def test_the_line_patch_documents_separate_in_openapi(openapi: dict[str, Any]) -> None:
    op = openapi["paths"]["/v1/timebanks/{tb}/imports/{import_id}/lines/{line}"]["patch"]
    assert "separate" in op["description"]
    schemas = openapi["components"]["schemas"]
    assert "separate" in schemas["LineChoice"]["properties"]
    assert "repeat" in str(schemas["SheetLine"]["properties"]["status"])
    assert "repeats" in schemas["SheetLine"]["properties"]


async def test_the_cli_lists_repeats_and_records_one_only_with_separate(
    api: Api, db_url: str, tmp_path: Path
) -> None:
    slug, _p = await community(api)
    path = tmp_path / "rhagfyr.csv"
    path.write_text("\n".join(SHEET.splitlines()[:4]) + "\n")
    timebank = str(ROOT / ".venv" / "bin" / "timebank")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [timebank, "import", str(path), "--timebank", slug, *args],
            env=server_env(db_url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = run("--commit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 recorded" in done.stdout and "1 repeats" in done.stdout, done.stdout
    assert "line 4: the same as line 2" in done.stdout, done.stdout
    assert "--separate LINE" in done.stdout
    # the same file under another name: everything is in the ledger already
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    path = copy
    again = run("--commit", "--sheet", "another")
    assert "3 lines: 3 repeats\n" in again.stdout, again.stdout + again.stderr
    assert len(await exchanges(api, slug)) == 2
    separate = run("--commit", "--sheet", "another", "--separate", "4")
    assert "1 recorded" in separate.stdout, separate.stdout + separate.stderr
    assert len(await exchanges(api, slug)) == 3
