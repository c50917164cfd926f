from tests.conftest import Api, simple


async def test_member_volunteers_for_charity_and_balances_move(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann = await api.member(slug, "Ann")
    charity = await api.organisation(slug)
    r = await api.exchange(slug, simple(ann, charity, 180, category="community-events"))
    assert r.status_code == 201, r.text
    ex = r.json()
    assert ex["kind"] == "p2o"
    assert ex["minutes"] == 180
    assert await api.balance(slug, ann["id"]) == 180
