"""Liveness and readiness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from timebank.errors import PROBLEM_JSON, Problem, problem_response

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    if database_url:
        cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


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
