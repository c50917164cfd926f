"""The role matrix of SPEC §4, walked for every role on both engines.

One set-up (``world``) builds two time banks, A and B, alike: members Ann, Bob and Cat with
distinctive personal data, an organisation, recorded exchanges, pending proposals, and keys
of every role. ``MATRIX`` has one row per action and one column per role; a cell is the
status (or statuses) the SPEC requires. Allowed → 2xx; forbidden → 403, or 403/404 where the
SPEC allows hiding another member's resources (§3 Auth); a time bank outside the key's scope
is 404, exactly as an unknown one (§7.1).

Each role's test walks every row with that role's key and reports all mismatches at once.
Actions that change something prepare their own fresh target (a new member, a new
proposal…) with the global admin key, so the rows of one walk do not depend on each other;
the two that change the key-holder herself (status, erasure) come last.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, party, simple
from timebank.audit.models import AuditEvent
from timebank.ledger.models import Exchange
from timebank.members.models import Member
from timebank.timebanks.models import TimeBank

# --- the world ----------------------------------------------------------------------------

PERSONAL_FIELDS = ("email", "phone", "postcode", "birth_year", "gender", "disability", "ethnicity")
# The key-holder (Ann of bank A) has values nobody else has, so finding anyone else's
# enum or year value anywhere in a response is a leak.
KEY_HOLDER_DEMOGRAPHICS = {
    "birth_year": 1990,
    "gender": "female",
    "disability": "no",
    "ethnicity": "white",
}
OTHER_DEMOGRAPHICS = [
    {"birth_year": 1931, "gender": "male", "disability": "yes", "ethnicity": "black"},
    {"birth_year": 1942, "gender": "non_binary", "disability": "yes", "ethnicity": "asian"},
    {
        "birth_year": 1953,
        "gender": "other",
        "disability": "prefer_not_to_say",
        "ethnicity": "mixed",
    },
]


def personal_data(bank: str, name: str, n: int, key_holder: bool) -> dict[str, Any]:
    tag = f"{bank}-{name}".lower()
    demo = KEY_HOLDER_DEMOGRAPHICS if key_holder else OTHER_DEMOGRAPHICS[n % 3]
    return {
        "email": f"secret-email-{tag}-xyz@example.org",
        "phone": f"+44 7700 9{n:05d}",
        "postcode": f"ZQ{n} 9XY",
        "locality": f"Locality {name}",
        "statistics_consent": True,
        **demo,
    }


@dataclass
class Bank:
    slug: str
    pool_account_id: str
    ann: dict[str, Any]  # holds the "member" key of the matrix (in bank A)
    bob: dict[str, Any]
    cat: dict[str, Any]
    org: dict[str, Any]
    recorded: dict[str, Any]  # Bob → Ann, recorded
    recorded_other: dict[str, Any]  # Bob → Cat, recorded: Ann is not a party
    pending_to_ann: dict[str, Any]  # proposed by Bob; Ann is the counterparty
    pending_by_ann: dict[str, Any]  # proposed by Ann; Bob is the counterparty
    keys: dict[str, str]  # "admin", "broker", "funder", "ann", "bob" → secret
    key_ids: dict[str, str]

    def path(self, rest: str = "") -> str:
        return f"/v1/timebanks/{self.slug}{rest}"


@dataclass
class World:
    root: Api  # the global admin
    a: Bank
    b: Bank
    multi_funder: str  # a funder key over A and B, made by POST /v1/api-keys
    multi_funder_id: str
    people: dict[str, dict[str, Any]]  # member id → the personal data it was created with

    def as_key(self, secret: str) -> Api:
        return self.root.as_key(secret)

    async def fresh_member(self, k: Bank, name: str = "Fresh") -> dict[str, Any]:
        return await self.root.member(k.slug, name)

    async def fresh_key(self, k: Bank, role: str, **fields: Any) -> tuple[str, str]:
        body = await self.root.ok("post", k.path("/api-keys"), {"role": role, **fields})
        return str(body["id"]), str(body["secret"])

    async def record(self, k: Bank, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self.root.ok("post", k.path("/exchanges"), body)
        assert out["status"] == "recorded"
        return out

    async def propose(self, k: Bank, proposer: str, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self.as_key(k.keys[proposer]).ok(
            "post", k.path("/exchanges"), body
        )
        assert out["status"] == "pending"
        return out


async def build_bank(root: Api, slug: str, first: int, people: dict[str, Any]) -> Bank:
    tb = await root.timebank(slug)
    members = {}
    for i, name in enumerate(("Ann", "Bob", "Cat")):
        data = personal_data(slug, name, first + i, key_holder=(slug == "bank-a" and i == 0))
        members[name] = await root.member(slug, f"{name} {slug}", **data)
        people[members[name]["id"]] = data
    ann, bob, cat = members["Ann"], members["Bob"], members["Cat"]
    org = await root.organisation(slug, f"Food Bank {slug}")
    keys: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    for name, role, extra in (
        ("admin", "admin", {}),
        ("broker", "broker", {}),
        ("funder", "funder", {}),
        ("ann", "member", {"member_id": ann["id"]}),
        ("bob", "member", {"member_id": bob["id"]}),
    ):
        body = await root.ok("post", f"/v1/timebanks/{slug}/api-keys", {"role": role, **extra})
        keys[name], key_ids[name] = body["secret"], body["id"]
    path = f"/v1/timebanks/{slug}/exchanges"
    recorded = await root.ok("post", path, simple(bob, ann, 60))
    recorded_other = await root.ok("post", path, simple(bob, cat, 45))
    pending_to_ann = await root.as_key(keys["bob"]).ok("post", path, simple(bob, ann, 30))
    pending_by_ann = await root.as_key(keys["ann"]).ok("post", path, simple(ann, bob, 20))
    assert pending_to_ann["status"] == pending_by_ann["status"] == "pending"
    return Bank(
        slug=slug,
        pool_account_id=tb["pool_account_id"],
        ann=ann,
        bob=bob,
        cat=cat,
        org=org,
        recorded=recorded,
        recorded_other=recorded_other,
        pending_to_ann=pending_to_ann,
        pending_by_ann=pending_by_ann,
        keys=keys,
        key_ids=key_ids,
    )


@pytest.fixture
async def world(api: Api) -> World:
    people: dict[str, dict[str, Any]] = {}
    a = await build_bank(api, "bank-a", 11, people)
    b = await build_bank(api, "bank-b", 21, people)
    multi = await api.ok("post", "/v1/api-keys", {"role": "funder", "timebanks": [a.slug, b.slug]})
    return World(api, a, b, multi["secret"], multi["id"], people)


ROLES: dict[str, Callable[[World], str]] = {
    "global admin": lambda w: w.root.secret,
    "time-bank admin": lambda w: w.a.keys["admin"],
    "broker": lambda w: w.a.keys["broker"],
    "member": lambda w: w.a.keys["ann"],  # acting for Ann
    "funder": lambda w: w.a.keys["funder"],  # single bank: A
    "multi-bank funder": lambda w: w.multi_funder,  # A and B
    "other-bank admin": lambda w: w.b.keys["admin"],  # scoped to B, acting in A
}


# --- requests and actions -----------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    json: Any = None
    params: list[tuple[str, str]] | None = None


MakeReq = Callable[[World, Bank], Req | Awaitable[Req]]


@dataclass(frozen=True)
class Action:
    name: str
    make: MakeReq
    in_bank: bool = True  # acts inside the given time bank (so other banks' keys are refused)


async def send(api: Api, req: Req) -> Any:
    kw: dict[str, Any] = {"params": req.params} if req.params else {}
    if req.method in ("get", "delete"):
        return await getattr(api, req.method)(req.path, **kw)
    return await getattr(api, req.method)(req.path, json=req.json, **kw)


async def build(action: Action, w: World, k: Bank) -> Req:
    made = action.make(w, k)
    if inspect.isawaitable(made):
        made = await made
    assert isinstance(made, Req)
    return made


def slug() -> str:
    return f"tb-{uuid.uuid4().hex[:10]}"


def get(rest: str, *params: tuple[str, str]) -> MakeReq:
    """A GET in the bank; ``{k.bob[id]}`` in the path or a parameter names a world object."""
    return lambda w, k: Req(
        "get",
        k.path(rest.format(k=k)),
        params=[(name, value.format(k=k)) for name, value in params] or None,
    )


def patch_member(who: str, body: dict[str, Any]) -> MakeReq:
    return lambda w, k: Req("patch", k.path(f"/members/{getattr(k, who)['id']}"), body)


# Actions that need a fresh target of their own.


async def erase_fresh_member(w: World, k: Bank) -> Req:
    m = await w.fresh_member(k)
    return Req("post", k.path(f"/members/{m['id']}/erase"))


async def suspend_fresh_member(w: World, k: Bank) -> Req:
    m = await w.fresh_member(k)
    return Req("patch", k.path(f"/members/{m['id']}"), {"status": "suspended"})


async def override_limits(w: World, k: Bank) -> Req:
    """Ann gives 700 minutes to a member whose own limit is 0: only an override passes."""
    m = await w.fresh_member(k, "Limited")
    await w.root.ok("patch", k.path(f"/accounts/{m['account_id']}"), {"min_balance_minutes": 0})
    body = simple(k.ann, m, 700, override_limits=True, override_reason="paper sheet, agreed")
    return Req("post", k.path("/exchanges"), body)


async def reverse_fresh_exchange(w: World, k: Bank) -> Req:
    ex = await w.record(k, simple(k.bob, k.ann, 15))
    return Req("post", k.path(f"/exchanges/{ex['id']}/reverse"), {"reason": "typed twice"})


def decide(decision: str, proposer: str, provider: str, recipient: str) -> MakeReq:
    """``decision`` on a fresh proposal by ``proposer`` between two parties of the bank."""

    async def make(w: World, k: Bank) -> Req:
        ex = await w.propose(k, proposer, simple(getattr(k, provider), getattr(k, recipient), 10))
        return Req("post", k.path(f"/exchanges/{ex['id']}/{decision}"), {})

    return make


async def revoke_fresh_member_key(w: World, k: Bank) -> Req:
    key_id, _ = await w.fresh_key(k, "member", member_id=k.cat["id"])
    return Req("delete", k.path(f"/api-keys/{key_id}"))


async def revoke_fresh_broker_key(w: World, k: Bank) -> Req:
    key_id, _ = await w.fresh_key(k, "broker")
    return Req("delete", k.path(f"/api-keys/{key_id}"))


def both_banks(w: World) -> list[tuple[str, str]]:
    return [("timebank", w.a.slug), ("timebank", w.b.slug)]


CREATE_TIMEBANK = Action(
    "create a time bank",
    lambda w, k: Req("post", "/v1/timebanks", {"slug": slug(), "name": "New"}),
    in_bank=False,
)
CREATE_GLOBAL_ADMIN_KEY = Action(
    "create a global admin key",
    lambda w, k: Req("post", "/v1/api-keys", {"role": "admin"}),
    in_bank=False,
)
CREATE_MULTI_FUNDER_KEY = Action(
    "create a funder key over both banks",
    lambda w, k: Req("post", "/v1/api-keys", {"role": "funder", "timebanks": [w.a.slug, w.b.slug]}),
    in_bank=False,
)
LIST_TIMEBANKS = Action("list time banks", lambda w, k: Req("get", "/v1/timebanks"), False)
READ_TIMEBANK = Action("read the time bank", get(""))
EDIT_TIMEBANK = Action(
    "change the time bank's settings",
    lambda w, k: Req(
        "patch", k.path(), {"name": "Renamed", "settings": {"pending_expiry_days": 20}}
    ),
)
LIST_CATEGORIES = Action("list categories", get("/categories"))
ADD_CATEGORY = Action(
    "add a category",
    lambda w, k: Req("post", k.path("/categories"), {"slug": slug(), "name": "Dog walking"}),
)

REGISTER_MEMBER = Action(
    "register a member",
    lambda w, k: Req("post", k.path("/members"), {"display_name": "Dee", "email": "d@example.org"}),
)
LIST_MEMBERS = Action("list members", get("/members"))
EDIT_OTHER_MEMBER = Action(
    "edit another member's display name", patch_member("bob", {"display_name": "Robert"})
)
EDIT_OTHER_CONTACT = Action(
    "edit another member's email", patch_member("bob", {"email": "bob.new@example.org"})
)
SUSPEND_MEMBER = Action("suspend another member", suspend_fresh_member)
ERASE_MEMBER = Action("erase another member", erase_fresh_member)
REGISTER_ORG = Action(
    "register an organisation",
    lambda w, k: Req(
        "post", k.path("/organisations"), {"name": "Choir", "kind": "community_group"}
    ),
)
EDIT_ORG = Action(
    "edit an organisation",
    lambda w, k: Req("patch", k.path(f"/organisations/{k.org['id']}"), {"locality": "Leith"}),
)
LIST_ORGS = Action("list organisations", get("/organisations"))
READ_ORG = Action("read an organisation", get("/organisations/{k.org[id]}"))
ORG_BALANCE = Action("read an organisation's balance", get("/organisations/{k.org[id]}/balance"))
ORG_STATEMENT = Action(
    "read an organisation's statement", get("/organisations/{k.org[id]}/statement")
)
READ_ACCOUNT = Action("read another member's account", get("/accounts/{k.bob[account_id]}"))
SET_LIMITS = Action(
    "set another member's account limits",
    lambda w, k: Req(
        "patch", k.path(f"/accounts/{k.bob['account_id']}"), {"min_balance_minutes": -900}
    ),
)
SET_OWN_LIMITS = Action(
    "set the member's own account limits",
    lambda w, k: Req(
        "patch", k.path(f"/accounts/{k.ann['account_id']}"), {"min_balance_minutes": -6000}
    ),
)

READ_OWN_PROFILE = Action("read own profile", get("/members/{k.ann[id]}"))
EDIT_OWN_EMAIL = Action("edit own email", patch_member("ann", {"email": "ann.new@example.org"}))
EDIT_OWN_PHONE = Action("edit own phone", patch_member("ann", {"phone": "+44 131 000 0000"}))
EDIT_OWN_LOCALITY = Action("edit own locality", patch_member("ann", {"locality": "Portobello"}))
EDIT_OWN_POSTCODE = Action("edit own postcode", patch_member("ann", {"postcode": "EH15 1AA"}))
EDIT_OWN_CONTACT = Action(
    "edit all own contact fields at once",
    patch_member(
        "ann",
        {"email": "a@example.org", "phone": "0131", "locality": "Leith", "postcode": "EH6 6AA"},
    ),
)
EDIT_OWN_NAME = Action("edit own display name", patch_member("ann", {"display_name": "Annie"}))
EDIT_OWN_BIRTH_YEAR = Action("edit own birth year", patch_member("ann", {"birth_year": 1991}))
EDIT_OWN_GENDER = Action("edit own gender", patch_member("ann", {"gender": "prefer_not_to_say"}))
EDIT_OWN_DISABILITY = Action(
    "edit own disability", patch_member("ann", {"disability": "prefer_not_to_say"})
)
EDIT_OWN_ETHNICITY = Action(
    "edit own ethnicity", patch_member("ann", {"ethnicity": "prefer_not_to_say"})
)
EDIT_OWN_CONTACT_AND_NAME = Action(
    "edit own email together with display name",
    patch_member("ann", {"email": "b@example.org", "display_name": "Annie"}),
)
CHANGE_OWN_STATUS = Action("change own status", patch_member("ann", {"status": "suspended"}))
ERASE_SELF = Action(
    "erase the member's own record",
    lambda w, k: Req("post", k.path(f"/members/{k.ann['id']}/erase")),
)

DIRECTORY = Action("read the directory", get("/directory"))
OTHER_PROFILE = Action("read another member's personal data", get("/members/{k.bob[id]}"))
OTHER_BALANCE = Action("read another member's balance", get("/members/{k.bob[id]}/balance"))
OTHER_STATEMENT = Action("read another member's statement", get("/members/{k.bob[id]}/statement"))
OTHER_STATEMENT_CSV = Action(
    "read another member's statement as CSV",
    get("/members/{k.bob[id]}/statement", ("format", "csv")),
)
OWN_BALANCE = Action("read own balance", get("/members/{k.ann[id]}/balance"))
OWN_STATEMENT = Action("read own statement", get("/members/{k.ann[id]}/statement"))
OWN_STATEMENT_CSV = Action(
    "read own statement as CSV", get("/members/{k.ann[id]}/statement", ("format", "csv"))
)

RECORD_AS_PARTY = Action(
    "record an exchange the member is a party to",
    lambda w, k: Req("post", k.path("/exchanges"), simple(k.ann, k.bob, 20)),
)
RECORD_WITH_POOL = Action(
    "record a pool grant to the member",
    lambda w, k: Req(
        "post",
        k.path("/exchanges"),
        {
            "provider": party(k.ann),
            "recipient": {"account_id": k.pool_account_id},
            "minutes": 30,
        },
    ),
)
RECORD_OTHERS = Action(
    "record an exchange between two other members",
    lambda w, k: Req("post", k.path("/exchanges"), simple(k.bob, k.cat, 10)),
)
RECORD_GROUP = Action(
    "record a group exchange the member is a party to",
    lambda w, k: Req(
        "post",
        k.path("/exchanges"),
        {
            "providers": [
                {"party": party(k.ann), "minutes": 20},
                {"party": party(k.bob), "minutes": 20},
            ],
            "recipients": [{"party": party(k.org), "minutes": 40}],
            "category": "community-events",
        },
    ),
)
OVERRIDE_LIMITS = Action("record an exchange overriding limits", override_limits)
BATCH = Action(
    "record a batch of exchanges",
    lambda w, k: Req("post", k.path("/exchanges/batch"), {"exchanges": [simple(k.bob, k.cat, 5)]}),
)
LIST_EXCHANGES = Action("list exchanges", get("/exchanges"))
LIST_OTHERS_EXCHANGES = Action(
    "list another member's exchanges", get("/exchanges", ("member_id", "{k.bob[id]}"))
)
AWAITING_ME = Action("list proposals awaiting the member", get("/exchanges", ("awaiting", "me")))
READ_OWN_EXCHANGE = Action(
    "read an exchange the member is a party to", get("/exchanges/{k.recorded[id]}")
)
READ_OTHERS_EXCHANGE = Action(
    "read an exchange between other members", get("/exchanges/{k.recorded_other[id]}")
)
CONFIRM_TO_ME = Action(
    "confirm a proposal made to the member", decide("confirm", "bob", "bob", "ann")
)
REJECT_TO_ME = Action("reject a proposal made to the member", decide("reject", "bob", "bob", "ann"))
CONFIRM_OWN = Action("confirm own proposal", decide("confirm", "ann", "ann", "bob"))
REJECT_OWN = Action("reject own proposal", decide("reject", "ann", "ann", "bob"))
CONFIRM_OTHERS = Action(
    "confirm a proposal between other members", decide("confirm", "bob", "bob", "cat")
)
REJECT_OTHERS = Action(
    "reject a proposal between other members", decide("reject", "bob", "bob", "cat")
)
CONFIRM_TO_ORG = Action(
    "confirm own proposal to an organisation", decide("confirm", "ann", "ann", "org")
)
CANCEL_OWN = Action("cancel own proposal", decide("cancel", "ann", "ann", "bob"))
CANCEL_TO_ME = Action("cancel a proposal made to the member", decide("cancel", "bob", "bob", "ann"))
CANCEL_OTHERS = Action(
    "cancel a proposal between other members", decide("cancel", "bob", "bob", "cat")
)
REVERSE = Action("reverse an exchange", reverse_fresh_exchange)

REPORT = Action("summary report of the bank", get("/reports/summary"))
REPORT_OWN_CROSS = Action(
    "cross-bank summary report of this bank only",
    lambda w, k: Req("get", "/v1/reports/summary", params=[("timebank", k.slug)]),
)
REPORT_OTHER_BANK = Action(
    "summary report of bank B",
    lambda w, k: Req("get", w.b.path("/reports/summary")),
    in_bank=False,
)
REPORT_BOTH = Action(
    "cross-bank summary report of A and B",
    lambda w, k: Req("get", "/v1/reports/summary", params=both_banks(w)),
    in_bank=False,
)

CREATE_MEMBER_KEY = Action(
    "create a member key",
    lambda w, k: Req("post", k.path("/api-keys"), {"role": "member", "member_id": k.cat["id"]}),
)
CREATE_BROKER_KEY = Action(
    "create a broker key", lambda w, k: Req("post", k.path("/api-keys"), {"role": "broker"})
)
CREATE_ADMIN_KEY = Action(
    "create an admin key for the bank",
    lambda w, k: Req("post", k.path("/api-keys"), {"role": "admin"}),
)
CREATE_FUNDER_KEY = Action(
    "create a funder key for the bank",
    lambda w, k: Req("post", k.path("/api-keys"), {"role": "funder"}),
)
LIST_KEYS = Action("list api keys", get("/api-keys"))
REVOKE_MEMBER_KEY = Action("revoke a member key", revoke_fresh_member_key)
REVOKE_BROKER_KEY = Action("revoke a broker key", revoke_fresh_broker_key)
AUDIT_EVENTS = Action("list audit events", get("/audit-events"))


# --- expectations -------------------------------------------------------------------------

Check = Callable[[World, Bank, Any], None]


@dataclass(frozen=True)
class Expect:
    statuses: frozenset[int]
    check: Check | None = None

    @property
    def allowed(self) -> bool:
        return all(200 <= s < 300 for s in self.statuses)


def ok(check: Check | None = None) -> Expect:
    return Expect(frozenset({200}), check)


def created(check: Check | None = None) -> Expect:
    return Expect(frozenset({201}), check)


OK, CREATED = ok(), created()
NO = Expect(frozenset({403}))  # forbidden
HIDDEN = Expect(frozenset({403, 404}))  # someone else's resource
OUT = Expect(frozenset({404}))  # a time bank outside the key's scope: as if unknown (§7.1)
NA = None  # not applicable to this role


def field_is(name: str, value: Any) -> Check:
    def check(w: World, k: Bank, r: Any) -> None:
        assert r.json()[name] == value, f"{name} should be {value!r}: {r.text}"

    return check


def staff_recorded(w: World, k: Bank, r: Any) -> None:
    body = r.json()
    assert body["status"] == "recorded" and body["postings"], r.text


def member_pending(w: World, k: Bank, r: Any) -> None:
    body = r.json()
    assert body["status"] == "pending", r.text
    assert body["postings"] == [], "a pending exchange moves no balance"
    assert body["logged_by"]["role"] == "member"


def batch_recorded(w: World, k: Bank, r: Any) -> None:
    assert [x["status"] for x in r.json()["results"]] == [201], r.text


def override_recorded(w: World, k: Bank, r: Any) -> None:
    staff_recorded(w, k, r)
    assert r.json()["override_reason"] == "paper sheet, agreed"


def directory_has_names_only(w: World, k: Bank, r: Any) -> None:
    items = r.json()["items"]
    assert {i["id"] for i in items} >= {k.ann["id"], k.bob["id"], k.org["id"]}
    for item in items:
        assert set(item) == {"type", "id", "display_name"}, item


def only_member_keys(w: World, k: Bank, r: Any) -> None:
    roles = {i["role"] for i in r.json()["items"]}
    assert roles == {"member"}, f"a broker lists member keys only, got {roles}"
    assert "secret" not in r.text


def own_exchanges_only(w: World, k: Bank, r: Any) -> None:
    ids = {i["id"] for i in r.json()["items"]}
    assert {k.recorded["id"], k.pending_to_ann["id"], k.pending_by_ann["id"]} <= ids
    assert k.recorded_other["id"] not in ids, "lists an exchange Ann is not a party to"


def awaiting_ann(w: World, k: Bank, r: Any) -> None:
    ids = {i["id"] for i in r.json()["items"]}
    assert k.pending_to_ann["id"] in ids
    assert k.pending_by_ann["id"] not in ids, "Ann's own proposal is not awaiting her"


def banks_listed(*which: str) -> Check:
    def check(w: World, k: Bank, r: Any) -> None:
        slugs = {i["slug"] for i in r.json()["items"]}
        if which == ("all",):
            assert {w.a.slug, w.b.slug} <= slugs, slugs
        else:
            want = {getattr(w, x).slug for x in which}
            assert slugs == want, f"lists {slugs}, expected {want}"

    return check


def report_of(*which: str) -> Check:
    def check(w: World, k: Bank, r: Any) -> None:
        body = r.json()
        assert body["report"] == "summary", r.text
        assert body["timebanks"] == [getattr(w, x).slug for x in which], r.text

    return check


def csv_body(w: World, k: Bank, r: Any) -> None:
    assert r.headers["content-type"].startswith("text/csv"), r.headers


# Columns: global admin, time-bank admin, broker, member, funder, multi-bank funder,
# other-bank admin. Rows follow SPEC §4; the last two rows change Ann herself.
C_RECORDED, C_PENDING = created(staff_recorded), created(member_pending)
C_CONFIRMED, C_REJECTED = ok(field_is("status", "recorded")), ok(field_is("status", "rejected"))
C_CANCELLED = ok(field_is("status", "cancelled"))
R_A, R_B, R_AB = ok(report_of("a")), ok(report_of("b")), ok(report_of("a", "b"))
# fmt: off
MATRIX: list[tuple[Any, ...]] = [
    # create time bank / global keys: global admin only
    (CREATE_TIMEBANK, CREATED, NO, NO, NO, NO, NO, NO),
    (CREATE_GLOBAL_ADMIN_KEY, CREATED, NO, NO, NO, NO, NO, NO),
    (CREATE_MULTI_FUNDER_KEY, CREATED, NO, NO, NO, NO, NO, NO),
    (LIST_TIMEBANKS, ok(banks_listed("all")), ok(banks_listed("a")), ok(banks_listed("a")),
     ok(banks_listed("a")), ok(banks_listed("a")), ok(banks_listed("a", "b")),
     ok(banks_listed("b"))),
    (READ_TIMEBANK, OK, OK, OK, OK, OK, OK, OUT),
    (EDIT_TIMEBANK, OK, OK, NO, NO, NO, NO, OUT),
    (LIST_CATEGORIES, OK, OK, OK, OK, NA, NA, OUT),
    (ADD_CATEGORY, CREATED, CREATED, CREATED, NO, NO, NO, OUT),
    # members & organisations: create, edit, erase; account limits
    (REGISTER_MEMBER, CREATED, CREATED, CREATED, NO, NO, NO, OUT),
    (LIST_MEMBERS, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (EDIT_OTHER_MEMBER, OK, OK, OK, NO, NO, NO, OUT),
    (EDIT_OTHER_CONTACT, OK, OK, OK, NO, NO, NO, OUT),
    (SUSPEND_MEMBER, OK, OK, OK, NO, NO, NO, OUT),
    (ERASE_MEMBER, ok(field_is("status", "erased")), OK, OK, NO, NO, NO, OUT),
    (REGISTER_ORG, CREATED, CREATED, CREATED, NO, NO, NO, OUT),
    (EDIT_ORG, OK, OK, OK, NO, NO, NO, OUT),
    (LIST_ORGS, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (READ_ORG, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (ORG_BALANCE, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (ORG_STATEMENT, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (READ_ACCOUNT, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (SET_LIMITS, OK, OK, OK, NO, NO, NO, OUT),
    (SET_OWN_LIMITS, OK, OK, OK, NO, NO, NO, OUT),
    # member: own profile — read, edit contact (email, phone, locality, postcode) only
    (READ_OWN_PROFILE, OK, OK, OK, OK, NO, NO, OUT),
    (EDIT_OWN_EMAIL, OK, OK, OK, ok(field_is("email", "ann.new@example.org")), NO, NO, OUT),
    (EDIT_OWN_PHONE, OK, OK, OK, ok(field_is("phone", "+44 131 000 0000")), NO, NO, OUT),
    (EDIT_OWN_LOCALITY, OK, OK, OK, ok(field_is("locality", "Portobello")), NO, NO, OUT),
    (EDIT_OWN_POSTCODE, OK, OK, OK, ok(field_is("postcode", "EH15 1AA")), NO, NO, OUT),
    (EDIT_OWN_CONTACT, OK, OK, OK, OK, NO, NO, OUT),
    (EDIT_OWN_NAME, OK, OK, OK, NO, NO, NO, OUT),
    (EDIT_OWN_BIRTH_YEAR, OK, OK, OK, NO, NO, NO, OUT),
    (EDIT_OWN_GENDER, OK, OK, OK, NO, NO, NO, OUT),
    (EDIT_OWN_DISABILITY, OK, OK, OK, NO, NO, NO, OUT),
    (EDIT_OWN_ETHNICITY, OK, OK, OK, NO, NO, NO, OUT),
    (EDIT_OWN_CONTACT_AND_NAME, OK, OK, OK, NO, NO, NO, OUT),
    # directory
    (DIRECTORY, ok(directory_has_names_only), OK, OK, ok(directory_has_names_only), NO, NO,
     OUT),
    # another member's personal data, balance, statement
    (OTHER_PROFILE, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (OTHER_BALANCE, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (OTHER_STATEMENT, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (OTHER_STATEMENT_CSV, ok(csv_body), OK, OK, HIDDEN, NO, NO, OUT),
    (OWN_BALANCE, OK, OK, OK, OK, NO, NO, OUT),
    (OWN_STATEMENT, OK, OK, OK, OK, NO, NO, OUT),
    (OWN_STATEMENT_CSV, OK, OK, OK, ok(csv_body), NO, NO, OUT),
    # record exchange: staff record; a member proposes (pending), simple form, as a party
    (RECORD_AS_PARTY, C_RECORDED, C_RECORDED, C_RECORDED, C_PENDING, NO, NO, OUT),
    (RECORD_WITH_POOL, C_RECORDED, C_RECORDED, C_RECORDED, C_PENDING, NO, NO, OUT),
    (RECORD_OTHERS, C_RECORDED, C_RECORDED, C_RECORDED, NO, NO, NO, OUT),
    (RECORD_GROUP, C_RECORDED, C_RECORDED, C_RECORDED, NO, NO, NO, OUT),
    (BATCH, ok(batch_recorded), ok(batch_recorded), ok(batch_recorded), NO, NO, NO, OUT),
    (LIST_EXCHANGES, OK, OK, OK, ok(own_exchanges_only), NO, NO, OUT),
    (LIST_OTHERS_EXCHANGES, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (AWAITING_ME, NA, NA, NA, ok(awaiting_ann), NA, NA, OUT),
    (READ_OWN_EXCHANGE, OK, OK, OK, OK, NO, NO, OUT),
    (READ_OTHERS_EXCHANGE, OK, OK, OK, HIDDEN, NO, NO, OUT),
    # confirm / reject pending: staff, or only the counterparty member
    (CONFIRM_TO_ME, C_CONFIRMED, C_CONFIRMED, C_CONFIRMED, C_CONFIRMED, NO, NO, OUT),
    (REJECT_TO_ME, C_REJECTED, C_REJECTED, C_REJECTED, C_REJECTED, NO, NO, OUT),
    (CONFIRM_OWN, OK, OK, OK, NO, NO, NO, OUT),
    (REJECT_OWN, OK, OK, OK, NO, NO, NO, OUT),
    (CONFIRM_OTHERS, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (REJECT_OTHERS, OK, OK, OK, HIDDEN, NO, NO, OUT),
    (CONFIRM_TO_ORG, OK, OK, OK, NO, NO, NO, OUT),
    # cancel own proposal
    (CANCEL_OWN, C_CANCELLED, C_CANCELLED, C_CANCELLED, C_CANCELLED, NO, NO, OUT),
    (CANCEL_TO_ME, OK, OK, OK, NO, NO, NO, OUT),
    (CANCEL_OTHERS, OK, OK, OK, HIDDEN, NO, NO, OUT),
    # reverse, override limits
    (REVERSE, created(field_is("kind", "reversal")), CREATED, CREATED, NO, NO, NO, OUT),
    (OVERRIDE_LIMITS, created(override_recorded), CREATED, CREATED, NO, NO, NO, OUT),
    # reports: staff and funders of the bank; never members; never another bank's key
    (REPORT, R_A, R_A, R_A, NO, R_A, R_A, OUT),
    (REPORT_OWN_CROSS, R_A, R_A, R_A, NO, R_A, R_A, OUT),
    (REPORT_OTHER_BANK, R_B, OUT, OUT, OUT, OUT, R_B, R_B),
    (REPORT_BOTH, R_AB, OUT, OUT, OUT, OUT, R_AB, OUT),
    # api keys: admin; broker member keys only
    (CREATE_MEMBER_KEY, CREATED, CREATED, CREATED, NO, NO, NO, OUT),
    (CREATE_BROKER_KEY, CREATED, CREATED, NO, NO, NO, NO, OUT),
    (CREATE_ADMIN_KEY, CREATED, CREATED, NO, NO, NO, NO, OUT),
    (CREATE_FUNDER_KEY, CREATED, CREATED, NO, NO, NO, NO, OUT),
    (LIST_KEYS, OK, OK, ok(only_member_keys), NO, NO, NO, OUT),
    (REVOKE_MEMBER_KEY, OK, OK, OK, NO, NO, NO, OUT),
    (REVOKE_BROKER_KEY, OK, OK, NO, NO, NO, NO, OUT),
    # audit events: admin only
    (AUDIT_EVENTS, OK, OK, NO, NO, NO, NO, OUT),
    # last: these change Ann herself (her status; her erasure revokes her key)
    (CHANGE_OWN_STATUS, OK, OK, OK, NO, NO, NO, OUT),
    (ERASE_SELF, OK, OK, OK, NO, NO, NO, OUT),
]
# fmt: on
ACTIONS = [row[0] for row in MATRIX]


def rows_for(role: str) -> list[tuple[Action, Expect]]:
    col = 1 + list(ROLES).index(role)
    return [(row[0], row[col]) for row in MATRIX if row[col] is not None]


PROBLEM_CODES = {403: "forbidden", 404: "not_found"}


async def run_row(w: World, key: Api, role: str, action: Action, k: Bank, e: Expect) -> str | None:
    """Make one request; describe the mismatch, or None."""
    req = await build(action, w, k)
    r = await send(key, req)
    where = f"{role} | {action.name} | {req.method.upper()} {req.path}"
    if r.status_code not in e.statuses:
        return f"{where}: expected {sorted(e.statuses)}, got {r.status_code} {r.text[:300]}"
    code = PROBLEM_CODES.get(r.status_code)
    if code and r.json().get("code") != code:
        return f"{where}: {r.status_code} without code {code!r}: {r.text[:300]}"
    if e.check is not None:
        try:
            e.check(w, k, r)
        except AssertionError as exc:
            return f"{where}: {exc}"
    return None


# --- the matrix ---------------------------------------------------------------------------


def test_matrix_rows_have_one_cell_per_role_and_unique_names() -> None:
    for row in MATRIX:
        assert len(row) == 1 + len(ROLES), row[0].name
    names = [a.name for a in ACTIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("role", list(ROLES))
async def test_role_gets_the_section_4_status_for_every_action(world: World, role: str) -> None:
    key = world.as_key(ROLES[role](world))
    failures = []
    for action, expect in rows_for(role):
        failure = await run_row(world, key, role, action, world.a, expect)
        if failure:
            failures.append(failure)
    assert not failures, f"{len(failures)} cells differ from SPEC §4:\n" + "\n".join(failures)


# --- a key of time bank A can do nothing in time bank B ------------------------------------


@pytest.mark.parametrize("role", ["admin", "broker", "ann", "funder"])
async def test_key_of_bank_a_can_do_nothing_in_bank_b(
    world: World, session_maker: async_sessionmaker[AsyncSession], role: str
) -> None:
    w, b = world, world.b
    key = w.as_key(w.a.keys[role])
    key_id = uuid.UUID(w.a.key_ids[role])
    names_before = await member_names(session_maker, b)
    traces_before = await traces(session_maker, key_id)
    failures = []
    for action in ACTIONS:
        if not action.in_bank:
            continue
        failure = await run_row(w, key, f"bank-a {role}", action, b, OUT)
        if failure:
            failures.append(failure)
    r = await key.get("/v1/timebanks")
    assert r.status_code == 200
    assert b.slug not in {i["slug"] for i in r.json()["items"]}, "lists the other bank"
    r = await key.get("/v1/reports/summary", params=both_banks(w))
    assert r.status_code == 404, r.text
    assert not failures, "\n".join(failures)
    # Nothing (in B or anywhere) was done with this key, and B's people are untouched.
    assert await traces(session_maker, key_id) == traces_before, "the refused key wrote"
    assert await member_names(session_maker, b) == names_before
    async with session_maker() as s:
        tb_name = await s.scalar(select(TimeBank.name).where(TimeBank.slug == b.slug))
    assert tb_name == b.slug.title()


async def traces(maker: async_sessionmaker[AsyncSession], key_id: uuid.UUID) -> tuple[Any, ...]:
    """What a key has written: audit events, and exchanges it logged or decided."""
    async with maker() as s:
        events = await s.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.key_id == key_id)
        )
        exchanges = await s.execute(
            select(Exchange.id, Exchange.status).where(
                or_(Exchange.logged_by_key_id == key_id, Exchange.decided_by == key_id)
            )
        )
        return events, sorted(exchanges.tuples().all())


async def member_names(maker: async_sessionmaker[AsyncSession], k: Bank) -> dict[str, Any]:
    ids = [uuid.UUID(m["id"]) for m in (k.ann, k.bob, k.cat)]
    async with maker() as s:
        rows = await s.execute(
            select(Member.id, Member.display_name, Member.email, Member.status).where(
                Member.id.in_(ids)
            )
        )
        return {str(i): (n, e, st) for i, n, e, st in rows.tuples()}


# --- privacy: members and funders never see another person's personal data ----------------


def leaks(text: str, data: dict[str, Any]) -> list[str]:
    """The personal values of ``data`` that appear in a response body."""
    found = [f for f in ("email", "phone", "postcode") if data[f] in text]
    for f in ("birth_year", "gender", "disability", "ethnicity"):
        value = re.escape(str(data[f]))
        if re.search(rf'"{f}"\s*:\s*"?{value}\b', text):
            found.append(f)
    return found


@pytest.mark.parametrize("role", ["member", "funder", "multi-bank funder"])
async def test_gets_allowed_to_member_and_funder_keys_show_no_other_persons_personal_data(
    world: World, role: str
) -> None:
    w = world
    key = w.as_key(ROLES[role](w))
    me = w.a.ann["id"] if role == "member" else None
    others = {mid: data for mid, data in w.people.items() if mid != me}
    problems, scanned = [], []
    for action, expect in rows_for(role):
        req = await build(action, w, w.a)
        if not expect.allowed or req.method != "get":
            continue
        scanned.append(action.name)
        r = await send(key, req)
        assert r.status_code in expect.statuses, f"{action.name}: {r.status_code} {r.text}"
        for mid, data in others.items():
            found = leaks(r.text, data)
            if found:
                problems.append(f"{action.name} ({req.path}) shows {found} of member {mid}")
    assert len(scanned) >= {"member": 11, "funder": 4}.get(role, 6), scanned
    assert not problems, "\n".join(problems)


async def test_privacy_scan_finds_personal_data_where_staff_may_see_it(world: World) -> None:
    """The scan of the privacy test is not vacuous: on a broker's read of Bob it fires."""
    r = await world.as_key(world.a.keys["broker"]).get(
        world.a.path(f"/members/{world.a.bob['id']}")
    )
    assert r.status_code == 200
    assert leaks(r.text, world.people[world.a.bob["id"]]) == list(PERSONAL_FIELDS)


# --- keys the matrix cannot express --------------------------------------------------------


async def test_global_admin_can_revoke_a_multi_bank_funder_key_through_the_api(
    world: World,
) -> None:
    w = world
    funder = w.as_key(w.multi_funder)
    assert (await funder.get(w.a.path("/reports/summary"))).status_code == 200
    statuses = []
    for path in (f"/v1/api-keys/{w.multi_funder_id}", w.a.path(f"/api-keys/{w.multi_funder_id}")):
        r = await w.root.delete(path)
        statuses.append(r.status_code)
        if r.status_code == 200:
            break
    assert 200 in statuses, f"no API route revokes the key: {statuses}"
    assert (await funder.get(w.a.path("/reports/summary"))).status_code == 401
