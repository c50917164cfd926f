"""Reports (SPEC §3.7): worked examples with exact figures, disclosure control, access and
period rules, and the CSV and XLSX formats parsed back.

The worked community (threshold 5, the lowest a global admin may set):
  seven members, A–F living in Irvine (spelt three ways), G in Largs; one charity.
  February: A→B 60, B→C 90, C→D 120, D→E 30, E→F 60 min (transport).
  March: F teaches A, B and C 45 min each (a group, F credited 135); A gives the charity 180.
  Also: a 500-minute lift F→A that is reversed, a pool grant of 120 to A, a proposal left
  pending and one rejected: none of these is a service exchange.
Service exchanges: 7, 675 minutes (11.25 h), over 6 participating members.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook

from tests.conftest import Api, party, simple
from tests.test_reports_properties import derivable, parse_csv, relations

PERIOD = {"from": "2026-01-01", "to": "2026-07-01"}
QUARTER = {"from": "2026-01-01", "to": "2026-04-01"}  # a lattice period, for published figures
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def report(api: Api, slug: str, name: str, **params: Any) -> dict[str, Any]:
    r = await api.get(f"/v1/timebanks/{slug}/reports/{name}", params={**PERIOD, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def rows_by(body: dict[str, Any], *keys: str) -> dict[Any, dict[str, Any]]:
    out = {}
    for row in body["rows"]:
        k = tuple(row[x] for x in keys)
        out[k[0] if len(k) == 1 else k] = row
    return out


async def worked_community(api: Api) -> dict[str, Any]:
    tb = await api.timebank(suppression_threshold=5, member_min_balance_minutes=None)
    slug = tb["slug"]
    places = ["Irvine", "irvine ", " Irvine", "IRVINE", "Irvine", "irvine", "Largs"]
    genders = ["female", "female", "male", "female", None, "male", "female"]
    m = {}
    for i, name in enumerate("ABCDEFG"):
        fields: dict[str, Any] = {
            "locality": places[i],
            "statistics_consent": name != "E",
            "joined_on": "2026-01-10",
            "email": f"{name.lower()}@example.org",
            "birth_year": 1950 + 5 * i,
        }
        if genders[i]:
            fields["gender"] = genders[i]
        m[name] = await api.member(slug, f"Person {name}", **fields)
    shed = await api.organisation(slug, "Harbour Shed", "charity")

    async def record(body: dict[str, Any]) -> str:
        r = await api.exchange(slug, body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    for p, q, minutes, day in [
        ("A", "B", 60, 2),
        ("B", "C", 90, 3),
        ("C", "D", 120, 4),
        ("D", "E", 30, 5),
        ("E", "F", 60, 6),
    ]:
        await record(simple(m[p], m[q], minutes, occurred_on=f"2026-02-{day:02d}"))
    await record(
        {
            "providers": [{"party": party(m["F"]), "minutes": 135}],
            "recipients": [{"party": party(m[x]), "minutes": 45} for x in "ABC"],
            "category": "learning-teaching",
            "occurred_on": "2026-03-10",
        }
    )
    await record(simple(m["A"], shed, 180, category="community-events", occurred_on="2026-03-12"))
    lift = await record(simple(m["F"], m["A"], 500, occurred_on="2026-03-15"))
    before_reversal = datetime.now(UTC)
    r = await api.post(f"/v1/timebanks/{slug}/exchanges/{lift}/reverse", json={"reason": "typo"})
    assert r.status_code == 201, r.text
    await record(
        {
            "provider": party(m["A"]),
            "recipient": {"account_id": tb["pool_account_id"]},
            "minutes": 120,
            "occurred_on": "2026-03-20",
        }
    )
    b_key = api.as_key(await api.key(slug, "member", member_id=m["B"]["id"]))
    for decide in (None, "reject"):
        r = await b_key.exchange(slug, simple(m["B"], m["C"], 60, occurred_on="2026-03-21"))
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "pending"
        if decide:
            r = await api.post(f"/v1/timebanks/{slug}/exchanges/{r.json()['id']}/{decide}", json={})
            assert r.status_code == 200, r.text
    return {"tb": tb, "slug": slug, "m": m, "shed": shed, "before_reversal": before_reversal}


# --- worked examples -------------------------------------------------------------------------


async def test_summary_of_the_worked_community_has_exact_figures(api: Api) -> None:
    w = await worked_community(api)
    s = await report(api, w["slug"], "summary")
    assert s["report"] == "summary"
    assert s["timebanks"] == [w["slug"]]
    assert s["period"] == {**PERIOD, "last_day": "2026-06-30"}
    assert s["definitions_version"] == "1"
    assert s["suppression_threshold"] == 5
    assert (s["exchanges"], s["minutes"], s["hours"]) == (7, 675, 11.25)
    assert s["participating_members"] == 6
    assert s["participating_organisations"] == 1
    assert s["registered_members"] == 7
    assert s["new_members"] == 7
    assert s["active_members"] == 6
    # hours traded (given + received): 285, 195, 255, 150, 90, 195 minutes
    assert s["mean_hours_per_participating_member"] == 3.25
    assert s["median_hours_per_participating_member"] == 3.25
    # one pool grant to one person: withheld; no donations (a zero is shown)
    assert s["pool_grants"] is None
    assert s["pool_grant_minutes"] is None
    assert (s["pool_donations"], s["pool_donation_minutes"]) == (0, 0)
    assert set(s["suppressed"]) == {"pool_grants", "pool_grant_minutes", "pool_grant_hours"}
    assert s["rows"] == []


async def test_as_of_reproduces_figures_from_before_a_reversal(api: Api) -> None:
    w = await worked_community(api)
    then = w["before_reversal"].isoformat()
    s = await report(api, w["slug"], "summary", as_of=then)
    assert (s["exchanges"], s["minutes"]) == (8, 1175)
    assert s["as_of"] == w["before_reversal"].isoformat()
    now = await report(api, w["slug"], "summary")
    assert (now["exchanges"], now["minutes"]) == (7, 675)


async def test_categories_withhold_small_cells_and_enough_others_that_none_can_be_worked_out(
    api: Api,
) -> None:
    w = await worked_community(api)
    c = await report(api, w["slug"], "categories")
    rows = rows_by(c, "category")
    assert (c["exchanges"], c["minutes"], c["hours"]) == (7, 675, 11.25)
    # learning-teaching is over 4 people (F, A, B, C) and community-events over 1 (A):
    # withheld. Together they are 315 minutes over 4 people, which the total would give
    # away, so transport (6 people) is withheld as well.
    for slug in ("learning-teaching", "community-events", "transport"):
        row = rows[slug]
        assert row["suppressed"] is True
        assert row["exchanges"] is None
        assert row["minutes"] is None
        assert row["share_of_hours"] is None
    assert rows["cooking-meals"] == {
        "category": "cooking-meals",
        "name": "Cooking and meals",
        "exchanges": 0,
        "minutes": 0,
        "hours": 0.0,
        "providers": 0,
        "share_of_hours": 0.0,
        "suppressed": False,
    }


async def test_exchange_types_show_p2p_only_with_a_complement_for_the_lone_p2o(api: Api) -> None:
    w = await worked_community(api)
    t = await report(api, w["slug"], "exchange-types")
    rows = rows_by(t, "kind")
    assert list(rows) == ["p2p", "p2o", "o2p", "o2o"]
    assert rows["p2o"]["suppressed"] and rows["p2o"]["minutes"] is None
    assert rows["p2p"]["suppressed"] and rows["p2p"]["minutes"] is None  # else 675 − p2p = p2o
    assert rows["o2p"]["exchanges"] == 0
    assert (t["exchanges"], t["minutes"]) == (7, 675)


async def test_localities_group_spellings_and_show_the_large_cell(api: Api) -> None:
    w = await worked_community(api)
    loc = await report(api, w["slug"], "localities")
    assert loc["rows"] == [
        {
            "locality": "IRVINE",
            "participating_members": 6,
            "minutes_given": 675,
            "hours_given": 11.25,
            "minutes_received": 495,
            "hours_received": 8.25,
            "suppressed": False,
        }
    ]
    assert loc["participating_members"] == 6


async def test_timeseries_by_month_pairs_the_small_march_with_february(api: Api) -> None:
    w = await worked_community(api)
    ts = await report(api, w["slug"], "timeseries", interval="month")
    assert ts["interval"] == "month"
    rows = rows_by(ts, "period_start")
    assert list(rows) == [f"2026-{m:02d}-01" for m in range(1, 7)]
    assert rows["2026-01-01"]["new_members"] == 7
    assert rows["2026-01-01"]["exchanges"] == 0
    # March is over 4 people (withheld). April–June are zeros, which a reader could guess,
    # so February (6 people) is March's complement, and February's running total is
    # withheld so that neither month can be recovered.
    for month in ("2026-02-01", "2026-03-01"):
        assert rows[month]["minutes"] is None
    assert rows["2026-02-01"]["cumulative_minutes"] is None
    assert rows["2026-03-01"]["cumulative_minutes"] == 675
    assert rows["2026-04-01"]["minutes"] == 0
    assert rows["2026-06-01"]["cumulative_hours"] == 11.25
    assert rows["2026-06-01"]["active_members"] == 6
    assert (ts["exchanges"], ts["minutes"], ts["new_members"]) == (7, 675, 7)


async def test_reciprocity_distribution_and_activity_of_the_worked_community(api: Api) -> None:
    w = await worked_community(api)
    rec = rows_by(await report(api, w["slug"], "reciprocity"), "pattern")
    assert rec["gave_and_received"]["members"] == 6
    assert rec["gave_and_received"]["share"] == 1.0
    assert rec["gave_only"]["members"] == 0
    dist = await report(api, w["slug"], "distribution")
    hist = rows_by(dist, "exchanges_per_member")
    assert dist["members"] == 7
    # G never traded (1 person): withheld, with 2-5 (6 people) as its complement
    assert hist["0"]["members"] is None and hist["2-5"]["members"] is None
    assert hist["1"]["members"] == 0
    assert dist["gini_hours"] == pytest.approx(0.1838, abs=1e-4)
    assert dist["top_10_percent_share"] is None  # the top 10 % is one person
    act = await report(api, w["slug"], "activity")
    assert act["registered_members"] == 7
    # 6 active, 1 never traded: "ever traded" would give away the one, so it is withheld
    assert act["ever_traded_members"] is None
    assert act["active_members"] is None
    assert act["inactive_12_months"] is None


async def test_demographics_count_only_consenting_members_with_not_stated_apart(
    api: Api,
) -> None:
    w = await worked_community(api)
    slug = w["slug"]
    await api.post(f"/v1/timebanks/{slug}/members/{w['m']['G']['id']}/erase")
    demo = await report(api, slug, "demographics", dimension="gender")
    assert demo["dimension"] == "gender"
    # E gave no consent and G is erased: five consenting, registered members remain
    assert demo["consenting_registered_members"] == 5
    assert demo["consenting_participating_members"] == 5
    rows = rows_by(demo, "dimension", "group")
    assert [g for _, g in rows] == [
        "female",
        "male",
        "non_binary",
        "other",
        "prefer_not_to_say",
        "not_stated",
    ]
    assert rows[("gender", "not_stated")]["registered_members"] == 0  # E's blank is not counted
    assert rows[("gender", "female")]["registered_members"] is None  # A, B, D: 3 people
    assert rows[("gender", "male")]["registered_members"] is None  # C, F: 2 people


async def test_retention_counts_first_exchanges_within_3_months_and_waits_for_later_windows(
    api: Api,
) -> None:
    w = await worked_community(api)
    ret = await report(api, w["slug"], "retention")
    (row,) = ret["rows"]
    assert row["cohort"] == "2026-01"
    assert row["members"] == 7
    # joined 10 January; A–F first traded in February or March (within 3 months), G never:
    # 6 of 7 is withheld, as 7 − 6 would give away the one who never traded
    assert row["first_exchange_within_3_months"] is None
    assert row["first_exchange_within_6_months"] is None
    assert row["first_exchange_within_12_months"] is None  # runs past `to`: not observable
    assert row["suppressed"] is True


async def test_social_value_is_hours_times_a_named_rate_and_says_it_is_not_sroi(api: Api) -> None:
    w = await worked_community(api)
    sv = await report(api, w["slug"], "social-value")
    assert sv["rate_pence_per_hour"] == 1271
    assert "National Living Wage" in sv["rate_source"]
    assert sv["rate_date"] == "2026-04-01"
    assert "replacement-cost" in sv["valuation"].lower()
    assert "not a social return on investment" in sv["valuation"]
    assert (sv["hours"], sv["value_pence"], sv["value_pounds"]) == (11.25, 14299, 142.99)
    given = await report(api, w["slug"], "social-value", rate_pence_per_hour=1050)
    assert (given["value_pence"], given["rate_source"]) == (11813, "given by the caller")


async def test_organisations_are_named_and_their_small_figures_withheld(api: Api) -> None:
    w = await worked_community(api)
    org = await report(api, w["slug"], "organisations")
    (row,) = org["rows"]
    assert (row["timebank"], row["organisation"], row["kind"]) == (
        w["slug"],
        "Harbour Shed",
        "charity",
    )
    assert row["members_engaged"] is None  # one member: A
    assert row["suppressed"] is True


async def test_no_report_names_or_identifies_a_person(api: Api) -> None:
    w = await worked_community(api)
    people = [w["m"][x] for x in "ABCDEFG"]
    for name in (
        "summary",
        "timeseries",
        "exchange-types",
        "categories",
        "organisations",
        "localities",
        "demographics",
        "activity",
        "reciprocity",
        "distribution",
        "retention",
        "social-value",
    ):
        for fmt in ("json", "csv"):
            r = await api.get(
                f"/v1/timebanks/{w['slug']}/reports/{name}", params={**PERIOD, "format": fmt}
            )
            assert r.status_code == 200, r.text
            for p in people:
                for value in (p["id"], p["account_id"], p["display_name"], p["email"]):
                    assert value not in r.text, (name, value)


# --- disclosure control at bank level and across banks ---------------------------------------


async def test_a_small_bank_withholds_its_bank_level_figures(api: Api) -> None:
    tb = await api.timebank()  # default threshold 10
    slug = tb["slug"]
    a, b, c = [await api.member(slug, n) for n in "ABC"]
    for p, q in ((a, b), (b, c), (c, a)):
        assert (await api.exchange(slug, simple(p, q, 60))).status_code == 201
    s = await report(api, slug, "summary", **{"from": "2020-01-01", "to": "2030-01-01"})
    assert s["suppression_threshold"] == 10
    for f in (
        "exchanges",
        "minutes",
        "hours",
        "participating_members",
        "mean_hours_per_participating_member",
        "median_hours_per_participating_member",
    ):
        assert s[f] is None and f in s["suppressed"]


async def test_cross_bank_reports_add_banks_up_and_use_the_highest_threshold(api: Api) -> None:
    north = await api.timebank(suppression_threshold=5)
    south = await api.timebank(suppression_threshold=7)
    for tb in (north, south):
        ms = [await api.member(tb["slug"], f"M{i}") for i in range(4)]
        for i in range(4):
            r = await api.exchange(
                tb["slug"], simple(ms[i], ms[(i + 1) % 4], 30, occurred_on="2026-02-02")
            )
            assert r.status_code == 201
    r = await api.get(
        "/v1/reports/summary", params={"timebank": [north["slug"], south["slug"]], **PERIOD}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timebanks"] == [north["slug"], south["slug"]]
    assert body["suppression_threshold"] == 7
    assert (body["exchanges"], body["minutes"], body["participating_members"]) == (8, 240, 8)
    one = await report(api, north["slug"], "summary")
    assert one["participating_members"] is None  # 4 people < 5


# --- access and period rules ------------------------------------------------------------------


async def test_funder_keys_read_reports_of_their_bank_only(api: Api) -> None:
    mine = await api.timebank()
    other = await api.timebank()
    funder = api.as_key(await api.key(mine["slug"], "funder"))
    ok = await funder.get(f"/v1/timebanks/{mine['slug']}/reports/summary", params=QUARTER)
    assert ok.status_code == 200, ok.text
    # a bank outside the key's scope answers as an unknown one does (SPEC §7.1)
    for path, params in (
        (f"/v1/timebanks/{other['slug']}/reports/summary", QUARTER),
        ("/v1/timebanks/no-such-bank/reports/summary", QUARTER),
        ("/v1/reports/summary", {**QUARTER, "timebank": [mine["slug"], other["slug"]]}),
        ("/v1/reports/summary", {**QUARTER, "timebank": [mine["slug"], "no-such-bank"]}),
    ):
        r = await funder.get(path, params=params)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"


async def test_a_funder_key_over_two_banks_reads_the_cross_bank_report(api: Api) -> None:
    a, b = await api.timebank(), await api.timebank()
    created = await api.ok(
        "post", "/v1/api-keys", {"role": "funder", "timebanks": [a["slug"], b["slug"]]}
    )
    funder = api.as_key(created["secret"])
    r = await funder.get(
        "/v1/reports/categories", params={**QUARTER, "timebank": [a["slug"], b["slug"]]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["perturbed"] is True


async def test_member_keys_get_no_reports(api: Api) -> None:
    tb = await api.timebank()
    m = await api.member(tb["slug"])
    member = api.as_key(await api.key(tb["slug"], "member", member_id=m["id"]))
    r = await member.get(f"/v1/timebanks/{tb['slug']}/reports/summary")
    assert r.status_code == 403


@pytest.mark.parametrize(
    "period",
    [
        {"from": "2026-01-15", "to": "2026-04-01"},  # not the 1st
        {"from": "2026-01-01", "to": "2026-07-01"},  # six months
        {"from": "2026-02-01", "to": "2026-05-01"},  # three months, not a calendar quarter
        {"from": "2026-02-01", "to": "2027-02-01"},  # a year from February
    ],
)
async def test_published_periods_must_lie_on_the_lattice(api: Api, period: dict[str, str]) -> None:
    tb = await api.timebank()
    path = f"/v1/timebanks/{tb['slug']}/reports/summary"
    funder = api.as_key(await api.key(tb["slug"], "funder"))
    for who, params in ((funder, period), (api, {**period, "figures": "published"})):
        r = await who.get(path, params=params)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["code"] == "validation_error"
        assert [e["field"] for e in body["errors"]] == ["from", "to"]
        assert "calendar quarter" in body["errors"][0]["message"]
    r = await api.get(path, params=period)  # exact figures: any day-aligned period
    assert r.status_code == 200, r.text


async def test_lattice_periods_are_months_quarters_financial_and_calendar_years(
    api: Api,
) -> None:
    tb = await api.timebank()
    funder = api.as_key(await api.key(tb["slug"], "funder"))
    path = f"/v1/timebanks/{tb['slug']}/reports/summary"
    for start, end in [
        ("2026-02-01", "2026-03-01"),
        ("2026-10-01", "2027-01-01"),
        ("2026-04-01", "2027-04-01"),
        ("2026-01-01", "2027-01-01"),
    ]:
        r = await funder.get(path, params={"from": start, "to": end})
        assert r.status_code == 200, r.text
        last_day = (date.fromisoformat(end) - timedelta(days=1)).isoformat()
        assert r.json()["period"] == {"from": start, "to": end, "last_day": last_day}


async def test_published_as_of_is_whole_days_and_the_default_the_last_complete_quarter(
    api: Api,
) -> None:
    tb = await api.timebank()
    funder = api.as_key(await api.key(tb["slug"], "funder"))
    path = f"/v1/timebanks/{tb['slug']}/reports/summary"
    r = await funder.get(path, params={**QUARTER, "as_of": "2026-05-02T13:45:00Z"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"] == "2026-05-02T00:00:00+00:00"
    assert (body["perturbed"], body["method"]) == (True, "cellkey-2")
    body = (await funder.get(path)).json()
    start, end = (
        date.fromisoformat(body["period"]["from"]),
        date.fromisoformat(body["period"]["to"]),
    )
    today = datetime.now(UTC).date()
    assert start.day == end.day == 1 and start.month in (1, 4, 7, 10)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 3
    assert start < end <= today
    assert (today.year * 12 + today.month) - (end.year * 12 + end.month) < 3
    r = await funder.get(path.replace("summary", "timeseries"), params={"interval": "week"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "interval"
    exact = (await api.get(path, params=QUARTER)).json()
    assert (exact["perturbed"], exact["method"]) == (False, None)


async def test_default_period_is_the_twelve_months_to_the_first_of_next_month(api: Api) -> None:
    tb = await api.timebank()
    s = await api.ok("get", f"/v1/timebanks/{tb['slug']}/reports/summary")
    start, end = s["period"]["from"], s["period"]["to"]
    assert end.endswith("-01") and start.endswith("-01")
    assert int(end[:4]) - int(start[:4]) == 1 and end[5:] == start[5:]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-04-01", "to": "2026-04-01"}, "from"),
        ({"format": "pdf"}, "format"),
        ({"interval": "day"}, "interval"),
        ({"dimension": "shoe_size"}, "dimension"),
        ({"rate_pence_per_hour": 0}, "rate_pence_per_hour"),
        ({"figures": "rounded"}, "figures"),
        ({"figures": "published", "from": "2026-01-01", "to": "2026-03-01"}, "from"),
        ({"figures": "published", "interval": "week"}, "interval"),
    ],
)
async def test_bad_report_parameters_are_refused_with_422(
    api: Api, params: dict[str, Any], field: str
) -> None:
    tb = await api.timebank()
    r = await api.get(f"/v1/timebanks/{tb['slug']}/reports/timeseries", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert r.json()["errors"][0]["field"] == field


async def test_unknown_report_or_bank_is_404(api: Api) -> None:
    tb = await api.timebank()
    assert (await api.get(f"/v1/timebanks/{tb['slug']}/reports/horoscope")).status_code == 404
    assert (await api.get("/v1/timebanks/no-such-bank/reports/summary")).status_code == 404
    r = await api.get("/v1/reports/summary", params={"timebank": ["no-such-bank"]})
    assert r.status_code == 404


# --- formats ----------------------------------------------------------------------------------


def flat_json(body: dict[str, Any], keys: list[str]) -> dict[tuple[Any, ...], Any]:
    """(row key…, figure) → value for every figure of a JSON report."""
    meta = {
        "report",
        "timebanks",
        "period",
        "as_of",
        "generated_at",
        "definitions_version",
        "suppression_threshold",
        "perturbed",
        "method",
        "suppressed",
        "rows",
    }
    out: dict[tuple[Any, ...], Any] = {}
    for k, v in body.items():
        if k not in meta:
            out[((), k)] = v
    for row in body["rows"]:
        key = tuple(str(row[k]) for k in keys)
        for k, v in row.items():
            if k not in keys and k != "suppressed":
                out[(key, k)] = v
    return out


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("categories", ["category", "name"]),
        ("timeseries", ["period_start", "period_end"]),
        ("summary", []),
        ("demographics", ["dimension", "group"]),
    ],
)
async def test_csv_is_tidy_and_carries_the_same_figures_as_json(
    api: Api, name: str, keys: list[str]
) -> None:
    w = await worked_community(api)
    path = f"/v1/timebanks/{w['slug']}/reports/{name}"
    body = (await api.get(path, params=PERIOD)).json()
    r = await api.get(path, params=PERIOD, headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert f"{name}_{w['slug']}_2026-01-01_2026-07-01.csv" in r.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(r.text)))
    assert list(lines[0]) == [
        "report",
        "timebanks",
        "period_from",
        "period_to_exclusive",
        "period_last_day",
        "as_of",
        "definitions_version",
        "suppression_threshold",
        "perturbed",
        "method",
        *keys,
        "figure",
        "value",
        "suppressed",
    ]
    assert {
        (x["period_from"], x["period_to_exclusive"], x["period_last_day"], x["definitions_version"])
        for x in lines
    } == {("2026-01-01", "2026-07-01", "2026-06-30", "1")}
    expected = flat_json(body, keys)
    got = {}
    for x in lines:
        key = tuple(x[k] for k in keys)
        key = () if not any(key) else key
        got[(key, x["figure"])] = x["value"]
        if x["suppressed"] == "true":
            assert x["value"] == ""
            assert expected[(key, x["figure"])] is None
    assert set(got) == set(expected)
    for var, value in expected.items():
        assert got[var] == ("" if value is None else str(value)), var
    same = await api.get(path, params={**PERIOD, "format": "csv"})
    assert same.text.splitlines()[0] == r.text.splitlines()[0]


def number(text: str) -> Any:
    """Spreadsheets hold one number type: compare 0 and 0.0 as equal."""
    try:
        return float(text)
    except ValueError:
        return text


async def test_xlsx_opens_with_report_rows_and_tidy_sheets_matching_the_csv(api: Api) -> None:
    w = await worked_community(api)
    path = f"/v1/timebanks/{w['slug']}/reports/categories"
    pinned = {**PERIOD, "as_of": datetime.now(UTC).isoformat()}
    r = await api.get(path, params={**pinned, "format": "xlsx"})
    assert r.status_code == 200
    assert r.headers["content-type"] == XLSX
    book = load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["Report", "Rows", "Tidy"]
    about = {row[0]: row[1] for row in book["Report"].iter_rows(values_only=True) if row and row[0]}
    assert about["report"] == "categories"
    assert about["definitions_version"] == "1"
    assert about["minutes"] == 675
    grid = list(book["Rows"].iter_rows(values_only=True))
    header = list(grid[0])
    assert header[:2] == ["category", "name"] and header[-1] == "suppressed"
    by_slug = {row[0]: dict(zip(header, row, strict=True)) for row in grid[1:]}
    assert by_slug["transport"]["minutes"] is None and by_slug["transport"]["suppressed"] is True
    assert by_slug["cooking-meals"]["minutes"] == 0
    csv_text = (await api.get(path, params={**pinned, "format": "csv"})).text
    csv_rows = list(csv.reader(io.StringIO(csv_text)))
    tidy = [
        [
            "" if v is None else ("true" if v is True else "false" if v is False else str(v))
            for v in row
        ]
        for row in book["Tidy"].iter_rows(values_only=True)
    ]
    width = len(csv_rows[0])
    tidy = [row + [""] * (width - len(row)) for row in tidy]
    assert tidy[0] == csv_rows[0]
    assert [[number(v) for v in row] for row in tidy[1:]] == [
        [number(v) for v in row] for row in csv_rows[1:]
    ]


async def test_served_reports_pass_the_derivability_check(api: Api) -> None:
    """The worked community's responses, through the same exact-arithmetic check the
    property test uses: no withheld value is pinned down by the others."""
    w = await worked_community(api)
    for name in (
        "categories",
        "exchange-types",
        "timeseries",
        "localities",
        "demographics",
        "activity",
        "reciprocity",
        "distribution",
        "retention",
    ):
        r = await api.get(
            f"/v1/timebanks/{w['slug']}/reports/{name}", params={**PERIOD, "format": "csv"}
        )
        served = parse_csv(name, r.text)
        pinned = derivable(relations(name, served), served.values)
        assert not pinned & served.suppressed, name
