"""SPEC §3: the OpenAPI 3.1 document at /schema/openapi.json documents every operation's
success and error responses, errors as ``application/problem+json``."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from timebank.web.problems import STATUS

PROBLEM_JSON = "application/problem+json"
METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def operations(doc: dict[str, Any], prefix: str = "/v1") -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, item in doc["paths"].items():
        if not path.startswith(prefix):
            continue
        for method in METHODS:
            if method in item:
                out.append((method, path, item[method]))
    return out


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def creating_posts(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """POST operations under /v1 that create something: time banks, members,
    organisations, categories, exchanges, batches, reversals, keys, sheet imports. Decisions
    on a pending exchange (confirm/reject/cancel), erasure, committing a sheet import
    (idempotent by its lines' references) and redelivering a webhook change state and
    create nothing."""
    not_creating = ("/confirm", "/reject", "/cancel", "/erase", "/commit", "/redeliver")
    return [
        (path, op)
        for method, path, op in operations(doc)
        if method == "post" and not path.endswith(not_creating)
    ]


async def test_openapi_document_is_served_as_openapi_3_1(
    client: AsyncTestClient[Any], openapi: dict[str, Any]
) -> None:
    r = await client.get("/schema/openapi.json")
    assert "json" in r.headers["content-type"]
    assert str(openapi["openapi"]).startswith("3.1")
    assert openapi["info"]["title"]
    paths = set(openapi["paths"])
    for expected in (
        "/v1/timebanks",
        "/v1/timebanks/{tb}",
        "/v1/timebanks/{tb}/members",
        "/v1/timebanks/{tb}/members/{member_id}/balance",
        "/v1/timebanks/{tb}/organisations",
        "/v1/timebanks/{tb}/categories",
        "/v1/timebanks/{tb}/exchanges",
        "/v1/timebanks/{tb}/exchanges/{exchange_id}/reverse",
        "/v1/timebanks/{tb}/api-keys",
    ):
        assert expected in paths, sorted(paths)


async def test_openapi_document_needs_no_api_key(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200


async def test_every_v1_operation_documents_a_4xx_problem_json_response(
    openapi: dict[str, Any],
) -> None:
    ops = operations(openapi)
    assert len(ops) >= 20
    missing = []
    for method, path, op in ops:
        problem_4xx = [
            status
            for status, resp in op.get("responses", {}).items()
            if status.startswith("4") and PROBLEM_JSON in resolve(openapi, resp).get("content", {})
        ]
        if not problem_4xx:
            missing.append(f"{method.upper()} {path}")
    assert not missing, f"operations without a problem+json 4xx: {missing}"


async def test_every_v1_operation_documents_401_and_503_as_problem_json(
    openapi: dict[str, Any],
) -> None:
    for method, path, op in operations(openapi):
        responses = op.get("responses", {})
        for status in ("401", "503"):
            assert status in responses, f"{method.upper()} {path} lacks {status}"
            content = resolve(openapi, responses[status]).get("content", {})
            assert PROBLEM_JSON in content, f"{method.upper()} {path} {status}: {content}"


async def test_every_v1_operation_documents_its_success_response(
    openapi: dict[str, Any],
) -> None:
    for method, path, op in operations(openapi):
        ok = [s for s in op.get("responses", {}) if s.startswith("2")]
        assert ok, f"{method.upper()} {path} documents no 2xx"


async def test_creating_post_operations_document_401_and_422_problems(
    openapi: dict[str, Any],
) -> None:
    posts = creating_posts(openapi)
    assert {p for p, _ in posts} >= {
        "/v1/timebanks",
        "/v1/timebanks/{tb}/members",
        "/v1/timebanks/{tb}/organisations",
        "/v1/timebanks/{tb}/categories",
        "/v1/timebanks/{tb}/exchanges",
        "/v1/timebanks/{tb}/exchanges/batch",
        "/v1/timebanks/{tb}/exchanges/{exchange_id}/reverse",
        "/v1/timebanks/{tb}/api-keys",
        "/v1/api-keys",
    }
    for path, op in posts:
        responses = op.get("responses", {})
        for status in ("401", "422", "413", "400"):
            assert status in responses, f"POST {path} lacks {status}"
            content = resolve(openapi, responses[status]).get("content", {})
            assert PROBLEM_JSON in content, f"POST {path} {status}: {content}"


async def test_creating_post_operations_document_the_idempotency_key_header(
    openapi: dict[str, Any],
) -> None:
    for path, op in creating_posts(openapi):
        headers = [
            resolve(openapi, p)["name"].lower()
            for p in op.get("parameters", [])
            if resolve(openapi, p).get("in") == "header"
        ]
        assert "idempotency-key" in headers, f"POST {path} parameters: {op.get('parameters')}"


async def test_creating_post_operations_document_the_409s_of_a_keyed_retry(
    openapi: dict[str, Any],
) -> None:
    """A retry while the first request runs is 409 idempotency_in_flight; one after an
    erasure purged the stored response is 409 duplicate: on every route taking the key."""
    for path, op in creating_posts(openapi):
        resp = resolve(openapi, op["responses"].get("409", {}))
        for code in ("duplicate", "idempotency_in_flight"):
            assert code in resp.get("description", ""), (path, code, resp)


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("post", "/v1/timebanks", ["duplicate"]),
        ("post", "/v1/timebanks/{tb}/members", ["duplicate"]),
        (
            "post",
            "/v1/timebanks/{tb}/exchanges",
            ["balance_limit_exceeded", "party_inactive", "duplicate", "idempotency_in_flight"],
        ),
        (
            "post",
            "/v1/timebanks/{tb}/exchanges/{exchange_id}/reverse",
            ["already_reversed", "not_reversible"],
        ),
        ("post", "/v1/timebanks/{tb}/categories", ["duplicate"]),
    ],
)
async def test_operations_that_can_conflict_document_409_with_their_codes(
    openapi: dict[str, Any], method: str, path: str, codes: list[str]
) -> None:
    op = openapi["paths"][path][method]
    resp = resolve(openapi, op["responses"]["409"])
    assert PROBLEM_JSON in resp["content"]
    for code in codes:
        assert code in resp.get("description", ""), (code, resp.get("description"))


async def test_problem_schema_requires_the_rfc9457_keys_and_code(
    openapi: dict[str, Any],
) -> None:
    seen = 0
    for method, path, op in operations(openapi):
        for status, resp in op.get("responses", {}).items():
            content = resolve(openapi, resp).get("content", {})
            if PROBLEM_JSON not in content:
                continue
            for schema in variants(openapi, content[PROBLEM_JSON]["schema"]):
                assert set(schema.get("required", [])) >= PROBLEM_KEYS, (method, path, status)
                props = schema["properties"]
                assert resolve(openapi, props["code"])["type"] == "string"
                # each variant is one code, of this response's status
                assert props["status"]["const"] == int(status), (method, path, status)
                assert props["code"]["const"] in STATUS
            seen += 1
    assert seen > 50


def variants(doc: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """A problem response's schemas: one per code it may answer (a ``oneOf``)."""
    node = resolve(doc, node)
    if "oneOf" in node:
        return [resolve(doc, n) for n in node["oneOf"]]
    return [node]


async def test_each_operation_lists_the_codes_it_can_answer_with_their_fields(
    openapi: dict[str, Any],
) -> None:
    def codes(path: str, method: str, status: str) -> dict[str, dict[str, Any]]:
        response = openapi["paths"][path][method]["responses"][status]
        schema = response["content"][PROBLEM_JSON]["schema"]
        return {v["properties"]["code"]["const"]: v for v in variants(openapi, schema)}

    create = codes("/v1/timebanks/{tb}/exchanges", "post", "409")
    assert set(create) == {
        "balance_limit_exceeded",
        "party_inactive",
        "duplicate",
        "idempotency_in_flight",
    }
    limit = create["balance_limit_exceeded"]["properties"]
    for field in ("party", "account_id", "balance_minutes", "min_balance_minutes"):
        assert field in limit
    schema = openapi["paths"]["/v1/timebanks/{tb}/exchanges"]["post"]["responses"]["409"]
    assert schema["content"][PROBLEM_JSON]["schema"]["discriminator"]["propertyName"] == "code"
    # a cancellation's conflict is a cancellation's, and so is its example
    cancel = openapi["paths"]["/v1/timebanks/{tb}/exchanges/{exchange_id}/cancel"]["post"]
    assert set(codes("/v1/timebanks/{tb}/exchanges/{exchange_id}/cancel", "post", "409")) == {
        "not_pending"
    }
    assert cancel["responses"]["409"]["content"][PROBLEM_JSON]["example"]["code"] == "not_pending"
    # keyed writes may answer a reused key; others not
    assert "idempotency_key_reused" in codes("/v1/timebanks/{tb}/members", "post", "422")
    assert set(codes("/v1/timebanks/{tb}/members", "get", "422")) == {"validation_error"}
    errors = codes("/v1/timebanks/{tb}/members", "get", "422")["validation_error"]
    item = resolve(openapi, errors["properties"]["errors"]["items"])
    assert item["required"] == ["field", "message"]
    assert "errors" in errors["required"]
    # the duplicate external_ref of an organisation's edit is documented
    assert set(codes("/v1/timebanks/{tb}/organisations/{organisation_id}", "patch", "409")) == {
        "duplicate"
    }


async def test_problem_types_are_pages_of_the_service(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/v1/timebanks")
    body = r.json()
    assert body["type"] == "/problems/unauthorized"
    page = await client.get(body["type"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "unauthorized" in page.text and "API key" in page.text
    assert (await client.get("/problems/no_such_code")).status_code == 404
    # optional means absent: no errors on a problem that has none
    assert "errors" not in body


async def test_problem_schema_documents_the_validation_errors_list(
    openapi: dict[str, Any],
) -> None:
    op = openapi["paths"]["/v1/timebanks/{tb}/exchanges"]["post"]
    content = resolve(openapi, op["responses"]["422"])["content"][PROBLEM_JSON]
    schemas = variants(openapi, content["schema"])
    assert any("errors" in schema["properties"] for schema in schemas)


async def test_documented_problem_matches_a_real_error_response(
    client: AsyncTestClient[Any], openapi: dict[str, Any]
) -> None:
    op = openapi["paths"]["/v1/timebanks"]["get"]
    (schema,) = variants(
        openapi, resolve(openapi, op["responses"]["401"])["content"][PROBLEM_JSON]["schema"]
    )
    r = await client.get("/v1/timebanks")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    body = r.json()
    assert set(schema["required"]) <= set(body)
    assert set(body) <= set(schema["properties"])


async def test_every_documented_error_response_is_problem_json(
    openapi: dict[str, Any],
) -> None:
    wrong = []
    for method, path, op in operations(openapi):
        for status, resp in op.get("responses", {}).items():
            if status[0] in "45":
                content = resolve(openapi, resp).get("content", {})
                if set(content) != {PROBLEM_JSON}:
                    wrong.append(f"{method.upper()} {path} {status}: {sorted(content)}")
    assert not wrong, wrong


async def test_ready_documents_its_503_problem_response(openapi: dict[str, Any]) -> None:
    op = openapi["paths"]["/ready"]["get"]
    assert "503" in op["responses"]
    assert PROBLEM_JSON in resolve(openapi, op["responses"]["503"]).get("content", {})
