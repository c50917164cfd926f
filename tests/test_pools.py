"""The hot path's asyncpg pool (timebank.db.DriverPool) on a real PostgreSQL: a connection
the server ends while in use is a ConnectionError (503 `unavailable`), whatever asyncpg
raises for it and whenever; it never goes back to the pool, and the next request gets a
fresh connection. And the pool takes its hosts as SQLAlchemy's dialect reads the URL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from timebank.config import Settings
from timebank.db import (
    DriverPool,
    create_engine,
    driver_connect_args,
    is_closed,
    lost_connection,
)

pytestmark = pytest.mark.postgres_only


def test_multi_host_url_gives_asyncpg_every_host_and_the_target() -> None:
    engine = create_async_engine(
        "postgresql+asyncpg://tb:secret@/timebank"
        "?host=10.0.0.1:5432&host=10.0.0.2:5433&target_session_attrs=read-write"
    )
    args = driver_connect_args(engine)
    assert args["host"] == ["10.0.0.1", "10.0.0.2"]
    assert args["port"] == [5432, 5433]
    assert args["target_session_attrs"] == "read-write"
    assert (args["user"], args["password"], args["database"]) == ("tb", "secret", "timebank")


async def _terminate(engine: AsyncEngine, pid: int) -> None:
    async with engine.connect() as other:
        await other.execute(text(f"SELECT pg_terminate_backend({int(pid)})"))


async def _ended_mid_statement(pool: DriverPool, engine: AsyncEngine) -> None:
    """Ended while a statement runs (57P01 or a closed socket, as the race goes)."""
    async with pool.connection() as conn:
        await _terminate(engine, await conn.fetchval("SELECT pg_backend_pid()"))
        await conn.fetchval("SELECT pg_sleep(0.2)")


async def _used_after_it_ended(pool: DriverPool, engine: AsyncEngine) -> None:
    """A second statement on a connection already ended (asyncpg: InterfaceError)."""
    async with pool.connection() as conn:
        await _terminate(engine, await conn.fetchval("SELECT pg_backend_pid()"))
        for _ in range(50):
            if is_closed(conn):  # (the pool detaches it: any call then raises)
                break
            await asyncio.sleep(0.01)
        await conn.fetchval("SELECT 1")


async def _divide_by_zero(pool: DriverPool) -> None:
    async with pool.connection() as conn:
        await conn.fetchval("SELECT 1/0")


async def test_a_connection_ended_in_use_is_unavailable_and_the_pool_reconnects(
    engine_name: str, db_url: str
) -> None:
    if engine_name != "postgresql":
        pytest.skip("PostgreSQL only (the asyncpg pool)")
    engine = create_engine(Settings(database_url=db_url, db_pool_size=2, log_json=False))
    pool = DriverPool(engine, 2)
    try:
        for _ in range(5):
            with pytest.raises(ConnectionError):
                await _ended_mid_statement(pool, engine)
            with pytest.raises(ConnectionError):
                await _used_after_it_ended(pool, engine)
        # the pool goes on with new connections, no restart
        async with pool.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        # an answer about the request is passed on as it is
        with pytest.raises(asyncpg.DivisionByZeroError) as refused:
            await _divide_by_zero(pool)
        assert not lost_connection(refused.value)
    finally:
        await pool.close()
        await engine.dispose()
