"""Liveness and readiness."""

from __future__ import annotations

import html
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from timebank.db import Replica
from timebank.errors import NotFound
from timebank.migrations import head_revisions
from timebank.web.language import localise
from timebank.web.openapi import PUBLIC
from timebank.web.problems import PROBLEM_JSON, PROBLEM_PAGES, STATUS, Problem, problem_response


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: str


class Ready(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "migration": ["0005"]}]}
    )
    status: str
    migration: list[str]
    replica_lag_seconds: float | None = Field(
        default=None,
        description="With a read replica configured: how far it lags, in seconds (null when "
        "it cannot be reached); reports read the primary while it lags more than "
        "TIMEBANK_REPLICA_MAX_LAG_SECONDS. Null without a replica.",
    )
    replica_in_use: bool | None = Field(
        default=None,
        description="With a read replica: whether reports read it now (null without one).",
    )


@get(
    "/health",
    tags=["operations"],
    operation_id="getHealth",
    opt={PUBLIC: True},
    summary="Is the process up",
    description="Answers 200 while the process runs; needs no key. For load balancers.",
)
async def health() -> Health:
    return Health(status="ok")


@get(
    "/ready",
    tags=["operations"],
    responses={
        503: ResponseSpec(
            data_container=Problem,
            description="Database unreachable or migrations not at head (`unavailable`)",
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
    },
    operation_id="getReady",
    opt={PUBLIC: True},
    summary="Can it serve requests",
    description="200 when the database answers and is at the latest migration, else 503 "
    "`unavailable`; needs no key. For load balancers and orchestrators.",
)
async def ready(request: Request[Any, Any, Any], db_engine: AsyncEngine) -> Response[Ready]:
    heads = head_revisions()
    try:
        async with db_engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except Exception:
        return localise(  # a problem: the 503
            request,
            problem_response(
                503, "unavailable", "Not ready", "Database unreachable or not migrated"
            ),
        )
    current = {r[0] for r in rows}
    if current != heads:
        return localise(  # a problem: the 503
            request,
            problem_response(
                503,
                "unavailable",
                "Not ready",
                f"Migrations not at head (at {sorted(current)}, head {sorted(heads)})",
            ),
        )
    replica: Replica | None = request.app.state.replica
    if replica is None:
        return Response(Ready(status="ready", migration=sorted(current)))
    lag = await replica.lag_seconds()
    return Response(
        Ready(
            status="ready",
            migration=sorted(current),
            replica_lag_seconds=lag,
            replica_in_use=lag is not None and lag <= replica.max_lag,
        )
    )


@get(
    "/problems/{code:str}",
    include_in_schema=False,
    media_type=MediaType.HTML,
    opt={PUBLIC: True},
)
async def problem_page(code: str) -> str:
    """The page a problem's ``type`` points at: what its code means and what to do."""
    if code not in PROBLEM_PAGES:
        raise NotFound(f"No problem code '{code}'")
    status = STATUS[code]
    title = html.escape(f"{code} ({status})")
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Timebank ledger API</title></head>
<body>
<main>
<h1><code>{html.escape(code)}</code></h1>
<p>HTTP status {status}.</p>
<p>{html.escape(PROBLEM_PAGES[code])}</p>
<p>Every error of this API is <code>application/problem+json</code> with this
<code>code</code>; its <code>type</code> is the address of this page. See
<a href="/schema">the API reference</a>.</p>
</main>
</body>
</html>
"""
