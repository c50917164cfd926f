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
import typing
from typing import Any

from litestar import Litestar, Request
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    ScalarRenderPlugin,
    SwaggerRenderPlugin,
)
from litestar.router import Router
from litestar.routes import HTTPRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"
# Route option: media types the 200 response also comes in (``?format=csv``, ``Accept``).
ALSO_RETURNS = "also_returns"
BINARY = {"type": "string", "format": "binary"}
API_KEY = "apiKey"
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
    return found


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


def alternative_media_types(app: Litestar) -> list[tuple[str, str, list[str]]]:
    """(path, method, media types) of the operations that also return CSV or XLSX."""
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                if media_types := handler.opt.get(ALSO_RETURNS):
                    found.append((route.path_format, method.lower(), list(media_types)))
    return found


def public_operations(app: Litestar) -> set[tuple[str, str]]:
    """(path, method) of the operations that need no API key (``/health``, ``/ready``)."""
    return {
        (route.path_format, method.lower())
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if "principal" not in handler.parsed_fn_signature.parameters
        for method in handler.http_methods
    }


def honest_document(document: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """A copy of Litestar's ``document`` patched as the module says. Models are rendered in
    validation mode (what the API accepts); the fuzz tests check responses against the same."""
    out = copy.deepcopy(document)
    models = app_models(app)
    out.setdefault("components", {})
    if models:
        _, top = models_json_schema(
            [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template=REF_TEMPLATE,
        )
        schemas = out["components"].setdefault("schemas", {})
        schemas.update(top.get("$defs", {}))
    for path, method, media_types in alternative_media_types(app):
        ok = out.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get("200")
        if ok is not None:
            content = ok.setdefault("content", {})
            for media_type in media_types:
                text = media_type.startswith("text/")
                content[media_type] = {"schema": {"type": "string"} if text else BINARY}
    out["components"]["securitySchemes"] = {API_KEY: API_KEY_SCHEME}
    out["security"] = [{API_KEY: []}]
    for path, method in public_operations(app):
        operation = out.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["security"] = []
    for path, method in optional_bodies(app):
        body = out.get("paths", {}).get(path, {}).get(method, {}).get("requestBody")
        if body is not None:
            body["required"] = False
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


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Interactive docs at ``/schema`` (Scalar) and ``/schema/swagger``, the document at
    ``/schema/openapi.json`` — all of the patched document."""
    return [
        PydanticModelsRenderPlugin(ScalarRenderPlugin()),
        PydanticModelsRenderPlugin(SwaggerRenderPlugin(path="/swagger")),
        PydanticModelsRenderPlugin(JsonRenderPlugin()),
    ]
