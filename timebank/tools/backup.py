"""Backups, restores and a ledger check (``timebank db backup|restore|check``).

A backup is one consistent snapshot taken while the service keeps writing: SQLite through
its online backup API (one step, under a read transaction, so no write is half in it), and
PostgreSQL through ``pg_dump -Fc`` (one REPEATABLE READ snapshot). A restore goes into a
fresh, empty database and is followed by :func:`ledger_problems`, which checks SPEC §2 from
the tables: every exchange's postings sum to zero, every account's stored balance equals the
sum of its postings, and every time bank's balances sum to zero.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from timebank.config import Settings

DEFAULT_DIR = Path("backups")
T = TypeVar("T")


class BackupError(Exception):
    """A backup or restore that could not be done; nothing was changed."""


def default_output(settings: Settings, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return DEFAULT_DIR / f"timebank-{stamp}.{'db' if settings.is_sqlite else 'dump'}"


def backup(settings: Settings, output: Path | None = None) -> Path:
    """Write a consistent backup of the database to ``output`` and return its path. The file
    appears only once complete (written aside, then renamed)."""
    output = output or default_output(settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        if settings.is_sqlite:
            _sqlite_backup(_sqlite_path(settings), partial, settings.sqlite_busy_timeout_ms)
        else:
            _pg_run("pg_dump", settings, ["--format=custom", f"--file={partial}"])
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def restore(settings: Settings, source: Path, *, force: bool = False) -> None:
    """Restore ``source`` (a file from :func:`backup`) into the configured database, which
    must be empty unless ``force`` (then its tables are replaced). Stop the service first."""
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    if not force and _reach(_has_tables(settings)):
        raise BackupError(
            "the target database is not empty; restore into a fresh database "
            "(or pass --force to replace its contents)"
        )
    if settings.is_sqlite:
        _sqlite_restore(source, _sqlite_path(settings), settings.sqlite_busy_timeout_ms)
        return
    args = ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    if force:
        args += ["--clean", "--if-exists"]
    _pg_run("pg_restore", settings, [*args, "--dbname", _pg_dbname(settings), str(source)])


def check(settings: Settings) -> list[str]:
    """The SPEC §2 invariants that the database at ``settings`` breaks (empty: all hold)."""
    from timebank.db import create_engine

    async def run() -> list[str]:
        engine = create_engine(settings)
        try:
            async with async_sessionmaker(engine)() as session:
                return await ledger_problems(session)
        finally:
            await engine.dispose()

    return _reach(run())


async def ledger_problems(
    session: AsyncSession, sample: int = 5, *, rollups: bool = True
) -> list[str]:
    """Check the ledger from its tables, as an auditor would after a restore (``rollups``:
    the report rollups against the ledger too)."""
    from timebank.ledger.models import Account, Exchange, ExchangeStatus, Posting

    problems: list[str] = []

    def note(what: str, ids: list[object]) -> None:
        if ids:
            shown = ", ".join(str(i) for i in ids[:sample])
            problems.append(f"{len(ids)} {what}: {shown}{' …' if len(ids) > sample else ''}")

    unbalanced = await session.execute(
        select(Posting.exchange_id)
        .group_by(Posting.exchange_id)
        .having(func.sum(Posting.minutes) != 0)
    )
    note("exchange(s) whose postings do not sum to zero", list(unbalanced.scalars()))

    count = func.count(Posting.id)
    recorded = Exchange.status == ExchangeStatus.recorded
    posted = (
        select(Exchange.id, recorded.label("recorded"), count.label("n"))
        .outerjoin(Posting, Posting.exchange_id == Exchange.id)
        .group_by(Exchange.id, Exchange.status)
    ).subquery()
    misposted = await session.execute(
        select(posted.c.id).where(
            ((posted.c.recorded) & (posted.c.n < 2)) | ((~posted.c.recorded) & (posted.c.n > 0))
        )
    )
    note(
        "exchange(s) with postings that do not match their status (recorded: ≥ 2, else none)",
        list(misposted.scalars()),
    )

    flows = (
        select(
            Posting.account_id.label("account_id"),
            func.sum(Posting.minutes).label("total"),
            func.sum(func.abs(Posting.minutes)).label("gross"),
        ).group_by(Posting.account_id)
    ).subquery()
    total = func.coalesce(flows.c.total, 0)
    earned = (func.coalesce(flows.c.gross, 0) + total) // 2
    wrong = await session.execute(
        select(Account.id)
        .outerjoin(flows, flows.c.account_id == Account.id)
        .where(
            (Account.balance_minutes != total)
            | (Account.earned_minutes != earned)
            | (Account.spent_minutes != earned - total)
        )
    )
    note("account(s) whose stored balance is not the sum of their postings", list(wrong.scalars()))

    banks = await session.execute(
        select(Account.timebank_id)
        .group_by(Account.timebank_id)
        .having(func.sum(Account.balance_minutes) != 0)
    )
    note("time bank(s) whose balances do not sum to zero", list(banks.scalars()))

    if not rollups:
        return problems
    from timebank.reports.rollups import rollup_mismatches

    for what, n in (await rollup_mismatches(await session.connection())).items():
        if n:
            problems.append(f"{n} report rollup row(s) {what} (see timebank/reports/rollups.py)")
    return problems


def revision(settings: Settings) -> str | None:
    """The schema revision of the database (``None`` if it has none)."""
    from timebank.db import create_engine

    async def run() -> str | None:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
                return ", ".join(sorted(r[0] for r in rows)) or None
        finally:
            await engine.dispose()

    return _reach(run())


def _reach(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` against the database; a database that cannot be reached is a
    :class:`BackupError` (a message, not a traceback)."""
    try:
        return asyncio.run(work)
    except (OSError, SQLAlchemyError) as exc:
        raise BackupError(f"cannot use the database: {type(exc).__name__}: {exc}") from exc


async def _has_tables(settings: Settings) -> bool:
    if settings.is_sqlite:
        path = _sqlite_path(settings)
        if not path.exists():
            return False
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        conn.close()
        return bool(row[0])
    from timebank.db import create_engine

    engine = create_engine(settings)
    try:
        async with engine.connect() as aconn:
            n = await aconn.scalar(
                text(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            )
            return bool(n)
    finally:
        await engine.dispose()


# --- SQLite ------------------------------------------------------------------------------


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"not a SQLite database file: {settings.database_url}")
    return Path(database)


def _sqlite_backup(source: Path, target: Path, busy_timeout_ms: int) -> None:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    src = sqlite3.connect(source, timeout=busy_timeout_ms / 1000)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one consistent read snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        _sqlite_quick_check(dst, target)
    finally:
        dst.close()
        src.close()


def _sqlite_restore(source: Path, target: Path, busy_timeout_ms: int) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        _sqlite_quick_check(src, source)
        target.parent.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(target, timeout=busy_timeout_ms / 1000)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_quick_check(conn: sqlite3.Connection, path: Path) -> None:
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a timebank SQLite database: {exc}") from exc
    if result != "ok":
        raise BackupError(f"{path} fails SQLite's integrity check: {result}")


# --- PostgreSQL --------------------------------------------------------------------------


def find_pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore``: from ``TIMEBANK_PG_BIN``, the PATH, or the newest
    ``/usr/lib/postgresql/*/bin`` (it must be at least the server's major version)."""
    candidates = []
    if os.environ.get("TIMEBANK_PG_BIN"):
        candidates.append(Path(os.environ["TIMEBANK_PG_BIN"]) / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))

    def version(p: Path) -> int:
        match = re.search(r"/postgresql/(\d+)/", str(p))
        return int(match.group(1)) if match else 0

    candidates += sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=version, reverse=True
    )
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise BackupError(f"{name} not found (install the PostgreSQL client, or set TIMEBANK_PG_BIN)")


def _pg_url(settings: Settings) -> URL:
    return make_url(settings.database_url)


def _pg_dbname(settings: Settings) -> str:
    name = _pg_url(settings).database
    if not name:
        raise BackupError("the database URL names no database")
    return name


def _pg_hosts(url: URL) -> tuple[str | None, str | None]:
    """libpq's PGHOST and PGPORT for the URL's ``host`` query parameters: one, or several
    (``?host=h1:5432&host=h2:5432``, a primary and its standbys) as comma-separated lists,
    so the tools reach whichever host ``target_session_attrs`` picks, as the service does."""
    raw = url.query.get("host")
    items = [raw] if isinstance(raw, str) else list(raw or ())
    port = url.query.get("port")
    default_port = port if isinstance(port, str) else ""
    if not items:
        return None, default_port or None
    hosts, ports = [], []
    for item in items:
        host, sep, p = item.rpartition(":") if not item.startswith("/") else (item, "", "")
        hosts.append(host if sep else item)
        ports.append(p if sep else default_port)
    return ",".join(hosts), (",".join(ports) if any(ports) else None)


def _pg_env(settings: Settings) -> dict[str, str]:
    """libpq settings for the service's database URL, passed in the environment so a
    password never shows in a process list."""
    url = _pg_url(settings)

    def query(name: str) -> str | None:
        value = url.query.get(name)
        if isinstance(value, tuple):
            value = value[0] if value else None
        return value

    hosts, ports = _pg_hosts(url)
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", url.host or hosts),
        ("PGPORT", str(url.port) if url.port else ports),
        ("PGTARGETSESSIONATTRS", query("target_session_attrs")),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
        ("PGSSLMODE", query("sslmode") or query("ssl")),
    ):
        if value:
            env[var] = str(value)
    return env


def _pg_run(tool: str, settings: Settings, args: list[str]) -> None:
    done = subprocess.run(
        [find_pg_tool(tool), *args],
        env=_pg_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")
