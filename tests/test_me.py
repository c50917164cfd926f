"""``GET /v1/me``: a key (or a console session) learns who it is — its role, its time banks
and, for a member key, its member and account — so a partner app needs no other id."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api
from tests.test_console import Clock, make_user, sign_in
from tests.test_errors import assert_problem
from timebank.access import Role


async def test_a_member_key_learns_its_member_account_and_bank(api: Api) -> None:
    tb = await api.timebank()
    alex = await api.member(tb["slug"], "Alex")
    created = await api.ok(
        "post", f"/v1/timebanks/{tb['slug']}/api-keys", {"role": "member", "member_id": alex["id"]}
    )
    me = await api.as_key(created["secret"]).ok("get", "/v1/me")
    assert me == {
        "type": "key",
        "id": created["id"],
        "role": "member",
        "global_admin": False,
        "timebanks": [tb["slug"]],
        "member_id": alex["id"],
        "account_id": alex["account_id"],
    }
    # with those ids the member's own paths answer
    await api.as_key(created["secret"]).ok(
        "get", f"/v1/timebanks/{tb['slug']}/members/{me['member_id']}/balance"
    )


async def test_staff_funder_and_global_keys_say_their_scope_and_no_member(api: Api) -> None:
    one, two = await api.timebank(), await api.timebank()
    broker = await api.key(one["slug"], "broker")
    me = await api.as_key(broker).ok("get", "/v1/me")
    assert (me["role"], me["timebanks"], me["global_admin"]) == ("broker", [one["slug"]], False)
    assert "member_id" not in me and "account_id" not in me  # absent, not null
    funder = await api.ok(
        "post", "/v1/api-keys", {"role": "funder", "timebanks": [two["slug"], one["slug"]]}
    )
    me = await api.as_key(funder["secret"]).ok("get", "/v1/me")
    assert (me["role"], me["timebanks"]) == ("funder", sorted([one["slug"], two["slug"]]))
    me = await api.ok("get", "/v1/me")
    assert (me["role"], me["global_admin"], me["timebanks"]) == ("admin", True, [])


async def test_without_a_key_it_is_401(client: AsyncTestClient[Any]) -> None:
    assert_problem(await client.get("/v1/me"), 401, "unauthorized")
    assert_problem(
        await client.get("/v1/me", headers={"Authorization": "Bearer tbk_nope"}),
        401,
        "unauthorized",
    )


async def test_a_console_session_may_ask_too(
    client: AsyncTestClient[Any],
    admin_secret: str,
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    api = Api(client, admin_secret)
    tb = await api.timebank()
    clock = Clock()
    await make_user(session_maker, "broker@example.org", Role.broker, [tb["id"]], clock)
    client.app.state.clock = clock
    assert (await sign_in(client, "broker@example.org")).status_code == 303
    r = await client.get("/console/me.json")
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["type"], me["role"], me["timebanks"]) == ("user", "broker", [tb["slug"]])
    cookie = client.cookies["timebank_session"]
    client.cookies.clear()
    r = await client.get("/v1/me", headers={"Cookie": f"timebank_session={cookie}"})
    assert r.status_code == 200 and r.json()["type"] == "user", r.text
