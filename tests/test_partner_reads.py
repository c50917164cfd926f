"""What a partner app reads to follow changes without polling everything: an exchange's
times and who decided it, lists sorted and filtered by change, and statements that say
where to resume."""

from __future__ import annotations

from datetime import datetime

from tests.conftest import Api, simple
from tests.test_errors import assert_problem
from tests.test_pending import bank, decide, propose


async def test_lists_sort_filter_by_change_and_by_own_proposals(api: Api) -> None:
    b = await bank(api)
    first = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 30))
    second = await propose(b.bob_key, b.slug, simple(b.bob, b.ann, 45))
    third = await propose(b.ann_key, b.slug, simple(b.ann, b.bob, 60))
    path = b.path("/exchanges")

    oldest = await b.ann_key.api.ok("get", path)
    newest = await b.ann_key.api.ok("get", f"{path}?sort=-created_at")
    ids = [first["id"], second["id"], third["id"]]
    assert [e["id"] for e in oldest["items"]] == ids
    assert [e["id"] for e in newest["items"]] == ids[::-1]
    # paging keeps the order
    page = await b.ann_key.api.ok("get", f"{path}?sort=-created_at&limit=2")
    rest = await b.ann_key.api.ok(
        "get", f"{path}?sort=-created_at&limit=2&cursor={page['next_cursor']}"
    )
    assert [e["id"] for e in page["items"] + rest["items"]] == ids[::-1]

    mine = await b.ann_key.api.ok("get", f"{path}?proposed_by=me")
    assert [e["id"] for e in mine["items"]] == [first["id"], third["id"]]
    assert_problem(await api.get(f"{path}?proposed_by=me"), 422, "validation_error")

    # what changed since a moment: the decision, not the proposals before it
    since = max(datetime.fromisoformat(e["updated_at"]) for e in oldest["items"])
    r = await decide(b.bob_key, b.slug, first["id"], "confirm")
    assert r.status_code == 200, r.text
    moment = since.isoformat().replace("+00:00", "Z")
    changed = await b.ann_key.api.ok("get", f"{path}?updated_since={moment}")
    assert first["id"] in [e["id"] for e in changed["items"]]
    later = datetime.fromisoformat(r.json()["updated_at"]).isoformat().replace("+00:00", "Z")
    changed = await b.ann_key.api.ok("get", f"{path}?updated_since={later}")
    assert [e["id"] for e in changed["items"]] == [first["id"]]
    # a reversal changes the original too
    reversed_ = await api.ok(
        "post", f"{path}/{first['id']}/reverse", {"reason": "recorded in error"}
    )
    original = await api.ok("get", f"{path}/{first['id']}")
    assert original["reversed_by"] == reversed_["id"]
    assert original["updated_at"] >= reversed_["created_at"]


async def test_a_statements_last_page_says_where_to_resume(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann, bob = await api.member(slug, "Ann"), await api.member(slug, "Bob")
    for minutes in (10, 20):
        await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, minutes))
    statement = f"/v1/timebanks/{slug}/members/{ann['id']}/statement"
    last = await api.ok("get", statement)
    assert last["next_cursor"] is None and last["resume_cursor"]
    assert (await api.ok("get", f"{statement}?cursor={last['resume_cursor']}"))["items"] == []
    await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 30))
    new = await api.ok("get", f"{statement}?cursor={last['resume_cursor']}")
    assert [e["minutes"] for e in new["items"]] == [30]
    # an empty page resumes from where it was asked
    again = await api.ok("get", f"{statement}?cursor={new['resume_cursor']}")
    assert again["items"] == [] and again["resume_cursor"] == new["resume_cursor"]
