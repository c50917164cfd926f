"""Regression tests for what the schemathesis fuzz (tests/test_fuzz.py) found: each pins one
fix, found as a 500, an undocumented status, content type or header, or a disagreement
between the OpenAPI document and what the API accepts."""

from __future__ import annotations

from typing import Any

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar.testing import AsyncTestClient

from tests.conftest import Api, party, simple
from tests.test_errors import assert_problem, assert_validation
from timebank.app import create_app
from timebank.config import Settings

PROBLEM_JSON = "application/problem+json"


def component(doc: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["schemas"][name]
    return schema


def parameter(doc: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    for p in doc["paths"][path][method].get("parameters", []):
        if p["name"] == name:
            return p  # type: ignore[no-any-return]
    raise AssertionError(f"{method.upper()} {path} has no parameter {name}")


def keyword(schema: dict[str, Any], key: str) -> Any:
    """A keyword of a parameter's schema, at the top (Litestar puts the bounds of an optional
    parameter beside its ``oneOf``, where they constrain the non-null value) or in a branch."""
    for node in [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]:
        if key in node:
            return node[key]
    raise AssertionError(f"no {key} in {schema}")


def branch(schema: dict[str, Any], type_: str) -> dict[str, Any]:
    """The non-null branch of an optional property (``anyOf: [X, null]``), or the schema."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == type_:
            return option  # type: ignore[no-any-return]
    raise AssertionError(f"no {type_} in {schema}")


# --- a 500: a member key deciding a group exchange ---------------------------------------------


async def test_member_key_confirming_a_recorded_group_exchange_gets_409_not_a_500(
    api: Api,
) -> None:
    """Was a 500: the member-key path looked for the proposal's counterparty, and a group
    exchange has no single provider or recipient account."""
    tb = await api.timebank()
    slug = tb["slug"]
    ann, bob, cat = [await api.member(slug, name) for name in ("Ann", "Bob", "Cat")]
    r = await api.exchange(
        slug,
        {
            "providers": [{"party": party(ann), "minutes": 60}],
            "recipients": [
                {"party": party(bob), "minutes": 30},
                {"party": party(cat), "minutes": 30},
            ],
            "category": "learning-teaching",
        },
    )
    assert r.status_code == 201, r.text
    group = r.json()["id"]
    bob_app = api.as_key(await api.key(slug, "member", member_id=bob["id"]))
    for decision in ("confirm", "reject", "cancel"):
        r = await bob_app.post(f"/v1/timebanks/{slug}/exchanges/{group}/{decision}")
        assert_problem(r, 409, "not_pending")
    assert (await api.ok("get", f"/v1/timebanks/{slug}/exchanges/{group}"))["status"] == (
        "recorded"
    )


async def test_member_key_deciding_a_recorded_simple_exchange_it_is_party_to_gets_409(
    api: Api,
) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    ann, bob = await api.member(slug, "Ann"), await api.member(slug, "Bob")
    r = await api.exchange(slug, simple(ann, bob, 30))
    assert r.status_code == 201, r.text
    recorded = r.json()["id"]
    for who in (ann, bob):
        app = api.as_key(await api.key(slug, "member", member_id=who["id"]))
        for decision in ("confirm", "reject"):
            r = await app.post(f"/v1/timebanks/{slug}/exchanges/{recorded}/{decision}")
            assert_problem(r, 409, "not_pending")


# --- HTTP semantics: Allow on 405 and OPTIONS --------------------------------------------------


async def test_method_not_allowed_says_which_methods_are_allowed(
    client: AsyncTestClient[Any],
) -> None:
    """RFC 9110: a 405 carries Allow. The problem mapping used to drop Litestar's header."""
    r = await client.request("TRACE", "/v1/timebanks")
    assert_problem(r, 405, "method_not_allowed")
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/timebanks", {"GET", "POST", "OPTIONS"}),
        ("/v1/timebanks/x", {"GET", "PATCH", "OPTIONS"}),
        ("/v1/timebanks/x/members", {"GET", "POST", "OPTIONS"}),
        (
            "/v1/timebanks/x/accounts/01a20ca3-d261-73b6-a5d2-d2515bed3a4b",
            {"GET", "PATCH", "OPTIONS"},
        ),
    ],
)
async def test_options_lists_every_method_of_the_path(
    client: AsyncTestClient[Any], path: str, methods: set[str]
) -> None:
    """Litestar 2 listed only the first handler's methods (litestar#4169): GET but not PATCH."""
    r = await client.options(path)
    assert r.status_code == 204, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == methods


# --- the document says what the validator checks ------------------------------------------------


async def test_document_states_the_constraints_of_optional_and_patterned_fields(
    openapi: dict[str, Any],
) -> None:
    """Litestar's rendering of pydantic models dropped `pattern`, lost `exclusiveMinimum` on
    optional fields and put string bounds on arrays; the document now uses pydantic's own
    JSON Schema of each model."""
    assert component(openapi, "TimeBankCreate")["properties"]["slug"]["pattern"] == (
        "^[a-z0-9][a-z0-9-]{1,62}$"
    )
    simple = component(openapi, "SimpleExchangeCreate")
    minutes = branch(simple["properties"]["minutes"], "integer")
    assert minutes["exclusiveMinimum"] == 0
    group = component(openapi, "GroupExchangeCreate")
    providers = branch(group["properties"]["providers"], "array")
    assert (providers["minItems"], providers["maxItems"]) == (1, 200)
    assert "minLength" not in group["properties"]["providers"]
    assert simple["additionalProperties"] is group["additionalProperties"] is False
    settings = component(openapi, "TimeBankSettingsPatch")["properties"]
    assert settings["max_exchange_minutes"]["exclusiveMinimum"] == 0
    assert "gt" not in settings["max_exchange_minutes"]


async def test_document_states_the_exchange_forms_and_the_one_party_rule(
    openapi: dict[str, Any],
) -> None:
    """Both as ``oneOf`` plain objects (which generated clients turn into typed classes),
    told apart by their required fields and ``additionalProperties: false``."""

    def forms(name: str) -> list[dict[str, Any]]:
        alternatives = component(openapi, name)["oneOf"]
        return [component(openapi, a["$ref"].rsplit("/", 1)[-1]) for a in alternatives]

    exchange = forms("ExchangeCreate")
    assert sorted(sorted(form["required"]) for form in exchange) == [
        ["minutes", "provider", "recipient"],
        ["providers", "recipients"],
    ]
    assert all(form["additionalProperties"] is False for form in exchange)
    assert all("override_reason" in form["properties"] for form in exchange)
    party_ref = forms("PartyRef")
    assert sorted(form["required"][0] for form in party_ref) == [
        "account_id",
        "member_id",
        "organisation_id",
    ]


async def test_fields_that_refuse_null_are_not_documented_as_nullable(
    openapi: dict[str, Any],
) -> None:
    member = component(openapi, "MemberPatch")["properties"]
    assert member["statistics_consent"]["type"] == "boolean"
    assert "anyOf" not in member["display_name"]
    assert "anyOf" in member["email"]  # null clears it
    org = component(openapi, "OrganisationPatch")["properties"]
    assert "anyOf" not in org["name"]


async def test_problem_schema_has_no_invented_examples(openapi: dict[str, Any]) -> None:
    """Litestar generated random examples (a status of 6924) for every documented problem."""
    problem = component(openapi, "Problem")
    assert "examples" not in problem
    assert all("examples" not in p for p in problem["properties"].values())
    ok = openapi["paths"]["/v1/timebanks/{tb}/reports/{name}"]["get"]["responses"]["200"]
    assert "examples" not in str(ok)


async def test_query_and_header_parameters_state_their_bounds_and_values(
    openapi: dict[str, Any],
) -> None:
    limit = parameter(openapi, "/v1/timebanks/{tb}/members", "get", "limit")["schema"]
    assert (keyword(limit, "minimum"), keyword(limit, "maximum")) == (1, 500)
    report = "/v1/timebanks/{tb}/reports/{name}"
    for name, values in (
        ("interval", {"week", "month", "quarter"}),
        ("dimension", {"age_band", "gender", "disability", "ethnicity"}),
    ):
        schema = parameter(openapi, report, "get", name)["schema"]
        if "$ref" in schema:  # an enum of its own, shared by every report operation
            schema = component(openapi, schema["$ref"].rsplit("/", 1)[-1])
        assert set(keyword(schema, "enum")) - {None} == values
    rate = parameter(openapi, report, "get", "rate_pence_per_hour")["schema"]
    assert (keyword(rate, "minimum"), keyword(rate, "maximum")) == (1, 100_000)
    as_of = parameter(openapi, report, "get", "as_of")["schema"]
    assert keyword(as_of, "format") == "date-time"
    key = parameter(openapi, "/v1/timebanks/{tb}/members", "post", "Idempotency-Key")["schema"]
    assert (keyword(key, "minLength"), keyword(key, "maxLength")) == (1, 255)
    assert keyword(key, "pattern") == "^[ -~]{1,255}$"


async def test_csv_and_xlsx_responses_are_documented(openapi: dict[str, Any]) -> None:
    """Each file has its own operation (generators read one media type per response)."""
    for prefix in ("/v1/timebanks/{tb}/reports/{name}", "/v1/reports/{name}"):
        paths = openapi["paths"]
        for suffix, media_type in (
            ("", "application/json"),
            ("/csv", "text/csv"),
            ("/xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ):
            ok = paths[prefix + suffix]["get"]["responses"]["200"]
            # a binary file is also the generic octet stream (what generators read)
            also = {"application/octet-stream"} if suffix == "/xlsx" else set()
            assert set(ok["content"]) == {media_type} | also, prefix + suffix
    for owner in ("members/{member_id}", "organisations/{organisation_id}"):
        paths = openapi["paths"]
        ok = paths[f"/v1/timebanks/{{tb}}/{owner}/statement"]["get"]["responses"]["200"]
        assert set(ok["content"]) == {"application/json"}
        ok = paths[f"/v1/timebanks/{{tb}}/{owner}/statement.csv"]["get"]["responses"]["200"]
        assert set(ok["content"]) == {"text/csv"}


async def test_bearer_auth_is_documented_and_health_needs_none(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["scheme"]) == ("http", "bearer")
    # a console session's cookie, on GET /v1/me only
    assert (schemes["consoleSession"]["in"], schemes["consoleSession"]["name"]) == (
        "cookie",
        "timebank_session",
    )
    assert openapi["security"] == [{"apiKey": []}]
    assert openapi["paths"]["/v1/me"]["get"]["security"] == [{"apiKey": []}, {"consoleSession": []}]
    assert openapi["paths"]["/health"]["get"]["security"] == []
    assert openapi["paths"]["/ready"]["get"]["security"] == []
    assert "security" not in openapi["paths"]["/v1/timebanks"]["get"]


async def test_decision_bodies_are_documented_as_optional(
    api: Api, openapi: dict[str, Any]
) -> None:
    base = "/v1/timebanks/{tb}/exchanges/{exchange_id}"
    for decision in ("reject", "cancel"):
        assert openapi["paths"][f"{base}/{decision}"]["post"]["requestBody"]["required"] is False
    assert openapi["paths"]["/v1/timebanks/{tb}/exchanges"]["post"]["requestBody"]["required"]


# --- bodies are validated as documented (strict JSON types) ------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"use_defaults": 0}, "use_defaults"),
        ({"min_balance_minutes": "-60"}, "min_balance_minutes"),
        ({"min_balance_minutes": -60.5}, "min_balance_minutes"),
    ],
)
async def test_values_of_the_wrong_json_type_are_refused(
    api: Api, body: dict[str, Any], field: str
) -> None:
    """Pydantic's lax mode took 0 for false and "-60" for -60, though the document says
    boolean and integer."""
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    r = await api.patch(f"/v1/timebanks/{tb['slug']}/accounts/{ann['account_id']}", json=body)
    assert_validation(r, field)


async def test_a_whole_number_written_with_a_fraction_is_an_integer(api: Api) -> None:
    """JSON Schema counts 90.0 as the integer 90, so the API does too."""
    tb = await api.timebank()
    ann, bob = await api.member(tb["slug"], "Ann"), await api.member(tb["slug"], "Bob")
    r = await api.exchange(tb["slug"], simple(ann, bob, 90.0))  # type: ignore[arg-type]
    assert r.status_code == 201, r.text
    assert r.json()["minutes"] == 90


async def test_a_number_is_not_a_date(api: Api) -> None:
    tb = await api.timebank()
    r = await api.post(
        f"/v1/timebanks/{tb['slug']}/members", json={"display_name": "Ann", "joined_on": 0}
    )
    assert_validation(r, "joined_on")


async def test_as_of_must_be_a_date_time_not_a_unix_time(api: Api) -> None:
    tb = await api.timebank()
    path = f"/v1/timebanks/{tb['slug']}/reports/summary"
    for bad in ("0", "0.5", "2026-11-01", "yesterday"):
        assert_validation(await api.get(path, params={"as_of": bad}), "as_of")
    r = await api.get(path, params={"as_of": "2026-11-01T00:00:00Z"})
    assert r.status_code == 200, r.text


async def test_idempotency_key_must_be_printable_ascii(api: Api) -> None:
    tb = await api.timebank()
    r = await api.post(
        f"/v1/timebanks/{tb['slug']}/members",
        json={"display_name": "Ann"},
        headers={"Idempotency-Key": "café-1".encode()},  # type: ignore[dict-item]
    )
    assert_validation(r, "Idempotency-Key")


# --- error fields name what the client sent ------------------------------------------------------


async def test_a_refused_query_parameter_is_named_as_sent_not_by_its_python_name(
    api: Api,
) -> None:
    """Litestar named `?from=` `date_from` and `?format=` `fmt`."""
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    statement = f"/v1/timebanks/{tb['slug']}/members/{ann['id']}/statement"
    errors = assert_validation(await api.get(statement, params={"from": "not-a-date"}))
    assert [e["field"] for e in errors] == ["from"]
    errors = assert_validation(await api.get(statement, params={"format": "pdf"}))
    assert [e["field"] for e in errors] == ["format"]


async def test_a_nested_rule_message_has_no_pydantic_prefix(api: Api) -> None:
    tb = await api.timebank()
    ann = await api.member(tb["slug"], "Ann")
    r = await api.exchange(
        tb["slug"], {"provider": party(ann), "recipient": {}, "minutes": 5, "category": "transport"}
    )
    errors = assert_validation(r, "recipient")
    assert all(not e["message"].startswith("Value error") for e in errors), errors


async def test_a_replayed_key_creation_lacks_the_secret_and_the_document_allows_it(
    api: Api, openapi: dict[str, Any]
) -> None:
    """The secret is shown once, so an idempotent replay leaves it out; the document required
    it in every 201."""
    tb = await api.timebank()
    path = f"/v1/timebanks/{tb['slug']}/api-keys"
    first, replay = [
        await api.post(path, json={"role": "broker"}, headers={"Idempotency-Key": "k-1"})
        for _ in range(2)
    ]
    assert (first.status_code, replay.status_code) == (201, 201), replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert first.json()["secret"].startswith("tbk_")
    assert "secret" not in replay.json()
    created = component(openapi, "ApiKeyCreated")
    assert "secret" not in created["required"]
    assert created["properties"]["secret"]["type"] == "string"


# --- the suite itself: many apps in one process --------------------------------------------------


def test_an_app_builds_however_many_apps_this_process_built_before(settings: Settings) -> None:
    """advanced-alchemy finds a free state key by recursing once per taken one, in a registry
    that lives as long as the process: with the fuzz tests the suite built ~990 apps and the
    last ones failed with RecursionError. Each app now brings keys of its own."""
    registries = {
        "_SESSION_SCOPE_KEY_REGISTRY": "_sqlalchemy_db_session",
        "_ENGINE_APP_STATE_KEY_REGISTRY": "db_engine",
        "_SESSIONMAKER_APP_STATE_KEY_REGISTRY": "session_maker_class",
    }
    added: dict[str, set[str]] = {}
    for name, key in registries.items():
        registry: set[str] = getattr(SQLAlchemyAsyncConfig, name)
        taken = {key} | {f"{key}_{i}" for i in range(1, 3000)}
        added[name] = taken - registry
        registry |= added[name]
    try:
        create_app(settings)
    finally:
        for name, keys in added.items():
            getattr(SQLAlchemyAsyncConfig, name).difference_update(keys)


# --- the document's length limits and the service's trimming agreed only by chance ----------


async def test_text_is_trimmed_after_its_length_is_checked_as_the_document_says(
    api: Api, openapi: dict[str, Any]
) -> None:
    """``make fuzz`` found names the document and the service judged differently: the
    service trimmed first, then checked the length, so 100 letters plus a space were taken
    though the document's maxLength is 100, and three spaces (minLength 1) were refused.
    Now the length is of what is sent, a required text needs a character that is not a
    space, tab or line break (the document's pattern), and the service trims after."""
    name = branch(component(openapi, "MemberCreate")["properties"]["display_name"], "string")
    assert (name["minLength"], name["maxLength"], name["pattern"]) == (1, 100, "[^ \\t\\n\\r]")
    slug = (await api.timebank())["slug"]
    base = f"/v1/timebanks/{slug}/members"

    r = await api.post(base, json={"display_name": "  Ann Smith \n", "phone": " 0123 "})
    assert r.status_code == 201, r.text
    assert (r.json()["display_name"], r.json()["phone"]) == ("Ann Smith", "0123")
    assert_validation(await api.post(base, json={"display_name": "a" * 100 + " "}), "display_name")
    blank = await api.post(base, json={"display_name": " \t\r\n"})
    assert_validation(blank, "display_name")
    assert blank.json()["errors"][0]["message"].startswith("must not be blank")
    r = await api.post(base, json={"display_name": "a" * 100})
    assert r.status_code == 201, r.text
    org = await api.post(
        f"/v1/timebanks/{slug}/organisations", json={"name": "   ", "kind": "charity"}
    )
    assert_validation(org, "name")


async def test_a_report_ending_in_year_one_is_refused_not_a_500(api: Api) -> None:
    """``make fuzz`` found ``to=0001-01-08`` with no ``from`` answered 500: ``from`` (``to``
    less 12 months) fell in year 0 before ``to`` was checked against the earliest date."""
    slug = (await api.timebank())["slug"]
    r = await api.get(f"/v1/reports/organisations?to=0001-01-08&figures=published&timebank={slug}")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "to"
