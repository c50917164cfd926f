"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from timebank.migrations import head_revisions
from timebank.web.problems import PROBLEM_JSON, Problem, problem_response


@get("/health", tags=["operations"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


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
)
async def ready(db_engine: AsyncEngine) -> Response[Any]:
    heads = head_revisions()
    try:
        async with db_engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except Exception:
        return problem_response(
            503, "unavailable", "Not ready", "Database unreachable or not migrated"
        )
    current = {r[0] for r in rows}
    if current != heads:
        return problem_response(
            503,
            "unavailable",
            "Not ready",
            f"Migrations not at head (at {sorted(current)}, head {sorted(heads)})",
        )
    return Response({"status": "ready", "migration": sorted(current)})
