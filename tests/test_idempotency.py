"""Idempotency-Key on every creating POST (SPEC §3, Idempotency): replay of 2xx only,
byte-identical, scoped to the API key, fingerprinting method, path and canonical body."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Api, simple
from timebank.idempotency import Claim

REPLAYED = "Idempotent-Replayed"


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def count(api: Api, path: str) -> int:
    body = await api.ok("get", f"{path}?limit=500" if "?" not in path else f"{path}&limit=500")
    assert body["next_cursor"] is None
    return len(body["items"])


async def bank_with_two_members(
    api: Api, **settings: Any
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    tb = await api.timebank(**settings)
    slug = tb["slug"]
    return slug, await api.member(slug, "Ann"), await api.member(slug, "Bob")


async def test_replay_returns_same_status_and_byte_identical_body_with_replayed_header(
    api: Api,
) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    body = simple(ann, bob, 75, description="Gardening")

    first = await api.exchange(slug, body, headers=key("sheet-1"))
    second = await api.exchange(slug, body, headers=key("sheet-1"))

    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert second.status_code == first.status_code
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert second.headers["content-type"].startswith("application/json")
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 1
    assert await api.balance(slug, bob["id"]) == -75


async def test_replay_returns_stored_response_even_after_the_resource_changed(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    path = f"/v1/timebanks/{slug}/members"
    first = await api.post(path, json={"display_name": "Ann"}, headers=key("new-ann"))
    assert first.status_code == 201, first.text
    await api.ok("patch", f"{path}/{first.json()['id']}", {"display_name": "Annie"})

    again = await api.post(path, json={"display_name": "Ann"}, headers=key("new-ann"))

    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.json()["display_name"] == "Ann"


async def test_same_body_with_other_key_order_and_whitespace_is_a_replay(api: Api) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    body = simple(ann, bob, 30)
    compact = json.dumps(body, separators=(",", ":"))
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    headers = {**key("canonical"), "Content-Type": "application/json"}

    first = await api.post(f"/v1/timebanks/{slug}/exchanges", content=compact, headers=headers)
    second = await api.post(f"/v1/timebanks/{slug}/exchanges", content=reordered, headers=headers)

    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 1


async def test_request_refused_by_limit_is_not_stored_and_same_key_succeeds_after_limit_raised(
    api: Api,
) -> None:
    slug, ann, bob = await bank_with_two_members(api)  # member minimum -600
    body = simple(ann, bob, 700)

    refused = await api.exchange(slug, body, headers=key("late-sheet"))
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "balance_limit_exceeded"
    assert REPLAYED not in refused.headers
    assert await api.balance(slug, bob["id"]) == 0

    await api.ok(
        "patch",
        f"/v1/timebanks/{slug}/accounts/{bob['account_id']}",
        {"min_balance_minutes": -1000},
        status=200,
    )
    retried = await api.exchange(slug, body, headers=key("late-sheet"))

    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert await api.balance(slug, bob["id"]) == -700
    assert await api.balance(slug, ann["id"]) == 700
    replay = await api.exchange(slug, body, headers=key("late-sheet"))
    assert replay.status_code == 201
    assert replay.headers[REPLAYED] == "true"
    assert replay.content == retried.content
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 1


async def test_validation_refusal_is_not_stored_and_same_key_succeeds_once_category_exists(
    api: Api,
) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    body = simple(ann, bob, 60, category="bike-repair")

    refused = await api.exchange(slug, body, headers=key("bikes"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "validation_error"

    await api.ok(
        "post", f"/v1/timebanks/{slug}/categories", {"slug": "bike-repair", "name": "Bikes"}
    )
    retried = await api.exchange(slug, body, headers=key("bikes"))

    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert retried.json()["category"] == "bike-repair"


async def test_server_error_is_not_stored_and_same_key_retry_records_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    # the group form: recorded in process on both engines, so a crash can come between the
    # effect and the commit (PostgreSQL records the simple form in one statement)
    body = {
        "providers": [{"party": {"member_id": ann["id"]}, "minutes": 50}],
        "recipients": [{"party": {"member_id": bob["id"]}, "minutes": 50}],
        "category": "transport",
    }
    real = Claim.settle
    calls = 0

    async def fails_after_the_effect(self: Claim, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the postings are written, the commit not yet made
            raise RuntimeError("crash after the postings were written")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(Claim, "settle", fails_after_the_effect)

    crashed = await api.exchange(slug, body, headers=key("flaky"))
    assert crashed.status_code == 500, crashed.text
    assert await api.balance(slug, bob["id"]) == 0
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 0

    retried = await api.exchange(slug, body, headers=key("flaky"))

    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert await api.balance(slug, bob["id"]) == -50
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 1


async def test_same_key_with_different_body_is_refused_as_reused_without_effect(api: Api) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    first = await api.exchange(slug, simple(ann, bob, 60), headers=key("line-9"))
    assert first.status_code == 201, first.text

    other = await api.exchange(slug, simple(ann, bob, 90), headers=key("line-9"))

    assert other.status_code == 422, other.text
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["code"] == "idempotency_key_reused"
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 1
    assert await api.balance(slug, bob["id"]) == -60


async def test_same_key_on_a_different_endpoint_is_refused_as_reused(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    member = await api.post(
        f"/v1/timebanks/{slug}/members", json={"display_name": "Ann"}, headers=key("shared")
    )
    assert member.status_code == 201, member.text

    org = await api.post(
        f"/v1/timebanks/{slug}/organisations",
        json={"name": "Food Bank", "kind": "charity"},
        headers=key("shared"),
    )

    assert org.status_code == 422, org.text
    assert org.json()["code"] == "idempotency_key_reused"
    assert await count(api, f"/v1/timebanks/{slug}/organisations") == 0


async def test_idempotency_keys_are_scoped_per_api_key(api: Api) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    other_secret = (await api.ok("post", f"/v1/timebanks/{slug}/api-keys", {"role": "broker"}))[
        "secret"
    ]
    other = api.as_key(other_secret)
    body = simple(ann, bob, 40)

    mine = await api.exchange(slug, body, headers=key("same-key"))
    theirs = await other.exchange(slug, body, headers=key("same-key"))

    assert mine.status_code == theirs.status_code == 201, (mine.text, theirs.text)
    assert REPLAYED not in mine.headers
    assert REPLAYED not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 2
    assert await api.balance(slug, bob["id"]) == -80
    # each key replays its own result
    mine_again = await api.exchange(slug, body, headers=key("same-key"))
    theirs_again = await other.exchange(slug, body, headers=key("same-key"))
    assert mine_again.content == mine.content
    assert theirs_again.content == theirs.content
    # and a different body under the other key's record is still "reused" for that key only
    reused = await other.exchange(slug, simple(ann, bob, 41), headers=key("same-key"))
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


# --- every creating POST ------------------------------------------------------------------

Setup = Callable[[Api], Awaitable[tuple[str, Any, str]]]


async def _timebank(api: Api) -> tuple[str, Any, str]:
    return "/v1/timebanks", {"slug": "idem-bank", "name": "Idem"}, "/v1/timebanks"


async def _member(api: Api) -> tuple[str, Any, str]:
    slug = (await api.timebank())["slug"]
    path = f"/v1/timebanks/{slug}/members"
    return path, {"display_name": "Ann", "email": "ann@example.org"}, path


async def _organisation(api: Api) -> tuple[str, Any, str]:
    slug = (await api.timebank())["slug"]
    path = f"/v1/timebanks/{slug}/organisations"
    return path, {"name": "Food Bank", "kind": "charity"}, path


async def _exchange(api: Api) -> tuple[str, Any, str]:
    slug, ann, bob = await bank_with_two_members(api)
    path = f"/v1/timebanks/{slug}/exchanges"
    return path, simple(ann, bob, 120), path


async def _reverse(api: Api) -> tuple[str, Any, str]:
    slug, ann, bob = await bank_with_two_members(api)
    ex = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", simple(ann, bob, 120))
    return (
        f"/v1/timebanks/{slug}/exchanges/{ex['id']}/reverse",
        {"reason": "wrong person"},
        f"/v1/timebanks/{slug}/exchanges?kind=reversal",
    )


async def _category(api: Api) -> tuple[str, Any, str]:
    slug = (await api.timebank())["slug"]
    path = f"/v1/timebanks/{slug}/categories"
    return path, {"slug": "bike-repair", "name": "Bike repair"}, path


async def _api_key(api: Api) -> tuple[str, Any, str]:
    slug = (await api.timebank())["slug"]
    path = f"/v1/timebanks/{slug}/api-keys"
    return path, {"role": "broker", "label": "console"}, path


CREATES: dict[str, Setup] = {
    "timebank": _timebank,
    "member": _member,
    "organisation": _organisation,
    "exchange": _exchange,
    "reverse": _reverse,
    "category": _category,
    "api_key": _api_key,
}


@pytest.mark.parametrize("what", list(CREATES))
async def test_creating_post_twice_with_one_key_creates_once_and_replays(
    api: Api, what: str
) -> None:
    path, body, listing = await CREATES[what](api)
    before = await count(api, listing)

    first = await api.post(path, json=body, headers=key(f"create-{what}"))
    second = await api.post(path, json=body, headers=key(f"create-{what}"))

    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert second.status_code == 201, second.text
    assert second.headers[REPLAYED] == "true"
    if what == "api_key":
        # A secret is shown once: the stored copy, and so the replay, leaves it out.
        assert "secret" in first.json()
        assert second.json() == {k: v for k, v in first.json().items() if k != "secret"}
    else:
        assert second.content == first.content
    assert await count(api, listing) == before + 1


async def test_batch_with_one_key_records_once_and_replays(api: Api) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    body = {"exchanges": [simple(ann, bob, 10), simple(bob, ann, 25)], "atomic": True}

    first = await api.post(f"/v1/timebanks/{slug}/exchanges/batch", json=body, headers=key("b1"))
    second = await api.post(f"/v1/timebanks/{slug}/exchanges/batch", json=body, headers=key("b1"))

    assert first.status_code == 200, first.text
    assert [r["status"] for r in first.json()["results"]] == [201, 201]
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 2
    assert await api.balance(slug, ann["id"]) == -15


# --- the key itself -------------------------------------------------------------------------


async def test_idempotency_key_of_255_characters_is_accepted(api: Api) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    r = await api.exchange(slug, simple(ann, bob, 5), headers=key("k" * 255))
    assert r.status_code == 201, r.text
    again = await api.exchange(slug, simple(ann, bob, 5), headers=key("k" * 255))
    assert again.headers[REPLAYED] == "true"


async def test_idempotency_key_longer_than_255_characters_is_refused_without_effect(
    api: Api,
) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    r = await api.exchange(slug, simple(ann, bob, 5), headers=key("k" * 256))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 0


async def test_empty_idempotency_key_is_refused_without_effect(api: Api) -> None:
    slug, ann, bob = await bank_with_two_members(api)
    r = await api.exchange(slug, simple(ann, bob, 5), headers=key(""))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert await count(api, f"/v1/timebanks/{slug}/exchanges") == 0
