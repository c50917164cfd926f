"""The OpenAPI document as served: Litestar lays out the paths and operations; this module
makes the rest say what the API does.

* Every request and response model is described by pydantic's own JSON Schema of that very
  model. Litestar's translation is lossy: it drops ``pattern`` (slugs), loses
  ``exclusiveMinimum`` on optional fields (minutes > 0) and puts string bounds on optional
  arrays, so a partner app built from the document sent requests it believed valid and got
  422.
* Bearer API keys are declared (``/health`` and ``/ready`` need none).
* The CSV and XLSX forms of reports and statements are listed beside JSON.
* Bodies that may be left out (``data: X | None``) are not marked required.

The document is patched once per app, lazily, when it is first served: building it costs
as much as building the app, and the tests build hundreds of apps.
"""

from __future__ import annotations

import copy
import html
import json
import re
import typing
from pathlib import Path
from typing import Any

from litestar import Litestar, Request
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin
from litestar.router import Router
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from timebank.bodies import ALTERNATIVES, JsonBody
from timebank.web.problems import PROBLEM_EXAMPLES, PROBLEM_JSON, PROBLEM_PAGES, STATUS

REF_TEMPLATE = "#/components/schemas/{model}"
# Route options. ``FILE``: the operation answers a file of this media type (its own
# operation, e.g. ``getMemberStatementCsv``). ``ALSO_RETURNS``: media types the 200 also comes
# in (``?format=``, ``Accept``) — for curl users; generators read only the first.
FILE = "file_media_type"
ALSO_RETURNS = "also_returns"
# Route option: the operation takes a file as its body (these media types, or a multipart
# form with the file as ``file``).
UPLOAD = "upload_media_types"
# Route option: the operation needs no API key (``/health``, ``/ready``). Said by the route,
# never guessed from its handler's signature: the hot handlers authenticate inside.
PUBLIC = "public"
# Route option: the operation also takes a console user's session cookie instead of a key.
CONSOLE_SESSION = "console_session"
BINARY = {"type": "string", "format": "binary"}
API_KEY = "apiKey"
SESSION = "consoleSession"
SESSION_SCHEME = {
    "type": "apiKey",
    "in": "cookie",
    "name": "timebank_session",
    "description": "A console user's session (signing in to the console sets it)",
}
API_KEY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key of the time bank (`tbk_…`): `Authorization: Bearer <key>`",
}


def _models_in(annotation: Any, found: set[type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.add(annotation)
        return
    for arg in typing.get_args(annotation):
        _models_in(arg, found)


def app_models(app: Litestar) -> set[type[BaseModel]]:
    """The pydantic models the routes take as bodies and return or document as responses."""
    found: set[type[BaseModel]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            signature = handler.parsed_fn_signature
            _models_in(signature.return_type.annotation, found)
            for parameter in signature.parameters.values():
                _models_in(parameter.annotation, found)
            for spec in (handler.responses or {}).values():
                _models_in(spec.data_container, found)
    return found | set(ALTERNATIVES)


def optional_bodies(app: Litestar) -> set[tuple[str, str]]:
    """(path, method) of the operations whose body may be left out (``data: X | None``):
    Litestar documents every request body as required."""
    found = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None and (data.is_optional or data.has_default):
                found |= {(route.path_format, m.lower()) for m in handler.http_methods}
    return found


def route_options(app: Litestar, option: str) -> dict[tuple[str, str], Any]:
    """(path, method) → the value of a route option, for the routes that set it."""
    return {
        (route.path_format, method.lower()): handler.opt[option]
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if option in handler.opt
        for method in handler.http_methods
    }


def _file_content(media_type: str) -> dict[str, Any]:
    return {"schema": {"type": "string"} if media_type.startswith("text/") else BINARY}


SHEET_EXAMPLE = (
    "Date,Giver,Receiver,Hours,Category,Notes\n"
    "28/11/2026,May Reid,Raj Patel,1:30,Home and garden,Cut the hedge\n"
)


def _upload_body(media_types: list[str]) -> dict[str, Any]:
    """The file as a multipart form's ``file``, or as the body itself. The file's own media
    types (``text/csv``, the XLSX type) are accepted too, but documented as
    ``application/octet-stream``: the service reads what the bytes are, and generators
    (openapi-python-client) understand only the generic type."""
    said = ", ".join(f"`{m}`" for m in media_types)
    return {
        "required": True,
        "description": f"The file: a multipart form with it as `file`, or its bytes as the "
        f"body (`application/octet-stream`, or its own type: {said})",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": BINARY},
                }
            },
            "application/octet-stream": {"schema": BINARY, "example": SHEET_EXAMPLE},
        },
    }


def _file_response(media_type: str) -> dict[str, Any]:
    """A file answer: its media type, and for a binary file ``application/octet-stream``
    beside it (what generators can read: it is the same bytes)."""
    content = {media_type: _file_content(media_type)}
    if not media_type.startswith("text/") and media_type != "application/octet-stream":
        content["application/octet-stream"] = {"schema": BINARY}
    return content


def public_operations(app: Litestar) -> set[tuple[str, str]]:
    """(path, method) of the operations that need no API key: those whose route says so
    (``opt={PUBLIC: True}``). Every other operation is documented as needing one."""
    return set(route_options(app, PUBLIC))


def input_model_names() -> set[str]:
    """Names of the request body models and their parts (every :class:`JsonBody`)."""
    found: set[str] = set()
    todo: list[type] = [JsonBody]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


def _admits_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_admits_null(s) for s in schema.get("anyOf", []) + schema.get("oneOf", []))


def _defaults_said_in_words(schema: dict[str, Any]) -> None:
    """Request body properties carry no ``default``: generators (openapi-typescript) take a
    default to mean "always present" and would make every optional field required. The
    default is said in the description instead."""
    for prop in (schema.get("properties") or {}).values():
        if "default" not in prop:
            continue
        default = prop.pop("default")
        if default is not None:
            said = f"Default: `{json.dumps(default)}`."
            prop["description"] = f"{prop['description']} {said}" if "description" in prop else said


def _no_impossible_default(schema: dict[str, Any]) -> None:
    """``default: null`` on a property that may not be null (a PATCH field that may be left
    out but not cleared) is invalid OpenAPI: say nothing instead."""
    for prop in (schema.get("properties") or {}).values():
        if "default" in prop and prop["default"] is None and not _admits_null(prop):
            del prop["default"]


def _plain_parameter(parameter: dict[str, Any]) -> None:
    """A query, path or header parameter is a string on the wire: it cannot be JSON null,
    so an optional one is documented as its type alone (generators otherwise make a class
    per parameter)."""
    schema = parameter.get("schema") or {}
    for key in ("oneOf", "anyOf"):
        alternatives = schema.get(key)
        if alternatives and {"type": "null"} in alternatives:
            rest = [a for a in alternatives if a != {"type": "null"}]
            del schema[key]
            if len(rest) == 1:
                schema.update(rest[0])
            else:
                schema[key] = rest
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [k for k in kind if k != "null"]
        schema["type"] = rest[0] if len(rest) == 1 else rest
    if "enum" in schema:
        schema["enum"] = [v for v in schema["enum"] if v is not None]


HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "This request's id (yours, if you sent a valid `X-Request-ID`); quote it "
        "when reporting a problem",
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same `Idempotency-Key`; nothing new was done",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Location": {
        "description": "The URL of what was created",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "Content-Disposition": {
        "description": "`attachment` with a file name",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    },
}


CONTENT_DISPOSITION = "#/components/headers/Content-Disposition"


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _declare_headers(operation: dict[str, Any]) -> None:
    keyed = any(
        p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key"
        for p in operation.get("parameters", [])
    )
    for status, response in operation.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = _header("X-Request-ID")
        if status == "201":
            headers["Location"] = _header("Location")
        if keyed and status.startswith("2"):
            headers["Idempotent-Replayed"] = _header("Idempotent-Replayed")
        if status == "429":
            headers["Retry-After"] = _header("Retry-After")


def _problem_codes(out: dict[str, Any]) -> None:
    schemas = out["components"]["schemas"]
    schemas["ProblemCode"] = {
        "type": "string",
        "enum": sorted(STATUS),
        "description": "A stable code for what went wrong (the HTTP status is in `status`)",
    }
    for name in ("Problem", "BatchError"):
        code = schemas.get(name, {}).get("properties", {}).get("code")
        if code is not None:
            description = code.get("description")
            code.clear()
            code["$ref"] = "#/components/schemas/ProblemCode"
            if description:
                code["description"] = description


def _examples(out: dict[str, Any]) -> None:
    """A page's example from its item's; a problem response's from its status."""
    schemas = out["components"]["schemas"]
    for name, schema in schemas.items():
        if not name.startswith("Page_") or "examples" in schema:
            continue
        ref = schema.get("properties", {}).get("items", {}).get("items", {}).get("$ref", "")
        item = schemas.get(ref.rsplit("/", 1)[-1], {})
        if item.get("examples"):
            schema["examples"] = [{"items": item["examples"][:1], "next_cursor": None}]


_CODE_NAMED = re.compile(r"`([a-z_]+)`")
# The fields a problem of these codes carries beside the usual ones.
PROBLEM_FIELDS: dict[str, dict[str, Any]] = {
    "validation_error": {
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/FieldError"},
            "description": "Each refused field, with what to do about it",
        },
        "known_parameters": {
            "type": "array",
            "items": {"type": "string"},
            "description": "An unknown query parameter: the ones the operation takes",
        },
    },
    "balance_limit_exceeded": {
        "party": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {
                    "type": "string",
                    "enum": ["member", "organisation", "pool", "counterparty"],
                    "description": "`counterparty`: another member's limit, to a member key "
                    "(whose figures it is not given)",
                },
                "id": {"type": "string", "format": "uuid"},
            },
            "description": "Whose limit would be passed",
        },
        "account_id": {"type": "string", "format": "uuid"},
        "balance_minutes": {"type": "integer", "description": "The balance before"},
        "change_minutes": {"type": "integer", "description": "This exchange's movement"},
        "min_balance_minutes": {"type": ["integer", "null"], "description": "null: none"},
        "max_balance_minutes": {"type": ["integer", "null"], "description": "null: none"},
    },
    "rate_limited": {
        "retry_after": {"type": "integer", "minimum": 1, "description": "Seconds to wait"}
    },
}


def _camel(code: str) -> str:
    return "".join(part.title() for part in code.split("_"))


def problem_schema_name(code: str) -> str:
    return f"{_camel(code)}Problem"


def _problem_schemas(out: dict[str, Any]) -> None:
    """One schema per problem code (its ``code`` and ``status`` fixed, its own fields
    declared), and each error response as the ``oneOf`` of the codes it lists, told apart
    by ``code``; its example is that of the first code it lists."""
    schemas = out["components"]["schemas"]
    base = schemas["Problem"]
    for code, status in STATUS.items():
        properties = {k: v for k, v in base["properties"].items() if k != "errors"}
        properties["code"] = {"type": "string", "const": code}
        properties["status"] = {"type": "integer", "const": status}
        properties["type"] = {
            "type": "string",
            "format": "uri-reference",
            "description": f"`/problems/{code}`: a page of this service about the code",
        }
        properties.update(PROBLEM_FIELDS.get(code, {}))
        schemas[problem_schema_name(code)] = {
            "type": "object",
            "title": problem_schema_name(code),
            "description": PROBLEM_PAGES[code],
            "required": [*base["required"], *(["errors"] if code == "validation_error" else [])],
            "properties": properties,
        }
    for item in out.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {}).get(PROBLEM_JSON)
                if content is None or not status.isdigit():
                    continue
                named = _CODE_NAMED.findall(response.get("description", ""))
                codes = [c for c in dict.fromkeys(named) if STATUS.get(c) == int(status)]
                if not codes:
                    codes = [c for c, s in STATUS.items() if s == int(status)]
                refs = {c: f"#/components/schemas/{problem_schema_name(c)}" for c in codes}
                if len(codes) == 1:
                    content["schema"] = {"$ref": refs[codes[0]]}
                else:
                    content["schema"] = {
                        "oneOf": [{"$ref": r} for r in refs.values()],
                        "discriminator": {"propertyName": "code", "mapping": refs},
                    }
                if codes[0] in PROBLEM_EXAMPLES:
                    content["example"] = PROBLEM_EXAMPLES[codes[0]]
                said = str(response.get("description", ""))
                if status == "413" and said.startswith("The file is over"):
                    # an upload's own limit, as its description names it
                    limit = said.removeprefix("The file is over ").split(" (", 1)[0]
                    content["example"] = {
                        **content.get("example", {}),
                        "detail": f"The file is over the limit of {limit} per sheet: "
                        "split it into several sheets",
                    }


_PARAM = re.compile(r"\{([^}]+)\}")
# Path parameters that name a created thing by a field other than its ``id``.
_BY_FIELD = {"tb": "slug", "slug": "slug"}


def _links(out: dict[str, Any]) -> None:
    """OpenAPI links from each creating operation (a POST to a collection answering 201) to
    the operations that take the created thing's id (or slug) in their path — for clients
    and tools (Schemathesis's stateful phase) that follow them."""
    paths = out.get("paths", {})
    ops = [
        (path, method, operation)
        for path, item in paths.items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    ]
    for path, method, creating in ops:
        created = creating.get("responses", {}).get("201")
        if method != "post" or created is None or path.endswith("}"):
            continue
        known = _PARAM.findall(path)
        links: dict[str, Any] = {}
        for target_path, _, target in ops:
            rest = target_path[len(path) :]
            if not target_path.startswith(path + "/{"):
                continue
            new = _PARAM.match(rest[1:])
            assert new is not None
            name = new.group(1)
            if not set(_PARAM.findall(target_path)) <= {*known, name}:
                continue
            parameters = {p: f"$request.path.{p}" for p in known}
            parameters[name] = f"$response.body#/{_BY_FIELD.get(name, 'id')}"
            links[target["operationId"]] = {
                "operationId": target["operationId"],
                "parameters": parameters,
            }
        if links:
            created["links"] = links


def honest_document(document: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """A copy of Litestar's ``document`` patched as the module says. Models are rendered in
    validation mode (what the API accepts); the fuzz tests check responses against the same."""
    out = copy.deepcopy(document)
    models = app_models(app)
    out.setdefault("components", {})
    schemas = out["components"].setdefault("schemas", {})
    if models:
        _, top = models_json_schema(
            [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template=REF_TEMPLATE,
        )
        schemas.update(top.get("$defs", {}))
    inputs = input_model_names()
    for name, schema in schemas.items():
        if name in inputs:
            _defaults_said_in_words(schema)
        _no_impossible_default(schema)
    _problem_codes(out)
    out["components"]["headers"] = HEADERS
    out["components"]["securitySchemes"] = {API_KEY: API_KEY_SCHEME, SESSION: SESSION_SCHEME}
    out["security"] = [{API_KEY: []}]
    public = public_operations(app)
    sessions = route_options(app, CONSOLE_SESSION)
    optional = optional_bodies(app)
    files = route_options(app, FILE)
    uploads = route_options(app, UPLOAD)
    also = route_options(app, ALSO_RETURNS)
    for path, item in out.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                _plain_parameter(parameter)
            if (path, method) in public:
                operation["security"] = []
            elif (path, method) in sessions:
                operation["security"] = [{API_KEY: []}, {SESSION: []}]
            if (path, method) in uploads:
                operation["requestBody"] = _upload_body(uploads[path, method])
            body = operation.get("requestBody")
            if body is None:
                # No body, so no malformed body and no body too large.
                for status in ("400", "413"):
                    operation["responses"].pop(status, None)
            elif (path, method) in optional:
                # A body that may be left out is not a JSON null (generators then send one).
                body["required"] = False
                for content in body.get("content", {}).values():
                    _plain_parameter(content)
            ok = operation["responses"].get("200")
            if ok is not None and (path, method) in files:
                media_type = files[path, method]
                ok["content"] = _file_response(media_type)
                ok["headers"] = {"Content-Disposition": {"$ref": CONTENT_DISPOSITION}}
            if ok is not None and (path, method) in also:
                for media_type in also[path, method]:
                    ok.setdefault("content", {})[media_type] = _file_content(media_type)
            _declare_headers(operation)
    _examples(out)
    _problem_schemas(out)
    _links(out)
    return out


class PydanticModelsRenderPlugin(OpenAPIRenderPlugin):
    """Wraps a render plugin (JSON, Scalar, Swagger) so it renders the patched document."""

    def __init__(self, inner: OpenAPIRenderPlugin) -> None:
        super().__init__(
            path=inner.paths, media_type=inner.media_type, favicon=inner.favicon, style=inner.style
        )
        self.inner = inner
        self._source: dict[str, Any] | None = None
        self._patched: dict[str, Any] = {}

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._source is not openapi_schema:
            self._patched = honest_document(openapi_schema, request.app)
            self._source = openapi_schema
        return self.inner.render(request, self._patched)

    def receive_router(self, router: Router) -> None:
        self.inner.receive_router(router)


SWAGGER_UI_VERSION = "5.32.0"
STATIC = Path(__file__).parent / "static"
DOCS_ASSETS = "/static/swagger-ui"


class LocalSwaggerUI(OpenAPIRenderPlugin):
    """Swagger UI from the package's own copy (``web/static/swagger-ui``): no CDN, no
    online validator, no favicon from elsewhere — the page loads nothing from outside the
    service, so the docs work on an intranet."""

    def __init__(self, path: str | list[str]) -> None:
        super().__init__(path=path, favicon="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema.get("info", {}).get("title", "API")))
        spec = self.render_json(request, openapi_schema).decode().replace("</", "<\\/")
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — reference</title>
<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
</head>
<body>
<main id="docs"></main>
<script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({{
  spec: {spec},
  dom_id: "#docs",
  deepLinking: true,
  validatorUrl: null,
  displayOperationId: true,
  tryItOutEnabled: false,
  persistAuthorization: false
}});
</script>
</body>
</html>
""".encode()


def docs_assets() -> Any:
    """The static files of the docs page (Swagger UI, vendored, with its licence)."""
    return create_static_files_router(
        path=DOCS_ASSETS, directories=[STATIC / "swagger-ui"], include_in_schema=False
    )


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Interactive docs at ``/schema`` (and ``/schema/swagger``), the document at
    ``/schema/openapi.json`` — all of the patched document."""
    return [
        PydanticModelsRenderPlugin(LocalSwaggerUI(path=["/", "/swagger"])),
        PydanticModelsRenderPlugin(JsonRenderPlugin()),
    ]
