"""Paper time sheets in the console: upload a CSV or XLSX, see every line resolved or
refused with its reason, pick the right person for a name that matched several (or none),
commit. The same importer as the API and the CLI (:mod:`timebank.imports.service`)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import idempotency
from timebank.console.base import Ctx, form_of, new_form_key, redirect, render, staff
from timebank.console.messages import Problems
from timebank.errors import DomainError, InvalidInput
from timebank.idempotency import Claim
from timebank.imports import service
from timebank.imports.models import SheetImport
from timebank.imports.sheet import MAX_BYTES, sheet_name_of
from timebank.web.idempotent import as_json, run_once
from timebank.web.problems import UPLOAD_LIMIT

RECENT = 10


def _reason(ctx: Ctx, line: dict[str, Any]) -> str:
    """A refused line's reason in the console's words (the importer's own message for
    what only it can say: a name, a date, the limit in hours and minutes)."""
    _ = ctx.gettext
    error = line.get("error") or {}
    code = str(error.get("code", ""))
    words = {
        "already_recorded": _("Already recorded: nothing new will be recorded."),
        "formula": _("A cell holds a formula. Formulas are never run: type the value itself."),
    }
    if code in words:
        return words[code]
    repeats = line.get("repeats") or {}
    if code == "repeated_line":
        return _(
            "The same as line %(line)s: same date, people, time and category. It is not "
            "recorded unless you say it is a separate exchange."
        ) % {"line": repeats.get("line")}
    if code == "repeats_exchange":
        when = str(repeats.get("recorded_at") or "")[:10]
        if repeats.get("external_ref"):
            return _(
                "Already in the ledger: the same date, people, time and category were "
                "recorded on %(date)s from sheet line %(ref)s. It is not recorded again "
                "unless you say it is a separate exchange."
            ) % {"date": when, "ref": repeats["external_ref"]}
        return _(
            "Already in the ledger: the same date, people, time and category were recorded "
            "on %(date)s. It is not recorded again unless you say it is a separate exchange."
        ) % {"date": when}
    return ctx.english(str(error.get("message", "")))


def _status(ctx: Ctx, status: str) -> str:
    _ = ctx.gettext
    return {
        "ready": _("Ready"),
        "refused": _("Refused"),
        "repeat": _("Repeat"),
        "already_recorded": _("Already recorded"),
        "conflict": _("Conflict"),
        "recorded": _("Recorded"),
    }.get(status, status)


async def _recent(session: AsyncSession, ctx: Ctx) -> list[SheetImport]:
    assert ctx.tb is not None
    rows = await session.execute(
        select(SheetImport)
        .where(SheetImport.timebank_id == ctx.tb.id)
        .order_by(SheetImport.created_at.desc())
        .limit(RECENT)
    )
    return list(rows.scalars())


@get("/{tb:str}/sheets", include_in_schema=False)
async def sheets(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    return render(
        ctx,
        "sheets.html",
        section="sheets",
        key=new_form_key(),
        form={},
        recent=await _recent(db_session, ctx),
        summary=service.summary,
    )


@post(
    "/{tb:str}/sheets",
    include_in_schema=False,
    status_code=200,
    request_max_body_size=MAX_BYTES + 65_536,
    opt={UPLOAD_LIMIT: MAX_BYTES},
)
async def upload(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    file = (await request.form()).get("file")
    problems = Problems()
    _ = ctx.gettext
    content = await file.read() if isinstance(file, UploadFile) else b""
    filename = file.filename if isinstance(file, UploadFile) and file.filename else None
    sheet = form.get("sheet", "").strip() or (sheet_name_of(filename) if filename else "")
    if not content:
        problems.add("file", _("Choose the sheet's file (CSV or Excel)."))
    elif not sheet:
        problems.add("sheet", _("Give the sheet a name, such as november-2026."))
    if not problems:
        key = idempotency.check_key(form.get("idempotency_key") or None)
        digest = hashlib.sha256(content).hexdigest()
        fp = idempotency.fingerprint("POST", request.url.path, {"sheet": sheet, "file": digest})

        async def use_case(claim: Claim) -> SheetImport:
            return await service.preview(
                db_session,
                ctx.principal,
                bank,
                content,
                sheet=sheet,
                filename=filename,
                claim=claim,
            )

        try:
            outcome = await run_once(
                request,
                db_session,
                ctx.principal,
                use_case,
                key=key,
                fp=fp,
                render=lambda found: as_json({"id": str(found.id)}),
            )
            found_id = json.loads(outcome.body)["id"]
            return redirect(ctx.url(f"/sheets/{found_id}"))
        except InvalidInput as exc:
            for error in exc.extra.get("errors") or []:
                field = "sheet" if error["field"] == "sheet" else "file"
                problems.add(field, _("The file cannot be read:") + " " + error["message"])
        except DomainError as exc:
            problems.add("file", exc.detail)
    return render(
        ctx,
        "sheets.html",
        section="sheets",
        key=form.get("idempotency_key"),
        form=form,
        recent=await _recent(db_session, ctx),
        summary=service.summary,
        problems=problems,
        status=422,
    )


async def _sheet_page(
    ctx: Ctx, session: AsyncSession, import_id: uuid.UUID, **values: Any
) -> Response[str]:
    assert ctx.tb is not None
    found = await service.get_import(session, ctx.principal, ctx.tb, import_id)
    return render(
        ctx,
        "sheet.html",
        section="sheets",
        sheet=found,
        counts=service.summary(found.lines),
        reason=lambda line: _reason(ctx, line),
        status_text=lambda status: _status(ctx, status),
        as_date=date.fromisoformat,
        **values,
    )


@get("/{tb:str}/sheets/{import_id:uuid}", include_in_schema=False)
async def sheet_page(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, import_id: uuid.UUID
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    flash = {
        "committed": ctx.gettext("The ready lines are recorded."),
        "chosen": ctx.gettext("Chosen. Every line was checked again."),
        "discarded": ctx.gettext("The sheet was discarded. Nothing from it was recorded."),
        "separate": ctx.gettext("Noted. Every line was checked again."),
    }.get(request.query_params.get("done", ""))
    return await _sheet_page(ctx, db_session, import_id, flash=flash)


@post(
    "/{tb:str}/sheets/{import_id:uuid}/lines/{line:int}", include_in_schema=False, status_code=200
)
async def choose(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    import_id: uuid.UUID,
    line: int,
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    form = await form_of(request, ctx)
    side = form.get("side", "")
    try:
        party_id = uuid.UUID(form.get("party", ""))
    except ValueError:
        problems = Problems()
        problems.add(f"party-{line}", ctx.gettext("Choose who it was."))
        return await _sheet_page(ctx, db_session, import_id, problems=problems)
    try:
        await service.choose_party(
            db_session, ctx.principal, ctx.tb, import_id, line, side, party_id
        )
    except DomainError as exc:
        problems = Problems()
        problems.add(f"party-{line}", exc.detail)
        return await _sheet_page(ctx, db_session, import_id, problems=problems)
    return redirect(ctx.url(f"/sheets/{import_id}?done=chosen#line-{line}"))


@post(
    "/{tb:str}/sheets/{import_id:uuid}/lines/{line:int}/separate",
    include_in_schema=False,
    status_code=200,
)
async def separate(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    import_id: uuid.UUID,
    line: int,
) -> Response[Any]:
    """A broker says a repeated line is a separate exchange (``separate=yes``), or takes
    it back (``separate=no``)."""
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    form = await form_of(request, ctx)
    try:
        await service.mark_separate(
            db_session, ctx.principal, ctx.tb, import_id, line, form.get("separate") == "yes"
        )
    except DomainError as exc:
        problems = Problems()
        problems.add(f"separate-{line}", exc.detail)
        return await _sheet_page(ctx, db_session, import_id, problems=problems)
    return redirect(ctx.url(f"/sheets/{import_id}?done=separate#line-{line}"))


@post("/{tb:str}/sheets/{import_id:uuid}/commit", include_in_schema=False, status_code=200)
async def commit(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, import_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    form = await form_of(request, ctx)
    try:
        await service.commit(
            db_session, ctx.principal, ctx.tb, import_id, atomic=form.get("atomic") == "yes"
        )
    except DomainError as exc:
        problems = Problems()
        problems.add("", exc.detail)
        return await _sheet_page(ctx, db_session, import_id, problems=problems)
    return redirect(ctx.url(f"/sheets/{import_id}?done=committed"))


@post("/{tb:str}/sheets/{import_id:uuid}/discard", include_in_schema=False, status_code=200)
async def discard(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, import_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    await form_of(request, ctx)
    try:
        await service.discard(db_session, ctx.principal, ctx.tb, import_id)
    except DomainError as exc:
        problems = Problems()
        problems.add("", exc.detail)
        return await _sheet_page(ctx, db_session, import_id, problems=problems)
    return redirect(ctx.url(f"/sheets/{import_id}?done=discarded"))


ROUTES = [sheets, upload, sheet_page, choose, separate, commit, discard]
