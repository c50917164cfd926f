"""SPEC §3, the OpenAPI paragraph: the document is the partner-app developer's contract —
valid, every operation named by hand, typed bodies, enums, declared headers that are also
sent, examples that are true, no error documented that an operation cannot return — and
the interactive docs load nothing from outside the service."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from litestar.testing import AsyncTestClient
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import Api, simple
from timebank.web.problems import STATUS

METHODS = ("get", "post", "put", "patch", "delete")
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]+$")
# Operations without a body, and each created resource's URL pattern
LOCATION = re.compile(r"^/v1/.+/[0-9a-z-]+$")


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, item[method])
        for path, item in doc["paths"].items()
        for method in METHODS
        if method in item
    ]


def component(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def has_example(doc: dict[str, Any], node: dict[str, Any]) -> bool:
    node = component(doc, node)
    if node.get("examples"):
        return True
    return bool(node.get("oneOf")) and all(has_example(doc, a) for a in node["oneOf"])


async def test_the_document_is_valid_openapi_3_1(openapi: dict[str, Any]) -> None:
    errors = [e.message for e in OpenAPIV31SpecValidator(openapi).iter_errors()]
    assert errors == []


async def test_every_operation_has_a_stable_camel_case_id_one_tag_a_summary_and_a_description(
    openapi: dict[str, Any],
) -> None:
    ids = []
    for method, path, op in operations(openapi):
        where = f"{method.upper()} {path}"
        assert CAMEL.match(op.get("operationId", "")), where
        assert len(op.get("tags", [])) == 1, where
        assert op.get("summary") and op.get("description"), where
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids))
    # the names partner apps are built on (renaming one breaks their code)
    for expected in (
        "createExchange",
        "createExchangeBatch",
        "confirmExchange",
        "cancelExchange",
        "getMemberBalance",
        "getMemberStatement",
        "getMemberStatementCsv",
        "getOrganisationStatementCsv",
        "getDirectory",
        "createApiKey",
        "getReport",
    ):
        assert expected in ids


async def test_bodies_are_typed_with_one_of_plain_objects(openapi: dict[str, Any]) -> None:
    body = openapi["paths"]["/v1/timebanks/{tb}/exchanges"]["post"]["requestBody"]
    exchange = component(openapi, body["content"]["application/json"]["schema"])
    forms = [component(openapi, f) for f in exchange["oneOf"]]
    assert [f["title"] for f in forms] == ["SimpleExchangeCreate", "GroupExchangeCreate"]
    for form in forms:
        assert form["type"] == "object" and form["additionalProperties"] is False
        assert {"category", "description", "occurred_on", "external_ref"} <= set(form["properties"])
    parties = [
        component(openapi, f)["title"] for f in component(openapi, {"$ref": "PartyRef"})["oneOf"]
    ]
    assert parties == ["MemberParty", "OrganisationParty", "PoolParty"]
    batch = component(openapi, {"$ref": "BatchRequest"})
    assert batch["properties"]["exchanges"]["items"] == {
        "$ref": "#/components/schemas/ExchangeCreate"
    }


async def test_status_kind_role_and_problem_code_are_enums(openapi: dict[str, Any]) -> None:
    out = component(openapi, {"$ref": "ExchangeOut"})["properties"]
    assert set(component(openapi, out["status"])["enum"]) == {
        "pending",
        "recorded",
        "rejected",
        "expired",
        "cancelled",
    }
    assert "reversal" in component(openapi, out["kind"])["enum"]
    role = component(openapi, component(openapi, {"$ref": "LoggedBy"})["properties"]["role"])
    assert set(role["enum"]) == {"admin", "broker", "member", "funder"}
    code = component(openapi, component(openapi, {"$ref": "Problem"})["properties"]["code"])
    assert set(code["enum"]) == set(STATUS)


async def test_request_fields_carry_no_default_so_generators_keep_them_optional(
    openapi: dict[str, Any],
) -> None:
    """openapi-typescript makes a property with a default required; a default is said in
    words instead. And no ``default: null`` on a property that may not be null."""
    for name in ("SimpleExchangeCreate", "MemberCreate", "BatchRequest", "TimeBankSettings"):
        props = component(openapi, {"$ref": name})["properties"]
        assert not [p for p, s in props.items() if "default" in s], name
    overrides = component(openapi, {"$ref": "SimpleExchangeCreate"})["properties"]
    assert "Default: `false`" in overrides["override_limits"]["description"]


async def test_every_body_and_main_response_has_an_example_and_every_example_is_true(
    openapi: dict[str, Any],
) -> None:
    for method, path, op in operations(openapi):
        body = op.get("requestBody")
        if body:
            for media_type, media in body["content"].items():
                if media_type.startswith(("multipart/", "application/vnd.")):
                    continue  # a file's bytes (the sheet's text form has its example)
                assert "example" in media or has_example(openapi, media["schema"]), (
                    f"{method} {path} body"
                )
        for status, response in op["responses"].items():
            media = response.get("content", {}).get("application/json")
            if status.startswith("2") and media is not None:
                assert has_example(openapi, media["schema"]), f"{method} {path} {status}"
    registry = Registry().with_resource("urn:doc", Resource(openapi, DRAFT202012))
    checked = 0
    for name, schema in openapi["components"]["schemas"].items():
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"urn:doc#/components/schemas/{name}"},
            registry=registry,
            format_checker=jsonschema.FormatChecker(),
        )
        for example in schema.get("examples", []):
            assert [e.message for e in validator.iter_errors(example)] == [], name
            checked += 1
    assert checked > 30


async def test_operations_without_a_body_document_no_body_errors(openapi: dict[str, Any]) -> None:
    for method, path, op in operations(openapi):
        if "requestBody" not in op:
            assert not {"400", "413"} & set(op["responses"]), f"{method} {path}"


async def test_query_parameters_are_plain_and_files_have_their_own_operations(
    openapi: dict[str, Any],
) -> None:
    for _, path, op in operations(openapi):
        for parameter in op.get("parameters", []):
            assert '"null"' not in str(parameter["schema"]).replace("'", '"'), (path, parameter)
        if path.endswith((".csv", "/csv")):
            assert set(op["responses"]["200"]["content"]) == {"text/csv"}, path
    statement = openapi["paths"]["/v1/timebanks/{tb}/members/{member_id}/statement"]["get"]
    assert "format" not in [p["name"] for p in statement["parameters"]]


async def test_response_headers_are_declared_and_sent(api: Api, openapi: dict[str, Any]) -> None:
    for method, path, op in operations(openapi):
        for status, response in op["responses"].items():
            headers = response.get("headers", {})
            assert "X-Request-ID" in headers, (method, path, status)
            if status == "201":
                assert "Location" in headers, (method, path)
            if status == "429":
                assert "Retry-After" in headers, (method, path)
    create = openapi["paths"]["/v1/timebanks/{tb}/exchanges"]["post"]["responses"]["201"]
    assert "Idempotent-Replayed" in create["headers"]

    tb = await api.timebank()
    slug = tb["slug"]
    r = await api.post(f"/v1/timebanks/{slug}/members", {"display_name": "Ann"})
    assert r.status_code == 201 and r.headers["x-request-id"]
    ann = r.json()
    assert r.headers["location"] == f"/v1/timebanks/{slug}/members/{ann['id']}"
    assert (await api.get(r.headers["location"])).json()["id"] == ann["id"]
    bob = await api.member(slug, "Bob")
    body = simple(ann, bob, 30, category="shopping-errands")
    first = await api.post(
        f"/v1/timebanks/{slug}/exchanges", body, headers={"Idempotency-Key": "k-1"}
    )
    again = await api.post(
        f"/v1/timebanks/{slug}/exchanges", body, headers={"Idempotency-Key": "k-1"}
    )
    assert first.status_code == again.status_code == 201, first.text
    assert again.headers["idempotent-replayed"] == "true"
    exchange = first.json()
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"] == f"/v1/timebanks/{slug}/exchanges/{exchange['id']}"
    reversal = await api.post(
        f"/v1/timebanks/{slug}/exchanges/{exchange['id']}/reverse", {"reason": "twice"}
    )
    assert reversal.headers["location"] == (
        f"/v1/timebanks/{slug}/exchanges/{reversal.json()['id']}"
    )
    for created in (
        await api.post("/v1/timebanks", {"slug": "located", "name": "L"}),
        await api.post(f"/v1/timebanks/{slug}/categories", {"slug": "pets", "name": "Pets"}),
        await api.post(f"/v1/timebanks/{slug}/organisations", {"name": "O", "kind": "charity"}),
    ):
        assert created.status_code == 201, created.text
        assert LOCATION.match(created.headers["location"])
        found = await api.get(created.headers["location"])
        assert found.status_code == 200, (created.headers["location"], found.text)


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_the_docs_page_loads_nothing_from_outside_the_service(
    client: AsyncTestClient[Any], path: str
) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.text.startswith("<!DOCTYPE html>") and '<html lang="en">' in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    for asset in assets:
        r = await client.get(asset)
        assert r.status_code == 200 and len(r.content) > 1000, asset
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    assert "validatorUrl: null" in page.text  # Swagger UI would ask validator.swagger.io


async def test_a_refused_exchange_names_the_party_not_only_an_account(api: Api) -> None:
    """SPEC §3: a limit or an inactive party is named by its name and member or
    organisation id (on PostgreSQL the one-call path hands these refusals to the words)."""
    slug = (await api.timebank())["slug"]
    ann = await api.member(slug, "Ann Lee")
    bob = await api.member(slug, "Bob Ray")
    over = await api.exchange(slug, simple(ann, bob, 700, category="shopping-errands"))
    assert over.status_code == 409, over.text
    assert over.json()["detail"].startswith(
        f"Bob Ray (member {bob['id']}) would go to −11 h 40 min"
    )
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{bob['id']}", {"status": "suspended"})
    inactive = await api.exchange(slug, simple(ann, bob, 30, category="shopping-errands"))
    assert inactive.status_code == 409, inactive.text
    assert inactive.json()["code"] == "party_inactive"
    assert inactive.json()["detail"] == (
        f"recipient Bob Ray (member {bob['id']}) is not active (suspended, left or erased)"
    )


def _dummy(name: str, schema: dict[str, Any]) -> str:
    if schema.get("format") == "uuid":
        return "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21"
    if schema.get("type") == "integer":
        return "1"
    if schema.get("format") == "date":
        return "2026-01-01"
    if schema.get("enum"):
        return str(schema["enum"][0])
    return "nowhere"


async def test_every_operations_documented_security_is_what_the_server_does_without_a_key(
    client: AsyncTestClient[Any], openapi: dict[str, Any]
) -> None:
    """An operation documented as needing a key answers 401 without one; one documented as
    needing none does not (a generator that attaches the key per operation relies on it)."""
    wrong = []
    for method, path, op in operations(openapi):
        url, query = path, {}
        for parameter in op.get("parameters", []):
            value = _dummy(parameter["name"], parameter.get("schema", {}))
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", value)
            elif parameter["in"] == "query" and parameter.get("required"):
                query[parameter["name"]] = value
        documented = op.get("security", openapi["security"])
        needs_key = any(documented)
        r = await client.request(method.upper(), url, params=query)
        if needs_key != (r.status_code == 401):
            wrong.append(f"{method.upper()} {path}: documented {documented}, got {r.status_code}")
    assert wrong == []


async def test_creating_operations_link_to_the_operations_that_use_what_they_create(
    openapi: dict[str, Any],
) -> None:
    ops = {op["operationId"]: (path, op) for _, path, op in operations(openapi)}
    links = ops["createExchange"][1]["responses"]["201"]["links"]
    assert {"getExchange", "confirmExchange", "rejectExchange", "cancelExchange"} <= set(links)
    assert links["confirmExchange"]["parameters"] == {
        "tb": "$request.path.tb",
        "exchange_id": "$response.body#/id",
    }
    bank = ops["createTimebank"][1]["responses"]["201"]["links"]
    assert bank["createMember"]["parameters"] == {"tb": "$response.body#/slug"}
    member = ops["createMember"][1]["responses"]["201"]["links"]
    assert "getMemberBalance" in member
    # every link names an operation whose path parameters it gives, all of them
    for _, _path, op in operations(openapi):
        for link in op["responses"].get("201", {}).get("links", {}).values():
            target_path, _ = ops[link["operationId"]]
            assert set(re.findall(r"\{([^}]+)\}", target_path)) == set(link["parameters"])


async def test_a_json_null_body_is_refused_where_the_body_may_be_left_out(api: Api) -> None:
    tb = await api.timebank()
    slug = tb["slug"]
    for name in ("May Reid", "Raj Patel"):
        await api.member(slug, name)
    r = await api.client.post(
        f"/v1/timebanks/{slug}/imports?sheet=nov",
        content=b"Date,Giver,Receiver,Hours\n28/11/2026,May Reid,Raj Patel,1:30\n",
        headers=api.headers({"Content-Type": "text/csv"}),
    )
    assert r.status_code == 201, r.text
    commit = f"/v1/timebanks/{slug}/imports/{r.json()['id']}/commit"
    refused = await api.client.post(
        commit, content=b"null", headers=api.headers({"Content-Type": "application/json"})
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "body"
    assert (await api.post(commit)).status_code == 200  # no body at all is fine
