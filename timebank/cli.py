"""The ``timebank`` command: serve, database migrations, API keys, console users, demo data."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from timebank.config import get_settings

T = TypeVar("T")


def _with_session(fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from timebank.db import create_engine

    async def run() -> T:
        engine = create_engine(get_settings())
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                return await fn(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _upgrade() -> None:
    from alembic import command
    from timebank.migrations import alembic_config

    command.upgrade(alembic_config(get_settings().database_url), "head")


@click.group()
def main() -> None:
    """Timebank ledger service."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Create a demo time bank and print an admin key.")
def serve(host: str, port: int, workers: int, demo: bool) -> None:
    """Apply pending migrations (once, before workers start), then serve.

    Slow clients are cut off (TIMEBANK_HEADER_TIMEOUT_SECONDS, TIMEBANK_BODY_TIMEOUT_SECONDS,
    TIMEBANK_MAX_CONNECTIONS per worker); see docs/security.md."""
    import uvicorn

    from timebank.web.server import uvicorn_options

    _upgrade()
    if demo:
        _demo(host, port)
        _demo_signing_key()
    uvicorn.run(
        "timebank.app:create_server_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(get_settings()),
    )


DEMO_SIGNING_KEY = Path("timebank-signing.key")


def _demo_signing_key() -> None:
    """With --demo and no signing key configured, a local one (made once) signs the demo's
    checkpoints, so the dashboard and the proofs have something to show."""
    import os

    from timebank.evidence import note

    settings = get_settings()
    if settings.signing_key or settings.signing_key_file:
        return
    if not DEMO_SIGNING_KEY.exists():
        signer = note.new_signer("demo")
        fd = os.open(DEMO_SIGNING_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(signer.encode() + "\n")
    signer = note.parse_signer(DEMO_SIGNING_KEY.read_text())
    os.environ["TIMEBANK_SIGNING_KEY_FILE"] = str(DEMO_SIGNING_KEY.resolve())
    get_settings.cache_clear()
    click.echo(
        f"Checkpoints are signed with {DEMO_SIGNING_KEY} (a demo key); verifier key:\n"
        f"  {signer.verifier}\n",
        err=True,
    )


DEMO_USER = "admin@demo.example"
DEMO_FUNDER = "funder@demo.example"


def _demo(host: str, port: int) -> None:
    """The demo bank (once), an admin key for it, and two console users — an admin and a
    funder, who lands on the impact dashboard — each made once, their password printed
    when they are made."""
    import secrets

    from timebank.access import SYSTEM, Role
    from timebank.auth.models import ConsoleUser
    from timebank.auth.service import create_key
    from timebank.auth.users import create_user
    from timebank.db import utcnow
    from timebank.timebanks.models import TimeBank
    from timebank.tools.demo import create_demo

    people = ((DEMO_USER, Role.admin, "Demo admin"), (DEMO_FUNDER, Role.funder, "Demo funder"))

    async def run(session: AsyncSession) -> tuple[str, str, bool, dict[str, str | None]]:
        tb = (await session.execute(select(TimeBank).where(TimeBank.slug == "demo"))).scalar()
        created = tb is None
        if tb is None:
            tb = await create_demo(session, "demo")
        key = await create_key(session, SYSTEM, role=Role.admin, timebank_id=tb.id, label="demo")
        await session.commit()
        passwords: dict[str, str | None] = {}
        for email, role, name in people:
            user = await session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email))
            passwords[email] = None
            if user is None:
                passwords[email] = "-".join(secrets.token_hex(3) for _ in range(3))
                await create_user(
                    session,
                    SYSTEM,
                    email=email,
                    password=passwords[email] or "",
                    role=role,
                    timebank_ids=[tb.id],
                    now=utcnow(),
                    name=name,
                )
        return tb.slug, key.secret, created, passwords

    slug, secret, created, passwords = _with_session(run)
    base = f"http://{host}:{port}"
    lines = []
    for (email, _, name), what in zip(
        people, ("runs the bank", "reads its impact: charts and downloads"), strict=True
    ):
        password = passwords[email]
        lines.append(f"  {name} ({what}):\n")
        if password:
            lines.append(f"    email {email}\n    password {password}   (shown once)\n")
        else:
            lines.append(
                f"    email {email}, with the password printed when it was made\n"
                f"    (forgotten? timebank users password {email})\n"
            )
    click.echo(
        f"\nDemo time bank '{slug}' {'created' if created else 'already there'}.\n"
        f"\nConsole: {base}/console  — sign in as\n{''.join(lines)}"
        f"  The funder lands on the impact dashboard ({base}/console/dashboard).\n"
        f"\nAdmin key for it (shown once): {secret}\n\nTry:\n"
        f"  curl -s -H 'Authorization: Bearer {secret}' {base}/v1/timebanks/{slug}/members\n"
        f"API docs: {base}/schema\n",
        err=True,
    )


@main.group()
def db() -> None:
    """Database migrations, backups and restores."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Upgrade to REVISION (default: head)."""
    from alembic import command
    from timebank.migrations import alembic_config

    command.upgrade(alembic_config(get_settings().database_url), revision)


@db.command()
@click.argument("revision", default="-1")
def downgrade(revision: str) -> None:
    """Downgrade to REVISION (default: one step back; 'base' for an empty database)."""
    from alembic import command
    from timebank.migrations import alembic_config

    command.downgrade(alembic_config(get_settings().database_url), revision)


@db.command()
def current() -> None:
    """Show the current revision."""
    from alembic import command
    from timebank.migrations import alembic_config

    command.current(alembic_config(get_settings().database_url), verbose=False)


@db.command()
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: backups/timebank-<UTC time>.db|.dump).",
)
def backup(output: Path | None) -> None:
    """Write a consistent backup while the service runs (SQLite: online backup API;
    PostgreSQL: pg_dump -Fc). Prints the file's path."""
    from timebank.tools import backup as backups

    try:
        path = backups.backup(get_settings(), output)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(path))


@db.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the contents of a database that has data.")
def restore(path: Path, force: bool) -> None:
    """Restore a backup into the configured (fresh, empty) database, then check the ledger.
    Stop the service first; `timebank serve` upgrades an older schema on start."""
    from timebank.tools import backup as backups

    settings = get_settings()
    try:
        backups.restore(settings, path, force=force)
        click.echo(f"restored {path} (schema revision {backups.revision(settings)})", err=True)
        problems = backups.check(settings)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    _report_check(problems)


@db.command()
def check() -> None:
    """Check the ledger invariants from the tables (exit status 1 if any is broken)."""
    from timebank.tools import backup as backups

    try:
        problems = backups.check(get_settings())
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    _report_check(problems)


def _report_check(problems: list[str]) -> None:
    for problem in problems:
        click.echo(f"ledger check FAILED: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(
        "ledger check ok: every exchange sums to zero, every stored balance equals "
        "its postings, every time bank sums to zero",
        err=True,
    )


@main.group()
def demo() -> None:
    """Generated communities for demos and benchmarks."""


@demo.command("generate")
@click.option("--timebank", "slug", required=True, help="Created (with defaults) if missing.")
@click.option("--members", default=1000, show_default=True, type=click.IntRange(min=2))
@click.option("--exchanges", default=20_000, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=1, show_default=True, type=int)
def demo_generate(slug: str, members: int, exchanges: int, seed: int) -> None:
    """Add a realistic generated community to a time bank, in one transaction."""
    import re
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from timebank.tools.demo import generate, get_or_create_bank

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}", slug):
        raise click.BadParameter(
            "a slug: lower-case letters, digits and '-'", param_hint="--timebank"
        )
    started = time.monotonic()
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        async def run(session: AsyncSession) -> Any:
            tb, _ = await get_or_create_bank(session, slug)
            return await generate(
                session, tb, members=members, exchanges=exchanges, seed=seed, progress=progress
            )

        out = _with_session(run)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(out.by_kind.items()))
    click.echo(
        f"time bank '{slug}': +{out.members} members, +{out.organisations} organisations, "
        f"+{out.exchanges} exchanges ({kinds}), {out.postings} postings, "
        f"{out.first_day} to {out.last_day}, in {time.monotonic() - started:.1f} s",
        err=True,
    )


@main.group()
def maintenance() -> None:
    """Housekeeping (idempotent, safe to run from cron)."""


@maintenance.command("expire-pending")
def expire_pending() -> None:
    """Expire proposals older than each time bank's pending_expiry_days."""
    from timebank.ledger.proposals import expire_stale
    from timebank.timebanks.models import TimeBank

    async def run(session: AsyncSession) -> int:
        banks = (await session.execute(select(TimeBank.id, TimeBank.pending_expiry_days))).all()
        total = 0
        for tb_id, days in banks:
            total += await expire_stale(session, tb_id, days)
        await session.commit()
        return total

    click.echo(f"expired {_with_session(run)} pending exchange(s)", err=True)


@maintenance.command("prune-events")
@click.option("--days", default=90, show_default=True, type=int, help="Keep at least this long.")
def prune_events(days: int) -> None:
    """Delete events (and their webhook deliveries) older than --days (never under 90)."""
    from datetime import timedelta

    from timebank.db import utcnow
    from timebank.events.feed import RETENTION, prune

    async def run(session: AsyncSession) -> int:
        n = await prune(session, utcnow(), max(timedelta(days=days), RETENTION))
        await session.commit()
        return n

    click.echo(f"pruned {_with_session(run)} event(s)", err=True)


@main.group()
def webhooks() -> None:
    """Webhook deliveries (docs/events.md)."""


@webhooks.command("run")
@click.option("--once", is_flag=True, help="One round: queue, send what is due, then stop.")
def webhooks_run(once: bool) -> None:
    """Send webhook deliveries until stopped (Ctrl-C). `timebank serve` runs one in each
    worker already; this one is for a machine of its own, or with
    TIMEBANK_WEBHOOKS_DISPATCHER=false on the servers."""
    from timebank.db import create_engine
    from timebank.events.dispatch import Dispatcher

    settings = get_settings()

    async def run() -> int:
        engine = create_engine(settings)
        dispatcher = Dispatcher(
            async_sessionmaker(engine, expire_on_commit=False, autoflush=False),
            allow_private=settings.webhooks_allow_private,
        )
        try:
            if once:
                return await dispatcher.tick()
            await dispatcher.run()
            return 0
        finally:
            await dispatcher.close()
            await engine.dispose()

    try:
        sent = asyncio.run(run())
    except KeyboardInterrupt:
        return
    click.echo(f"tried {sent} webhook delivery attempt(s)", err=True)


@maintenance.command("purge-idempotency")
@click.option("--hours", default=48, show_default=True, type=int, help="Keep at least this long.")
def purge_idempotency(hours: int) -> None:
    """Delete stored idempotency results older than --hours (never under 24)."""
    from datetime import timedelta

    from timebank.db import utcnow
    from timebank.idempotency import purge_expired

    async def run(session: AsyncSession) -> int:
        n = await purge_expired(session, utcnow() - timedelta(hours=max(hours, 24)))
        await session.commit()
        return n

    click.echo(f"purged {_with_session(run)} idempotency record(s)", err=True)


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--role", type=click.Choice(["admin", "broker", "funder"]), required=True)
@click.option("--timebank", "slug", default=None, help="Scope to one time bank (default: global).")
@click.option("--label", default=None)
def keys_create(role: str, slug: str | None, label: str | None) -> None:
    """Create a key and print its secret alone on stdout."""
    from timebank.access import SYSTEM, Role
    from timebank.auth.service import create_key
    from timebank.errors import DomainError
    from timebank.timebanks.models import TimeBank

    async def run(session: AsyncSession) -> str:
        tb_id = None
        if slug is not None:
            tb = (await session.execute(select(TimeBank).where(TimeBank.slug == slug))).scalar()
            if tb is None:
                raise click.ClickException(f"no time bank '{slug}'")
            tb_id = tb.id
        try:
            created = await create_key(
                session, SYSTEM, role=Role(role), timebank_id=tb_id, label=label
            )
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
        await session.commit()
        return created.secret

    click.echo(_with_session(run))


@keys.command("list")
def keys_list() -> None:
    """List keys as a table (never secrets)."""
    from rich.console import Console
    from rich.table import Table

    from timebank.auth.models import ApiKey
    from timebank.db import utcnow
    from timebank.timebanks.models import TimeBank

    async def run(session: AsyncSession) -> list[Any]:
        rows = await session.execute(
            select(ApiKey, TimeBank.slug)
            .outerjoin(TimeBank, TimeBank.id == ApiKey.timebank_id)
            .order_by(ApiKey.id)
        )
        return list(rows.tuples())

    now = utcnow()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "prefix", "time bank", "role", "label", "status", "last used"):
        table.add_column(column, no_wrap=column in ("id", "prefix"))
    for key, slug in _with_session(run):
        if key.revoked_at is not None:
            status = f"revoked {key.revoked_at:%Y-%m-%d}"
        elif key.expires_at is not None and key.expires_at <= now:
            status = f"expired {key.expires_at:%Y-%m-%d}"
        else:
            status = "active"
        table.add_row(
            str(key.id),
            f"{key.prefix}…",
            slug or "(all)",
            key.role.value,
            key.label or "",
            status,
            f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never",
        )
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id (as `timebank keys list` shows it)."""
    import uuid

    from timebank.access import SYSTEM
    from timebank.auth.service import revoke_key
    from timebank.errors import DomainError

    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise click.ClickException(
            f"'{key_id}' is not a key id; ids look like 01937a40-0000-7000-8000-00000000beef "
            "(see `timebank keys list`)"
        ) from None

    async def run(session: AsyncSession) -> None:
        try:
            await revoke_key(session, SYSTEM, parsed, None)
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
        await session.commit()

    _with_session(run)
    click.echo(f"revoked {key_id}", err=True)


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--timebank", "slug", required=True, help="The time bank's slug.")
@click.option("--sheet", default=None, help="The sheet's name (default: the file name).")
@click.option("--commit", "record", is_flag=True, help="Record the ready lines.")
@click.option("--atomic", is_flag=True, help="With --commit: all the ready lines or none.")
@click.option(
    "--separate",
    "separate",
    type=int,
    multiple=True,
    metavar="LINE",
    help="This line repeats another line or an exchange in the ledger, but is a separate "
    "exchange: record it (repeatable).",
)
def import_sheet(
    path: Path,
    slug: str,
    sheet: str | None,
    record: bool,
    atomic: bool,
    separate: tuple[int, ...],
) -> None:
    """Preview a paper time sheet (CSV or XLSX), and with --commit record it. Lines that
    repeat an earlier line or an exchange in the ledger are listed and recorded only with
    --separate LINE. Exit code 1 if any line is refused."""
    from collections import Counter

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from timebank.access import SYSTEM
    from timebank.errors import DomainError
    from timebank.imports import service
    from timebank.imports.sheet import sheet_name_of
    from timebank.timebanks.models import TimeBank

    content = path.read_bytes()

    async def run(session: AsyncSession) -> Any:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            transient=True,
            console=Console(stderr=True),
        ) as progress:
            task = progress.add_task(f"Reading and checking {path.name}", total=2)
            tb = (await session.execute(select(TimeBank).where(TimeBank.slug == slug))).scalar()
            if tb is None:
                raise click.ClickException(f"no time bank '{slug}'")
            try:
                found = await service.preview(
                    session,
                    SYSTEM,
                    tb,
                    content,
                    sheet=sheet or sheet_name_of(path.name),
                    filename=path.name,
                )
                for number in separate:
                    found = await service.mark_separate(session, SYSTEM, tb, found.id, number, True)
                progress.update(task, advance=1, description="Recording the ready lines")
                if record:
                    found = await service.commit(session, SYSTEM, tb, found.id, atomic=atomic)
            except DomainError as exc:
                raise click.ClickException(exc.detail) from exc
            progress.update(task, advance=1)
            return found

    found = _with_session(run)
    counts = service.summary(found.lines)
    said = {"already_recorded": "already recorded", "repeat": "repeats"}
    parts = [f"{n} {said.get(k, k)}" for k, n in counts.items() if n and k != "lines"]
    click.echo(f"{path.name} (sheet '{found.sheet}'): {counts['lines']} lines: " + ", ".join(parts))
    refused = [line for line in found.lines if line["status"] in ("refused", "conflict")]
    if refused:
        by_reason = Counter(line["error"]["code"] for line in refused)
        click.echo("refused by reason: " + ", ".join(f"{c} {n}" for c, n in by_reason.items()))
        for line in refused:
            click.echo(
                f"  line {line['line']}: {line['error']['code']}: {line['error']['message']}"
            )
    repeats = [line for line in found.lines if line["status"] == "repeat"]
    if repeats:
        click.echo(
            "repeats (not recorded; if one is a separate exchange, run again with --separate LINE):"
        )
        for line in repeats:
            click.echo(f"  line {line['line']}: {line['error']['message']}")
    if not record and counts["ready"]:
        click.echo("nothing recorded yet: run again with --commit to record the ready lines")
    sys.exit(1 if refused else 0)


@main.group()
def users() -> None:
    """Console users (people who sign in at /console)."""


def _read_password() -> str:
    """Twice at a terminal (not echoed); else the first line of stdin."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@users.command("create")
@click.option("--role", type=click.Choice(["admin", "broker", "funder"]), required=True)
@click.option("--email", required=True)
@click.option(
    "--timebank",
    "slugs",
    multiple=True,
    help="A time bank the user works in (repeat for several; none: a global admin).",
)
@click.option("--name", default=None, help="The person's name, shown in the console.")
def users_create(role: str, email: str, slugs: tuple[str, ...], name: str | None) -> None:
    """Create a console user. The password is read from stdin when it is not a terminal,
    else prompted for twice."""
    from timebank.access import SYSTEM, Role
    from timebank.auth.service import timebanks_by_slug
    from timebank.auth.users import create_user
    from timebank.db import utcnow
    from timebank.errors import DomainError

    password = _read_password()

    async def run(session: AsyncSession) -> str:
        try:
            banks = await timebanks_by_slug(session, list(slugs))
            user = await create_user(
                session,
                SYSTEM,
                email=email,
                password=password,
                role=Role(role),
                timebank_ids=list(banks.values()),
                now=utcnow(),
                name=name,
            )
        except DomainError as exc:
            errors = exc.extra.get("errors")
            raise click.ClickException(
                "; ".join(f"{e['field']}: {e['message']}" for e in errors) if errors else exc.detail
            ) from exc
        return str(user.id)

    click.echo(_with_session(run))


@users.command("list")
def users_list() -> None:
    """List console users (never passwords)."""
    from timebank.access import SYSTEM
    from timebank.auth.users import list_users
    from timebank.timebanks.models import TimeBank

    async def run(session: AsyncSession) -> list[str]:
        slugs = dict((await session.execute(select(TimeBank.id, TimeBank.slug))).tuples().all())
        lines = []
        for user, banks in await list_users(session, SYSTEM, None):
            state = "disabled" if user.disabled_at else "active"
            where = ",".join(slugs[b] for b in banks) or "global"
            lines.append(f"{user.id}  {user.email}  {user.role.value:7} {where}  {state}")
        return lines

    for line in _with_session(run):
        click.echo(line)


@users.command("password")
@click.argument("user")
def users_password(user: str) -> None:
    """Set a console user's password (by email or id): from stdin when it is not a terminal,
    else prompted for twice. Their sessions end."""
    from timebank.access import SYSTEM
    from timebank.auth.users import find_user, set_password
    from timebank.db import utcnow
    from timebank.errors import DomainError

    password = _read_password()

    async def run(session: AsyncSession) -> str:
        try:
            found = await find_user(session, user)
            await set_password(session, SYSTEM, found.id, password, utcnow())
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
        return found.email

    click.echo(f"password set for {_with_session(run)}", err=True)


@users.command("disable")
@click.argument("user")
def users_disable(user: str) -> None:
    """Disable a console user (by email or id): their sessions end at once."""
    from timebank.access import SYSTEM
    from timebank.auth.users import disable_user, find_user
    from timebank.db import utcnow
    from timebank.errors import DomainError

    async def run(session: AsyncSession) -> str:
        try:
            found = await find_user(session, user)
            await disable_user(session, SYSTEM, found.id, utcnow())
        except DomainError as exc:
            raise click.ClickException(exc.detail) from exc
        return found.email

    click.echo(f"disabled {_with_session(run)}", err=True)


if __name__ == "__main__":
    sys.exit(main())


# --- evidence (docs/evidence.md) ----------------------------------------------------------


@keys.group("signing")
def signing() -> None:
    """The Ed25519 key that signs checkpoints."""


@signing.command("create")
@click.option("--name", required=True, help="The key's name, e.g. mybank-2026 (no spaces or '+').")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File for the private key (written 0600; refused if it exists).",
)
def signing_create(name: str, output: Path) -> None:
    """Make a signing key: the private key goes to OUTPUT (point TIMEBANK_SIGNING_KEY_FILE at
    it); the verifier key, to publish, is printed."""
    import os

    from timebank.evidence import note

    try:
        signer = note.new_signer(name)
    except note.SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise click.ClickException(f"{output} exists: choose another file") from exc
    with os.fdopen(fd, "w") as f:
        f.write(signer.encode() + "\n")
    click.echo(signer.verifier)
    click.echo(
        f"Private key written to {output}. Set TIMEBANK_SIGNING_KEY_FILE={output}, publish the\n"
        "verifier key above, and keep older verifier keys in TIMEBANK_VERIFIER_KEYS.",
        err=True,
    )


def _signer_or_fail() -> Any:
    from timebank.evidence import note
    from timebank.evidence.seal import load_signer

    try:
        return load_signer(get_settings())
    except (OSError, note.SigningKeyError) as exc:
        raise click.ClickException(f"the signing key: {exc}") from exc


@main.command()
@click.option("--timebank", "slug", default=None, help="One bank (default: every bank).")
@click.option("--checkpoint", "force", is_flag=True, help="Sign a checkpoint even if none is due.")
def seal(slug: str | None, force: bool) -> None:
    """Seal every exchange not yet in its bank's chain, then sign a checkpoint if one is due
    (what the sealer in `timebank serve` does continuously)."""
    from timebank.db import create_engine
    from timebank.evidence import seal as sealer

    settings = get_settings()
    signer = _signer_or_fail()

    async def run() -> list[str]:
        engine = create_engine(settings)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        out = []
        try:
            banks = await sealer.banks(sessions)
            if slug is not None:
                banks = [b for b in banks if b[1] == slug]
                if not banks:
                    raise click.ClickException(f"no time bank {slug!r}")
            for tb, name in banks:
                n = await sealer.seal(sessions, tb)
                line = f"{name}: {'busy (another sealer)' if n is None else f'{n} sealed'}"
                if signer is not None and n is not None:
                    made = await sealer.checkpoint(sessions, tb, signer, settings, force=force)
                    if made is not None:
                        line += f", checkpoint of {made.size} signed"
                out.append(line)
        finally:
            await engine.dispose()
        return out

    for line in asyncio.run(run()):
        click.echo(line)
    if signer is None:
        click.echo("No signing key (TIMEBANK_SIGNING_KEY_FILE): no checkpoint signed.", err=True)


@main.command()
@click.option("--timebank", "slug", default=None, help="One bank (default: every bank).")
@click.option(
    "--from-checkpoint",
    "from_checkpoint",
    type=click.IntRange(min=0),
    default=None,
    help="Trust the chain up to this signed checkpoint's size; recompute what follows.",
)
@click.option("--key", "keys_", multiple=True, help="A trusted verifier key (repeatable).")
def verify(slug: str | None, from_checkpoint: int | None, keys_: tuple[str, ...]) -> None:
    """Recompute every chain and tree head, check each checkpoint's signature and their
    consistency, every exchange's zero sum, each account's balance and each posting's
    running balance, and the report rollups. Exit status 0 only when all holds."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from timebank.db import create_engine
    from timebank.evidence import note
    from timebank.evidence.seal import trusted_keys
    from timebank.evidence.verify import verify as run_verify

    settings = get_settings()
    try:
        keys = trusted_keys(settings, list(keys_))
    except (OSError, note.SigningKeyError) as exc:
        raise click.ClickException(f"a key: {exc}") from exc
    console = Console(stderr=True)

    async def run() -> Any:
        engine = create_engine(settings)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        tasks: dict[str, Any] = {}
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=max(total, 1))
                bar.update(tasks[what], completed=done, total=max(total, 1))

            try:
                return await run_verify(
                    sessions,
                    settings,
                    keys,
                    slug=slug,
                    from_checkpoint=from_checkpoint,
                    progress=progress,
                )
            finally:
                await engine.dispose()

    report = asyncio.run(run())
    click.echo("Checked:")
    for what, n in report.checked.items():
        click.echo(f"  {n:>10}  {what}")
    for line in report.notes:
        click.echo(f"Note: {line}")
    if report.ok:
        click.echo("All holds.")
        return
    click.echo(f"{len(report.findings)} problems:")
    for finding in report.findings:
        click.echo(f"  {finding}")
    sys.exit(1)
