"""Paper time sheets, one importer for the API, the CLI and the console (SPEC §3.10, §7.7):
:func:`preview` reads a sheet, resolves every line and judges it as the batch would (limits
in line order included) without writing an exchange; :func:`commit` records the lines that
were ready, as one batch; :func:`discard` drops a preview. A line's ``external_ref`` is
``<sheet>/<reference column>`` or ``<sheet>/<line number>``, so a sheet committed twice,
uploaded again or overlapping lines typed in by hand records nothing twice."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.db import utcnow
from timebank.errors import DomainError, ImportClosed, InvalidInput, NotFound
from timebank.idempotency import Claim
from timebank.imports.models import ImportStatus, SheetImport
from timebank.imports.resolve import Directory, Party, Unresolved
from timebank.imports.sheet import (
    Row,
    Sheet,
    SheetError,
    date_of,
    minutes_of,
    normalise,
    read,
)
from timebank.ledger.batch import record_batch
from timebank.ledger.models import Exchange, ExchangeKind, ExchangeStatus
from timebank.timebanks.models import Category, TimeBank

DATE_FORMATS = "YYYY-MM-DD or DD/MM/YYYY"
MAX_REF = 200


def _refusal(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "field": field, **extra}


def _of_domain(exc: DomainError) -> dict[str, Any]:
    errors = exc.extra.get("errors") or []
    field = errors[0]["field"] if errors else None
    message = errors[0]["message"] if len(errors) == 1 else exc.detail
    return _refusal(exc.code, message, field)


class _Categories:
    def __init__(self, rows: list[Category]) -> None:
        self.by_id = {c.id: c.slug for c in rows}
        self.by_key = {normalise(c.slug): c.slug for c in rows}
        self.by_key |= {normalise(c.name): c.slug for c in rows}
        self.slugs = sorted(c.slug for c in rows)

    def slug(self, cell: str) -> str:
        found = self.by_key.get(normalise(cell))
        if found is None:
            raise ValueError(
                f"no category '{cell}' in this time bank; the categories are "
                + ", ".join(self.slugs)
            )
        return found


def _line(
    row: Row,
    sheet: str,
    directory: Directory,
    categories: _Categories,
    chosen: dict[str, str] | None = None,
    separate: bool = False,
) -> dict[str, Any]:
    """One row as the preview shows it: parsed and resolved, or refused with its reason.
    ``chosen``: the party a broker picked for a side (its id), instead of the cell's name;
    ``separate``: a broker said the line is a separate exchange, though it repeats another."""
    cells = row.cells
    chosen = chosen or {}
    own_ref = cells.get("reference") or str(row.number)
    line: dict[str, Any] = {
        "line": row.number,
        "formulas": row.formulas,
        "chosen": chosen,
        "separate": separate,
        "repeats": None,
        "external_ref": f"{sheet}/{own_ref}"[:MAX_REF],
        "cells": cells,
        "occurred_on": None,
        "provider": None,
        "recipient": None,
        "minutes": None,
        "category": None,
        "description": cells.get("description") or None,
        "status": "ready",
        "error": None,
        "exchange_id": None,
    }
    if row.formulas:
        column = row.formulas[0]
        line["status"] = "refused"
        line["error"] = _refusal(
            "formula",
            f"the {column} cell holds a formula ({cells[column][:40]}); formulas are never run: "
            "type the value itself",
            column,
        )
        return line
    try:
        line["occurred_on"] = date_of(cells["date"]).isoformat() if cells["date"] else None
        if line["occurred_on"] is None:
            raise ValueError("no date given")
    except ValueError as exc:
        return {**line, "status": "refused", "error": _refusal("bad_date", str(exc), "date")}
    for side in ("provider", "recipient"):
        picked = directory.by_id(uuid.UUID(chosen[side])) if side in chosen else None
        if picked is not None:
            line[side] = picked.view()
            continue
        try:
            line[side] = directory.resolve(cells[side]).view()
        except Unresolved as exc:
            line["status"] = "refused"
            line["error"] = _refusal(
                exc.code,
                f"{side}: {exc.message}",
                side,
                candidates=[c.view() for c in exc.candidates],
            )
            return line
    try:
        line["minutes"] = minutes_of(cells.get("hours", ""), cells.get("minutes", ""))
    except ValueError as exc:
        return {**line, "status": "refused", "error": _refusal("bad_hours", str(exc), "hours")}
    if cells.get("category"):
        try:
            line["category"] = categories.slug(cells["category"])
        except ValueError as exc:
            err = _refusal("unknown_category", str(exc), "category")
            return {**line, "status": "refused", "error": err}
    return line


def _request(line: dict[str, Any]) -> dict[str, Any]:
    """The batch item (``createExchange``'s body) of a ready line."""

    def ref(party: dict[str, Any]) -> dict[str, str]:
        key = {"member": "member_id", "organisation": "organisation_id", "pool": "account_id"}
        return {key[party["type"]]: party["id"]}

    item = {
        "provider": ref(line["provider"]),
        "recipient": ref(line["recipient"]),
        "minutes": line["minutes"],
        "occurred_on": line["occurred_on"],
        "external_ref": line["external_ref"],
    }
    pool = "pool" in (line["provider"]["type"], line["recipient"]["type"])
    if line["category"] and not pool:  # a pool grant or donation is not a service
        item["category"] = line["category"]
    if line["description"]:
        item["description"] = line["description"][:2000]
    return item


async def _recorded_refs(
    session: AsyncSession, tb: TimeBank, refs: list[str]
) -> dict[str, Exchange]:
    found: dict[str, Exchange] = {}
    for start in range(0, len(refs), 1000):
        chunk = refs[start : start + 1000]
        rows = await session.execute(
            select(Exchange).where(Exchange.timebank_id == tb.id, Exchange.external_ref.in_(chunk))
        )
        found |= {e.external_ref: e for e in rows.scalars() if e.external_ref}
    return found


def _same(line: dict[str, Any], exchange: Exchange, accounts: dict[str, uuid.UUID]) -> bool:
    """Whether a recorded exchange is this line, as far as the line could be read (a line
    whose name no longer resolves, say, is compared on what it does say)."""
    said = [
        (line["minutes"], exchange.minutes),
        (line["occurred_on"] and date.fromisoformat(line["occurred_on"]), exchange.occurred_on),
        (line["provider"] and accounts.get(line["provider"]["id"]), exchange.provider_account_id),
        (
            line["recipient"] and accounts.get(line["recipient"]["id"]),
            exchange.recipient_account_id,
        ),
    ]
    return all(ours is None or ours == theirs for ours, theirs in said)


ExchangeKey = tuple[str, uuid.UUID | None, uuid.UUID | None, int, str | None]


def _key(line: dict[str, Any], accounts: dict[str, uuid.UUID]) -> ExchangeKey | None:
    """What makes two exchanges the same (date, the two parties' accounts, minutes and
    category, as the line would be recorded), or None for a line not read that far."""
    provider, recipient = line["provider"], line["recipient"]
    if provider is None or recipient is None or line["minutes"] is None:
        return None
    if line["occurred_on"] is None:
        return None
    pool = "pool" in (provider["type"], recipient["type"])
    return (
        line["occurred_on"],
        accounts.get(provider["id"]),
        accounts.get(recipient["id"]),
        int(line["minutes"]),
        None if pool else line["category"],
    )


def _repeat(line: dict[str, Any], repeats: dict[str, Any], message: str) -> None:
    line["status"] = "repeat"
    line["repeats"] = repeats
    line["error"] = _refusal("repeated_line" if "line" in repeats else "repeats_exchange", message)


def _mark_repeats_in_sheet(lines: list[dict[str, Any]], accounts: dict[str, uuid.UUID]) -> None:
    """A ready line equal to an earlier line of the sheet is a repeat of it (unless a broker
    said it is a separate exchange)."""
    first: dict[ExchangeKey, int] = {}
    for line in lines:
        if line["status"] not in ("ready", "repeat", "already_recorded", "recorded"):
            continue
        key = _key(line, accounts)
        if key is None:
            continue
        if key not in first:
            first[key] = line["line"]
        elif line["status"] == "ready" and not line.get("separate"):
            earlier = first[key]
            _repeat(
                line,
                {"line": earlier},
                f"the same as line {earlier} (same date, people, time and category): it is "
                "not recorded unless you say it is a separate exchange",
            )


async def _mark_repeats_in_ledger(
    session: AsyncSession,
    tb: TimeBank,
    lines: list[dict[str, Any]],
    accounts: dict[str, uuid.UUID],
    categories: _Categories,
) -> None:
    """A ready line equal to an exchange already recorded (however it was recorded: by hand,
    by the API, by another sheet or the same sheet under another name) and not reversed is
    a repeat of it (unless a broker said it is a separate exchange)."""
    wanted = [
        (key, line)
        for line in lines
        if line["status"] == "ready"
        and not line.get("separate")
        and (key := _key(line, accounts)) is not None
    ]
    if not wanted:
        return
    # an exchange a line of this sheet already stands for (by its reference) is not matched
    claimed = {line["exchange_id"] for line in lines if line["status"] == "already_recorded"}
    days = sorted({date.fromisoformat(key[0]) for key, _ in wanted})
    reversal = aliased(Exchange)
    undone = select(reversal.id).where(reversal.reverses == Exchange.id).exists()
    found: dict[ExchangeKey, list[Exchange]] = defaultdict(list)
    for start in range(0, len(days), 1000):
        rows = await session.execute(
            select(Exchange)
            .where(
                Exchange.timebank_id == tb.id,
                Exchange.occurred_on.in_(days[start : start + 1000]),
                Exchange.status == ExchangeStatus.recorded,
                Exchange.kind != ExchangeKind.reversal,
                ~undone,
            )
            .order_by(Exchange.recorded_at, Exchange.id)
        )
        for ex in rows.scalars():
            if str(ex.id) in claimed:
                continue
            slug = categories.by_id.get(ex.category_id) if ex.category_id else None
            key = (
                ex.occurred_on.isoformat(),
                ex.provider_account_id,
                ex.recipient_account_id,
                ex.minutes,
                slug,
            )
            found[key].append(ex)
    # the k-th line alike repeats the k-th exchange alike: two equal lines and two equal
    # exchanges (one said to be separate) are both in the ledger already
    used: dict[ExchangeKey, int] = defaultdict(int)
    for key, line in wanted:
        if used[key] >= len(found.get(key, [])):
            continue
        ex = found[key][used[key]]
        used[key] += 1
        how = f"from the sheet reference {ex.external_ref}" if ex.external_ref else "by hand"
        _repeat(
            line,
            {
                "exchange_id": str(ex.id),
                "external_ref": ex.external_ref,
                "recorded_at": ex.recorded_at.isoformat(),
            },
            f"the same as exchange {ex.id}, recorded {how} on "
            f"{ex.recorded_at.date().isoformat()} (same date, people, time and category): it "
            "is not recorded again unless you say it is a separate exchange",
        )


async def _fresh(session: AsyncSession, tb: TimeBank) -> None:
    """The bank again after a rollback (which expires what the session holds; a bank the
    caller detached, as the console does, is untouched)."""
    if tb in session:
        await session.refresh(tb)


async def _judge(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    lines: list[dict[str, Any]],
    directory: Directory,
    categories: _Categories,
) -> None:
    """Mark lines whose reference is already recorded, then the repeats (of an earlier line,
    of an exchange in the ledger), then dry-run the rest as one batch (in line order, so
    limits are judged as the commit will)."""
    accounts = {str(i): p.account_id for i, p in directory.by_party.items()}
    recorded = await _recorded_refs(session, tb, [line["external_ref"] for line in lines])
    for line in lines:
        exchange = recorded.get(line["external_ref"])
        if exchange is None or line["status"] not in ("ready", "refused"):
            continue
        line["exchange_id"] = str(exchange.id)
        if _same(line, exchange, accounts):
            line["status"] = "already_recorded"
            line["error"] = _refusal(
                "already_recorded",
                f"already recorded as exchange {exchange.id} ({exchange.external_ref}); "
                "nothing new is recorded",
            )
        else:
            line["status"] = "conflict"
            line["error"] = _refusal(
                "conflict",
                f"the reference {exchange.external_ref} was recorded as a different exchange "
                f"({exchange.id}: {exchange.minutes} minutes on {exchange.occurred_on})",
                "reference",
            )
    await _mark_repeats_in_ledger(session, tb, lines, accounts, categories)
    _mark_repeats_in_sheet(lines, accounts)
    ready = [line for line in lines if line["status"] == "ready"]
    if not ready:
        return
    outcome = await record_batch(
        session, principal, tb, [_request(line) for line in ready], False, dry_run=True
    )
    await _fresh(session, tb)
    for line, verdict in zip(ready, outcome.lines, strict=True):
        if verdict.error is not None:
            line["status"] = "refused"
            line["error"] = _of_domain(verdict.error)


_parsers: anyio.CapacityLimiter | None = None
PARSERS = 2  # sheets parsed at once per process (each in its own worker thread)


async def parse(content: bytes) -> Sheet:
    """:func:`~timebank.imports.sheet.read` in a worker thread, so the event loop keeps
    answering while a large or hostile sheet is read; at most :data:`PARSERS` at once."""
    global _parsers
    if _parsers is None:
        _parsers = anyio.CapacityLimiter(PARSERS)
    return await anyio.to_thread.run_sync(read, content, limiter=_parsers)


async def preview(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    content: bytes,
    *,
    sheet: str,
    filename: str | None = None,
    claim: Claim | None = None,
) -> SheetImport:
    """Read, resolve and judge a sheet; store the preview; commit."""
    principal.require(tb.id, *STAFF)
    sheet = " ".join(sheet.split())[:100]
    if not sheet:
        raise InvalidInput("sheet", "give the sheet a name (it prefixes every line's reference)")
    try:
        parsed = await parse(content)
    except SheetError as exc:
        raise InvalidInput(exc.field, exc.message) from None
    directory = await Directory.load(session, tb)
    categories = await _categories(session, tb)
    lines = [_line(row, sheet, directory, categories) for row in parsed.rows]
    await _judge(session, principal, tb, lines, directory, categories)
    found = SheetImport(
        timebank_id=tb.id,
        sheet=sheet,
        filename=filename,
        status=ImportStatus.preview,
        created_by_key_id=principal.key_id,
        created_by_role=principal.role.value,
        created_at=utcnow(),
        columns=parsed.columns,
        lines=lines,
    )
    session.add(found)
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "import.preview",
            timebank_id=tb.id,
            target_type="import",
            target_id=found.id,
            details={"sheet": sheet, "lines": len(lines)},
        ),
    )
    if claim is not None:
        await claim.settle(session, found)
    await session.commit()
    return found


async def choose_party(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    import_id: uuid.UUID,
    line_number: int,
    side: str,
    party_id: uuid.UUID,
) -> SheetImport:
    """A broker picks who a line's provider or recipient is (e.g. one of the candidates of
    an ambiguous name); the whole preview is judged again, limits in line order."""
    if side not in ("provider", "recipient"):
        raise InvalidInput("side", "must be provider or recipient")

    def change(line: dict[str, Any], directory: Directory) -> None:
        if directory.by_id(party_id) is None:
            raise InvalidInput(
                side, "no member, organisation or pool with this id in this time bank"
            )
        line["chosen"] = {**line.get("chosen", {}), side: str(party_id)}

    return await _change_line(
        session,
        principal,
        tb,
        import_id,
        line_number,
        change,
        "import.choose",
        {"line": line_number, "side": side, "party_id": str(party_id)},
    )


async def mark_separate(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    import_id: uuid.UUID,
    line_number: int,
    separate: bool,
) -> SheetImport:
    """A broker says a line that repeats an earlier line or an exchange in the ledger is a
    separate exchange (or takes that back); the whole preview is judged again."""

    def change(line: dict[str, Any], directory: Directory) -> None:
        line["separate"] = separate

    return await _change_line(
        session,
        principal,
        tb,
        import_id,
        line_number,
        change,
        "import.separate",
        {"line": line_number, "separate": separate},
    )


async def _change_line(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    import_id: uuid.UUID,
    line_number: int,
    change: Callable[[dict[str, Any], Directory], None],
    action: str,
    details: dict[str, Any],
) -> SheetImport:
    found = await get_import(session, principal, tb, import_id)
    if found.status is not ImportStatus.preview:
        raise ImportClosed(f"This sheet import is {found.status.value}; it cannot change")
    directory = await Directory.load(session, tb)
    old = {line["line"]: dict(line) for line in found.lines}
    if line_number not in old:
        raise NotFound(f"The sheet has no line {line_number}")
    change(old[line_number], directory)
    categories = await _categories(session, tb)
    lines = [
        _line(
            Row(line["line"], line["cells"], line.get("formulas", [])),
            found.sheet,
            directory,
            categories,
            line.get("chosen"),
            bool(line.get("separate")),
        )
        for line in old.values()
    ]
    await _judge(session, principal, tb, lines, directory, categories)
    found = await get_import(session, principal, tb, import_id)
    found.lines = lines
    await audit.record(
        session,
        audit.event(
            principal,
            action,
            timebank_id=tb.id,
            target_type="import",
            target_id=found.id,
            details=details,
        ),
    )
    await session.commit()
    return found


async def _categories(session: AsyncSession, tb: TimeBank) -> _Categories:
    rows = await session.execute(select(Category).where(Category.timebank_id == tb.id))
    return _Categories(list(rows.scalars()))


async def get_import(
    session: AsyncSession, principal: Principal, tb: TimeBank, import_id: uuid.UUID
) -> SheetImport:
    principal.require(tb.id, *STAFF)
    found = await session.get(SheetImport, import_id)
    if found is None or found.timebank_id != tb.id:
        raise NotFound("No such sheet import in this time bank")
    return found


async def commit(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    import_id: uuid.UUID,
    *,
    atomic: bool,
) -> SheetImport:
    """Record the preview's ready lines as one batch, in line order. Committing again
    records nothing and answers as the first commit did."""
    found = await get_import(session, principal, tb, import_id)
    if found.status is ImportStatus.committed:
        return found
    if found.status is ImportStatus.discarded:
        raise ImportClosed("This sheet import was discarded; upload the sheet again")
    lines = [dict(line) for line in found.lines]
    # what was recorded since the preview (another sheet, the same one under another name)
    directory = await Directory.load(session, tb)
    accounts = {str(i): p.account_id for i, p in directory.by_party.items()}
    await _mark_repeats_in_ledger(session, tb, lines, accounts, await _categories(session, tb))
    found = await get_import(session, principal, tb, import_id)
    ready = [line for line in lines if line["status"] == "ready"]
    found.status = ImportStatus.committed
    found.committed_at = utcnow()
    found.atomic = atomic
    outcome = await record_batch(
        session, principal, tb, [_request(line) for line in ready], atomic
    )  # commits (or, atomic and refused, rolls back)
    await _fresh(session, tb)
    for line, verdict in zip(ready, outcome.lines, strict=True):
        if verdict.exchange is not None:
            line.update(status="recorded", error=None, exchange_id=str(verdict.exchange.id))
        elif verdict.error is not None and verdict.error.code == "batch_aborted":
            pass  # atomic, and another line refused: still ready for the next commit
        elif verdict.error is not None:
            line.update(status="refused", error=_of_domain(verdict.error))
    found = await get_import(session, principal, tb, import_id)
    found.lines = lines
    if not outcome.recorded and atomic:
        found.status, found.committed_at, found.atomic = ImportStatus.preview, None, None
    await audit.record(
        session,
        audit.event(
            principal,
            "import.commit",
            timebank_id=tb.id,
            target_type="import",
            target_id=found.id,
            details={
                "recorded": sum(1 for line in lines if line["status"] == "recorded"),
                "atomic": atomic,
            },
        ),
    )
    await session.commit()
    return found


async def discard(
    session: AsyncSession, principal: Principal, tb: TimeBank, import_id: uuid.UUID
) -> SheetImport:
    found = await get_import(session, principal, tb, import_id)
    if found.status is ImportStatus.committed:
        raise ImportClosed("This sheet import is committed: reverse its exchanges instead")
    found.status = ImportStatus.discarded
    await audit.record(
        session,
        audit.event(
            principal, "import.discard", timebank_id=tb.id, target_type="import", target_id=found.id
        ),
    )
    await session.commit()
    return found


def summary(lines: list[dict[str, Any]]) -> dict[str, int]:
    out = {"lines": len(lines)}
    for status in ("ready", "refused", "repeat", "already_recorded", "conflict", "recorded"):
        out[status] = sum(1 for line in lines if line["status"] == status)
    return out


__all__ = [
    "DATE_FORMATS",
    "Party",
    "choose_party",
    "commit",
    "discard",
    "get_import",
    "mark_separate",
    "preview",
    "summary",
]
