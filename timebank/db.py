"""Engine, metadata and the write-transaction discipline shared by every domain.

SQLite: WAL, foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE`` for write
transactions so that concurrent writers queue on the lock instead of failing on upgrade.
PostgreSQL: READ COMMITTED plus explicit row locks; deadlocks and serialization failures
are retried by :func:`write`. A failure to connect, or a session the server ended, is
treated as a disconnect (the pool drops the connection; the request gets 503
``unavailable``), so the same process recovers as soon as the database is back.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import os
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, TypeVar, cast

from sqlalchemy import BigInteger, Enum, Integer, MetaData, Table, event, insert
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, configure_mappers

from timebank.config import Settings

log = logging.getLogger("timebank.db")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigInt = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements on hot paths (they skip the ORM's bookkeeping)."""
    return cast(Table, model.__table__)


M = TypeVar("M", bound=Base)


def transient(model: type[M], values: dict[str, Any]) -> M:
    """An ORM object from values read by hand, outside any session: the mapper's own way of
    making an instance without its constructor (~2 µs, against ~20 µs for ``Model(**values)``
    and its attribute events) — for the hot paths that judge rows with the same functions
    as the ORM paths. Only the given attributes are set."""
    mapper = model.__mapper__
    if not mapper.configured:  # once per process (configuring checks every registry)
        configure_mappers()
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(values)
    return cast(M, obj)


def record_key() -> int:
    """A permanent random 32-bit record key (members, organisations, exchanges): the cell-key
    method of the published reports sums them (``timebank.reports.cellkey``). Never shown."""
    return secrets.randbits(32)


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid7(*, at: datetime | None = None) -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 v7), so keyset pagination by id follows creation order;
    ``at`` (the demo generator's history) instead of now. Its random bits are always
    truly random: a seed makes generated figures repeatable, never the ids."""
    ms = time.time_ns() // 1_000_000 if at is None else int(at.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with wildcards escaped (escape '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if settings.is_sqlite:
        engine = create_async_engine(
            url,
            connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        _configure_sqlite(engine, settings)
    else:
        options: dict[str, Any] = {
            "connect_args": {"timeout": settings.db_connect_timeout_seconds},
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": 10,
        }
        engine = create_async_engine(url, **options)
        args = driver_connect_args(engine)
        if isinstance(args.get("host"), list):  # several hosts: a timeout for each
            args["timeout"] = settings.db_connect_timeout_seconds
            engine = create_async_engine(
                url, async_creator=lambda: connect_each_host(**args), **options
            )
        event.listen(engine.sync_engine, "checkout", _drop_if_closed)
    event.listen(engine.sync_engine, "handle_error", _classify_disconnect)
    return engine


def _drop_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server has closed (terminated, restarted) is replaced when
    it is checked out. asyncpg notices the closed socket by itself, so this costs no round
    trip — SQLAlchemy's ``pool_pre_ping`` costs three (BEGIN, a ping, ROLLBACK) per request.
    A connection lost without a word (a dead network) is caught on first use instead, and
    answered with 503."""
    raw = getattr(dbapi_connection, "_connection", None)
    if raw is not None and raw.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def sqlstate(exc: BaseException | None) -> str:
    """The SQLSTATE of a database error (PostgreSQL; wrapped or not), or ``""``."""
    orig = getattr(exc, "orig", None) or exc
    for candidate in (orig, getattr(orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return ""


READ_ONLY = "25006"  # read_only_sql_transaction: a write reached a standby


def session_ended(state: str) -> bool:
    """The server ended the session or cannot take one now: class 08 (connection
    exception) and 57P01-57P05 (admin or crash shutdown, cannot connect now — starting up
    or shutting down —, database dropped, idle session timeout)."""
    return state.startswith(("08", "57P"))


def _classify_disconnect(ctx: ExceptionContext) -> None:
    """Any error while *establishing* a connection (refused, too many connections, the
    database not accepting connections, starting up...) and a session the server ended are
    disconnects: the connection is dropped from the pool and the error is raised with
    ``connection_invalidated`` set, which the API answers with 503 ``unavailable``. So is a
    write refused as read-only (25006): the host is a standby now, after a switch of
    primaries, and a new connection finds the new primary (``target_session_attrs``)."""
    connecting = ctx.connection is None and not ctx.is_pre_ping
    state = sqlstate(ctx.original_exception)
    if connecting or session_ended(state) or state == READ_ONLY:
        ctx.is_disconnect = True


def _configure_sqlite(engine: AsyncEngine, settings: Settings) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA recursive_triggers=ON")  # REPLACE fires the DELETE guards
        cur.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


T = TypeVar("T")

_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        if sqlstate(exc) in _RETRYABLE_SQLSTATES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
            return True
    return False


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a write transaction (SQLite: BEGIN IMMEDIATE). A
    transaction already begun (PostgreSQL keeps the request's opening read) goes on."""
    if session.in_transaction():
        return
    await session.connection(execution_options={"write": True})


def _is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


async def end_read(session: AsyncSession) -> None:
    """End a request's opening read (the API key lookup). SQLite: release the read
    transaction, so that a write can begin with ``BEGIN IMMEDIATE``. PostgreSQL: keep it and
    go on in it — under READ COMMITTED every statement sees the latest commits anyway, and a
    request saves a round trip to end one transaction and another to begin the next."""
    if session.in_transaction() and _is_sqlite(session):
        await session.rollback()


async def write(session: AsyncSession, attempt: Callable[[], Awaitable[T]], *, retries: int) -> T:
    """Run a use case that writes and commits (``attempt``) in a write transaction; on a
    deadlock or serialization failure roll back and run it again, up to ``retries`` times.

    Any exception rolls the transaction back, so a refused request leaves no trace. On
    PostgreSQL the attempt runs in the transaction the request's reads began (see
    :func:`end_read`); they had no effects to lose. SQLite ends the read transaction first
    (a commit, so loaded objects stay usable) so the write can begin with BEGIN IMMEDIATE.
    """
    tries = 0
    if session.in_transaction() and _is_sqlite(session):
        await session.commit()
    while True:
        try:
            await begin_write(session)
            return await attempt()
        except BaseException as exc:
            await session.rollback()
            if tries < retries and is_retryable(exc):
                tries += 1
                delay = min(0.5, 0.005 * (2**tries)) * random.random()
                log.info("retrying write after %s (attempt %d)", type(exc).__name__, tries)
                await asyncio.sleep(delay)
                continue
            raise


def _plain(values: Any, enums: list[int]) -> tuple[Any, ...]:
    """A row for COPY, which takes plain values: the enum columns' values as their text."""
    if not enums:
        return values if isinstance(values, tuple) else (values,)
    out = list(values)
    for i in enums:
        if isinstance(out[i], enum.Enum):
            out[i] = out[i].value
    return tuple(out)


async def copy_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    chunk: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Insert ``rows`` (dicts with the same keys) in order, in the session's transaction:
    COPY on PostgreSQL (a serial id follows the row order), executemany on SQLite. The
    database's triggers and constraints apply as to any INSERT."""
    if not rows:
        return
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        columns = list(rows[0])
        row_of = itemgetter(*columns)
        enums = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, Enum)]
        for i in range(0, len(rows), chunk):
            records = [_plain(row_of(r), enums) for r in rows[i : i + chunk]]
            await raw.copy_records_to_table(table.name, records=records, columns=columns)
            if progress:
                progress(min(i + chunk, len(rows)))
        return
    step = max(1, chunk // 10)
    for i in range(0, len(rows), step):
        await session.execute(insert(table), list(rows[i : i + step]))
        if progress:
            progress(min(i + step, len(rows)))


def driver_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """asyncpg's connection arguments for the engine's URL, as SQLAlchemy's dialect reads
    it: a libpq-style multi-host URL (``?host=h1:p1&host=h2:p2``) becomes lists of hosts
    and ports, and ``target_session_attrs`` is passed on, so both pools find the primary
    the same way. (Rendering the URL back to a DSN kept only the last ``host``.)"""
    import asyncpg

    _, kwargs = engine.dialect.create_connect_args(engine.url)
    accepted = inspect.signature(asyncpg.connect).parameters
    return {k: v for k, v in kwargs.items() if k in accepted and k != "dsn"}


async def connect_each_host(*args: Any, **kwargs: Any) -> Any:
    """``asyncpg.connect`` over a multi-host URL's hosts one at a time, each with the whole
    connect ``timeout``: asyncpg's own loop shares one timeout among them all, so a host
    gone from the network (no answer, no refusal) used it up and the next host — the new
    primary — was never tried. Hosts that refuse, are starting up, or are not what
    ``target_session_attrs`` asks for are passed over, as libpq does."""
    import asyncpg

    hosts, ports = kwargs.get("host"), kwargs.get("port")
    if not isinstance(hosts, list) or len(hosts) < 2:
        return await asyncpg.connect(*args, **kwargs)
    if not isinstance(ports, list):
        ports = [ports] * len(hosts)
    last: BaseException | None = None
    for host, port in zip(hosts, ports, strict=True):
        try:
            return await asyncpg.connect(*args, **{**kwargs, "host": host, "port": port})
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InternalClientError) as exc:
            last = exc
    assert last is not None
    raise last


def lost_connection(exc: BaseException, conn: Any = None) -> bool:
    """A driver error that means the connection is no use any more — the server ended the
    session, the socket closed, the server is (now) a read-only standby (25006, a switch
    of primaries) — rather than an answer about the request."""
    import asyncpg

    if conn is not None and is_closed(conn):
        return True
    state = sqlstate(exc)
    if session_ended(state) or state == READ_ONLY:
        return True
    return isinstance(
        exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError
    )


def is_closed(conn: Any) -> bool:
    """Whether a pooled asyncpg connection is closed. The pool detaches a connection the
    moment it sees it close, and then every call on it — ``is_closed()`` too — raises
    "connection has been released back to the pool" (an InterfaceError): closed, too."""
    import asyncpg

    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


class DriverPool:
    """PostgreSQL: asyncpg's own pool, for the hot routes that are one or two statements in
    autocommit (recording an exchange, reading a balance). Acquiring from it costs a
    fraction of a SQLAlchemy checkout, which was a good part of those routes' Python; its
    connections keep generic plans of those statements. It holds nothing but connections:
    opened on first use, closed with the app.

    A connection that breaks in use (the server ended the session, crashed, was demoted to
    a standby) is terminated and never goes back to the pool, and the request gets a
    :class:`ConnectionError` (503 ``unavailable``): whatever it was doing may or may not have
    taken effect, which a retry with the same Idempotency-Key settles. The next acquire opens
    a new connection to whichever host is the primary then."""

    def __init__(self, engine: AsyncEngine, max_size: int, connect_timeout: float = 5.0) -> None:
        self.connect_args = driver_connect_args(engine)
        self.connect_args.setdefault("timeout", connect_timeout)
        self.max_size = max_size
        self.pool: Any = None
        self.lock = asyncio.Lock()

    async def _pool(self) -> Any:
        import asyncpg

        if self.pool is None:
            async with self.lock:
                if self.pool is None:
                    self.pool = await asyncpg.create_pool(
                        connect=connect_each_host,
                        min_size=1,
                        max_size=self.max_size,
                        # every statement here finds its rows by key: a generic plan is as
                        # good as a custom one, and planning the write anew each time cost a
                        # quarter of its PostgreSQL CPU (measured)
                        server_settings={"plan_cache_mode": "force_generic_plan"},
                        **self.connect_args,
                    )
        return self.pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; a failure to connect (the server down, starting, refusing
        connections, out of slots, no host the primary) is a :class:`ConnectionError`,
        answered 503 as a SQLAlchemy checkout's would be; so is a connection lost in use."""
        try:
            pool = await self._pool()
            conn = await pool.acquire()
        except Exception as exc:  # any failure to connect: nothing was sent
            raise ConnectionError(f"cannot connect to the database: {exc}") from exc
        broken = False
        try:
            yield conn
        except Exception as exc:
            if lost_connection(exc, conn):
                broken = True
                raise ConnectionError(f"the database connection was lost: {exc}") from exc
            raise
        finally:
            await self._release(pool, conn, broken)

    @staticmethod
    async def _release(pool: Any, conn: Any, broken: bool) -> None:
        """Back to the pool; a broken connection is terminated first (the pool then opens a
        new one). A failure to reset a connection on release loses only that connection —
        it never replaces the request's own answer or error."""
        if broken and not is_closed(conn):
            conn.terminate()
        try:
            await pool.release(conn)
        except Exception as exc:
            log.info("dropped a pooled connection on release: %s", type(exc).__name__)
            if not is_closed(conn):
                conn.terminate()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


@asynccontextmanager
async def autocommit_driver(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg connection in autocommit: each statement is its own
    transaction (the one-call paths of :mod:`timebank.ledger.server_side`)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield (await conn.get_raw_connection()).driver_connection


# --- a read replica for reads that may lag ----------------------------------------------------

LAG_SQL = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()),"
    " 0) END"
)


class Replica:
    """A streaming replica (``TIMEBANK_REPLICA_DATABASE_URL``) for the reads that may lag by
    a few seconds — reports and the dashboard (docs/operations.md says which) — so they
    take no CPU from the primary's writes.

    Its lag is how far replay is behind what it has received (0 when it has replayed all it
    has; the time since the last replayed commit otherwise), read at most once per
    ``check_every`` seconds. While the replica lags more than ``max_lag`` seconds or cannot
    be reached, the reads go to the primary instead (bypassed), and come back by themselves."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_every: float = 1.0,
    ) -> None:
        self.engine = create_engine(
            settings.model_copy(update={"database_url": settings.replica_database_url})
        )
        self.max_lag = settings.replica_max_lag_seconds
        self.clock = clock
        self.check_every = check_every
        self.checked_at: float | None = None
        self.last_lag: float | None = None
        self.lock = asyncio.Lock()

    async def lag_seconds(self) -> float | None:
        """The replica's lag in seconds; ``None`` when it cannot be reached."""
        now = self.clock()
        if self.checked_at is not None and now - self.checked_at < self.check_every:
            return self.last_lag
        async with self.lock:
            if self.checked_at is not None and self.clock() - self.checked_at < self.check_every:
                return self.last_lag
            try:
                async with self.engine.connect() as conn:
                    value = (await conn.exec_driver_sql(LAG_SQL)).scalar()
                self.last_lag = round(float(value or 0), 3)
            except Exception as exc:  # unreachable: read from the primary meanwhile
                log.warning("read replica unreachable: %s", type(exc).__name__)
                self.last_lag = None
            self.checked_at = self.clock()
        return self.last_lag

    async def usable(self) -> bool:
        lag = await self.lag_seconds()
        return lag is not None and lag <= self.max_lag

    @asynccontextmanager
    async def reading(self, primary: AsyncSession) -> AsyncIterator[AsyncSession]:
        """A session on the replica when it is usable, else ``primary`` itself."""
        if not await self.usable():
            yield primary
            return
        async with AsyncSession(self.engine, expire_on_commit=False, autoflush=False) as s:
            yield s

    async def close(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def reads_that_may_lag(
    replica: Replica | None, primary: AsyncSession
) -> AsyncIterator[AsyncSession]:
    """The session for reads that may lag: the replica's when one is set and usable."""
    if replica is None:
        yield primary
        return
    async with replica.reading(primary) as session:
        yield session
