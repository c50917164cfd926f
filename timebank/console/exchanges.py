"""Recording an exchange by name (simple and group forms), an exchange's page, reversing
it, and the proposals waiting for a decision. Every write is the API's own use case
(``record_exchange``, ``decide``, ``reverse_exchange``) run with the form's Idempotency-Key,
so a form sent twice records once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from litestar import Request, Response, get, post
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import db, idempotency
from timebank.console.base import Ctx, form_of, new_form_key, redirect, render, settings_of, staff
from timebank.console.formatting import parse_hours_minutes
from timebank.console.home import choice, rows_of
from timebank.console.messages import Problems, from_validation, limit_message, plain
from timebank.errors import BalanceLimitExceeded, DomainError, NotFound
from timebank.idempotency import Claim
from timebank.ledger import reads
from timebank.ledger.proposals import Decision, decide
from timebank.ledger.record import record_exchange
from timebank.ledger.reversal import reverse_exchange
from timebank.ledger.schemas import ExchangeCreate, ExchangeOut, ReverseRequest
from timebank.members import search
from timebank.members.search import Person
from timebank.members.service import get_member
from timebank.names import fold
from timebank.organisations.service import get_organisation
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import list_categories, today
from timebank.web.idempotent import run_once

GROUP_ROWS = 8


def same_name(a: str, b: str) -> bool:
    """Names compared folded, as every name is (docs/names.md)."""
    return fold(a) == fold(b)


@dataclass
class Resolved:
    """A name box of the form: the party it names, or the choices to offer."""

    text: str = ""
    party: Person | None = None
    choices: list[Person] = field(default_factory=list)


async def _by_id(session: AsyncSession, tb: TimeBank, value: str) -> Person | None:
    try:
        pid = uuid.UUID(value)
    except ValueError:
        return None
    try:
        return search.member_person(await get_member(session, tb, pid))
    except NotFound:
        pass
    try:
        return search.organisation_person(await get_organisation(session, tb, pid))
    except NotFound:
        return None


async def resolve(
    ctx: Ctx,
    session: AsyncSession,
    problems: Problems,
    name: str,
    form: dict[str, str],
    label: str,
) -> Resolved:
    """Who the box ``name`` means: a choice picked from a list (``<name>_pick``), the
    typeahead's pick if the box still says that name (``<name>_id``), else the one active
    member or organisation with that name once folded (or that membership number). Several:
    the choices, told apart. None: those whose name starts so, else the closest names (the
    importer's suggester), and an error next to the box."""
    assert ctx.tb is not None
    _ = ctx.gettext
    text = form.get(name, "").strip()[:200]
    out = Resolved(text)
    picked = form.get(f"{name}_pick", "")
    if picked:
        out.party = await _by_id(session, ctx.tb, picked)
        if out.party is not None:
            out.text = out.party.name
            return out
    chosen = form.get(f"{name}_id", "")
    if chosen:
        party = await _by_id(session, ctx.tb, chosen)
        if party is not None and same_name(party.name, text):
            out.party = party
            return out
    if not text:
        problems.add(name, _("Enter the name of the %(who)s") % {"who": label})
        return out
    exact = await search.called(session, ctx.tb, text)
    if len(exact) == 1:
        out.party = exact[0]
        return out
    if exact:
        out.choices = exact
        problems.add(
            name, _("More than one person is called %(name)s. Choose one.") % {"name": text}
        )
        return out
    found = await search.starting(session, ctx.tb, text, 10)
    if found:
        out.choices = found
        problems.add(
            name,
            _("No one is called exactly %(name)s. Choose from the list, or type the full name.")
            % {"name": text},
        )
        return out
    close = await search.closest(session, ctx.tb, text)
    if close:
        out.choices = close
        problems.add(
            name,
            _("No one is called %(name)s. Did you mean one of these?") % {"name": text},
        )
        return out
    problems.add(name, _("No active member or organisation is called %(name)s") % {"name": text})
    return out


def exchange_labels(ctx: Ctx) -> dict[str, str]:
    _ = ctx.gettext
    return {
        "provider": _("Who gave the time"),
        "recipient": _("Who received it"),
        "providers": _("Who gave the time"),
        "recipients": _("Who received it"),
        "minutes": _("Time"),
        "hours": _("Time"),
        "category": _("Category"),
        "occurred_on": _("Date"),
        "description": _("What was done"),
        "override_reason": _("Reason for going past the limit"),
        "override_limits": _("Go past the limit"),
    }


def _date(ctx: Ctx, problems: Problems, form: dict[str, str]) -> date | None:
    text = form.get("occurred_on", "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.add("occurred_on", ctx.gettext("Date must be a real date, like 2026-11-28"))
        return None


def _minutes(ctx: Ctx, problems: Problems, form: dict[str, str]) -> int | None:
    _ = ctx.gettext
    total, errors = parse_hours_minutes(form.get("hours", ""), form.get("minutes", ""))
    words = {
        "hours_not_number": _("Hours must be a whole number, like 2"),
        "minutes_not_number": _("Minutes must be a whole number, like 30"),
        "minutes_over_59": _("Minutes must be 59 or fewer when you give hours"),
        "zero": _("Enter how long it took, in hours and minutes"),
    }
    for name, code in errors:
        problems.add(name, words[code])
    return total


async def _form_page(
    ctx: Ctx,
    session: AsyncSession,
    template: str,
    *,
    form: dict[str, str],
    key: str | None,
    problems: Problems | None = None,
    resolved: dict[str, Resolved] | None = None,
    status: int = 200,
) -> Response[str]:
    assert ctx.tb is not None
    categories = await list_categories(session, ctx.tb, None, 200)
    values = dict(form)
    values.setdefault("occurred_on", today(ctx.tb).isoformat())
    for name, r in (resolved or {}).items():
        values[name] = r.text
        values[f"{name}_id"] = str(r.party.id) if r.party else ""
    return render(
        ctx,
        template,
        section="record",
        form=values,
        key=key,
        problems=problems,
        categories=[("", ctx.gettext("Choose a category"))]
        + [(c.slug, c.label(ctx.lang)) for c in categories if c.retired_at is None],
        choices={n: [choice(ctx, p) for p in r.choices] for n, r in (resolved or {}).items()},
        today=today(ctx.tb).isoformat(),
        rows=range(1, GROUP_ROWS + 1),
        status=status,
    )


@get("/{tb:str}/exchanges/new", include_in_schema=False)
async def record_form(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    return await _form_page(ctx, db_session, "record.html", form={}, key=new_form_key())


async def _record(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    ctx: Ctx,
    form: dict[str, str],
    body: dict[str, Any],
    problems: Problems,
    change: dict[uuid.UUID, int],
    limit_field: dict[uuid.UUID, str],
) -> str | None:
    """Record with the API's use case; the new exchange's id, or None with ``problems``."""
    assert ctx.tb is not None
    bank = ctx.tb
    details = {
        "category": form.get("category") or None,
        "description": form.get("description", "").strip() or None,
        "override_limits": form.get("override") == "yes",
        "override_reason": form.get("override_reason", "").strip() or None,
    }
    try:
        data = ExchangeCreate.model_validate({**body, **details})
        key = idempotency.check_key(form.get("idempotency_key") or None)
        fp = idempotency.fingerprint("POST", request.url.path, form)

        async def use_case(claim: Claim) -> ExchangeOut:
            return await record_exchange(session, ctx.principal, bank, data, claim)

        outcome = await run_once(request, session, ctx.principal, use_case, key=key, fp=fp)
    except BalanceLimitExceeded as exc:
        where = limit_field.get(uuid.UUID(str(exc.extra.get("account_id"))), "")
        problems.add(where, await limit_message(ctx, session, exc, change))
        problems.add(
            "override",
            ctx.gettext("To record it anyway, tick “Go past the limit” and give a reason."),
        )
        return None
    except (ValidationError, DomainError) as exc:
        if isinstance(exc, DomainError) and exc.code not in ("validation_error",):
            problems.add("", plain(ctx, exc.code) if exc.code != "party_inactive" else exc.detail)
        else:
            from_validation(ctx, problems, exc, exchange_labels(ctx))
        return None
    return str(json.loads(outcome.body)["id"])


@post("/{tb:str}/exchanges/new", include_in_schema=False, status_code=200)
async def record(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    _ = ctx.gettext
    form = await form_of(request, ctx)
    problems = Problems()
    provider = await resolve(
        ctx, db_session, problems, "provider", form, _("person or organisation who gave the time")
    )
    recipient = await resolve(
        ctx, db_session, problems, "recipient", form, _("person or organisation who received it")
    )
    minutes = _minutes(ctx, problems, form)
    occurred = _date(ctx, problems, form)
    if provider.party and recipient.party and provider.party.id == recipient.party.id:
        problems.add("recipient", _("Who received it must be someone other than who gave it"))
    resolved = {"provider": provider, "recipient": recipient}
    if not problems:
        assert provider.party and recipient.party and minutes
        body: dict[str, Any] = {
            "provider": provider.party.ref,
            "recipient": recipient.party.ref,
            "minutes": minutes,
            "occurred_on": occurred.isoformat() if occurred else None,
        }
        pa, ra = provider.party.account_id, recipient.party.account_id
        assert pa and ra
        new_id = await _record(
            request,
            db_session,
            ctx,
            form,
            body,
            problems,
            {pa: minutes, ra: -minutes},
            {pa: "provider", ra: "recipient"},
        )
        if new_id:
            return redirect(ctx.url(f"/exchanges/{new_id}?done=recorded"))
    return await _form_page(
        ctx,
        db_session,
        "record.html",
        form=form,
        key=form.get("idempotency_key"),
        problems=problems,
        resolved=resolved,
        status=422,
    )


@get("/{tb:str}/exchanges/new-group", include_in_schema=False)
async def group_form(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    return await _form_page(
        ctx, db_session, "record_group.html", form={"shape": "class"}, key=new_form_key()
    )


@post("/{tb:str}/exchanges/new-group", include_in_schema=False, status_code=200)
async def record_group(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    """A class (one provider, several recipients, each receiving the time given) or a
    working party (several providers, each giving the time, one recipient)."""
    ctx = await staff(request, db_session, tb)
    _ = ctx.gettext
    form = await form_of(request, ctx)
    problems = Problems()
    shape = "party" if form.get("shape") == "party" else "class"
    one = await resolve(
        ctx,
        db_session,
        problems,
        "one",
        form,
        _("person or organisation who gave the time")
        if shape == "class"
        else _("person or organisation who received it"),
    )
    resolved = {"one": one}
    many: list[Person] = []
    for i in range(1, GROUP_ROWS + 1):
        name = f"many_{i}"
        if form.get(name, "").strip() or form.get(f"{name}_pick"):
            r = await resolve(ctx, db_session, problems, name, form, _("person"))
            resolved[name] = r
            if r.party:
                many.append(r.party)
    if not resolved.keys() - {"one"}:
        problems.add("many_1", _("Enter at least one name"))
    minutes = _minutes(ctx, problems, form)
    occurred = _date(ctx, problems, form)
    if not problems:
        assert one.party and minutes
        legs = [{"party": p.ref, "minutes": minutes} for p in many]
        single = [{"party": one.party.ref, "minutes": minutes * len(many)}]
        body: dict[str, Any] = {
            "providers": single if shape == "class" else legs,
            "recipients": legs if shape == "class" else single,
            "occurred_on": occurred.isoformat() if occurred else None,
        }
        sign = 1 if shape == "class" else -1
        change: dict[uuid.UUID, int] = {}
        where: dict[uuid.UUID, str] = {}
        assert one.party.account_id
        change[one.party.account_id] = sign * minutes * len(many)
        where[one.party.account_id] = "one"
        for i, p in enumerate(many, start=1):
            assert p.account_id
            change[p.account_id] = change.get(p.account_id, 0) - sign * minutes
            where[p.account_id] = f"many_{i}"
        new_id = await _record(request, db_session, ctx, form, body, problems, change, where)
        if new_id:
            return redirect(ctx.url(f"/exchanges/{new_id}?done=recorded"))
    return await _form_page(
        ctx,
        db_session,
        "record_group.html",
        form=form,
        key=form.get("idempotency_key"),
        problems=problems,
        resolved=resolved,
        status=422,
    )


async def _exchange_page(
    ctx: Ctx,
    session: AsyncSession,
    exchange_id: uuid.UUID,
    *,
    problems: Problems | None = None,
    flash: str | None = None,
    status: int = 200,
) -> Response[str]:
    assert ctx.tb is not None
    ex = await reads.get_exchange(session, ctx.principal, ctx.tb, exchange_id)
    (row,) = await rows_of(session, [ex])
    names = await reads.owner_names(session, [p.account_id for p in ex.postings])
    postings = [
        (names.get(p.account_id, ("pool", p.account_id, "?")), p.minutes) for p in ex.postings
    ]
    categories = {
        c.slug: c.label(ctx.lang) for c in await list_categories(session, ctx.tb, None, 200)
    }
    return render(
        ctx,
        "exchange.html",
        section="proposals" if ex.status == "pending" else "home",
        row=row,
        ex=ex,
        postings=postings,
        categories=categories,
        problems=problems,
        flash=flash,
        status=status,
    )


@get("/{tb:str}/exchanges/{exchange_id:uuid}", include_in_schema=False)
async def exchange_page(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    exchange_id: uuid.UUID,
    done: str | None = None,
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    _ = ctx.gettext
    flashes = {
        "recorded": _("The exchange is recorded."),
        "reversed": _("The exchange was reversed. This is the reversal."),
        "confirmed": _("The proposal is confirmed and recorded."),
        "rejected": _("The proposal was rejected."),
    }
    return await _exchange_page(ctx, db_session, exchange_id, flash=flashes.get(done or ""))


@get("/{tb:str}/exchanges/{exchange_id:uuid}/reverse", include_in_schema=False)
async def reverse_form(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, exchange_id: uuid.UUID
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    ex = await reads.get_exchange(db_session, ctx.principal, ctx.tb, exchange_id)
    (row,) = await rows_of(db_session, [ex])
    return render(ctx, "reverse.html", section="home", row=row, ex=ex, key=new_form_key(), form={})


@post("/{tb:str}/exchanges/{exchange_id:uuid}/reverse", include_in_schema=False, status_code=200)
async def reverse(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, exchange_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    _ = ctx.gettext
    form = await form_of(request, ctx)
    problems = Problems()
    reason = form.get("reason", "").strip()
    if not reason:
        problems.add("reason", _("Enter why this exchange is being reversed"))
    else:
        try:
            data = ReverseRequest.model_validate({"reason": reason})
            key = idempotency.check_key(form.get("idempotency_key") or None)
            fp = idempotency.fingerprint("POST", request.url.path, form)

            async def use_case(claim: Claim) -> ExchangeOut:
                return await reverse_exchange(
                    db_session, ctx.principal, bank, exchange_id, data.reason, claim
                )

            outcome = await run_once(request, db_session, ctx.principal, use_case, key=key, fp=fp)
            new_id = json.loads(outcome.body)["id"]
            return redirect(ctx.url(f"/exchanges/{new_id}?done=reversed"))
        except ValidationError as exc:
            from_validation(ctx, problems, exc, {"reason": _("The reason")})
        except DomainError as exc:
            if exc.code == "not_found":
                raise
            problems.add("", plain(ctx, exc.code))
    ex = await reads.get_exchange(db_session, ctx.principal, bank, exchange_id)
    (row,) = await rows_of(db_session, [ex])
    return render(
        ctx,
        "reverse.html",
        section="home",
        row=row,
        ex=ex,
        key=form.get("idempotency_key"),
        form=form,
        problems=problems,
        status=422,
    )


@get("/{tb:str}/proposals", include_in_schema=False)
async def proposals(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    waiting = await reads.recent(db_session, ctx.principal, ctx.tb, pending=True, limit=100)
    return render(
        ctx, "proposals.html", section="proposals", waiting=await rows_of(db_session, waiting)
    )


@post("/{tb:str}/exchanges/{exchange_id:uuid}/confirm", include_in_schema=False, status_code=200)
async def confirm(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, exchange_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    await form_of(request, ctx)
    problems = Problems()
    try:
        await db.write(
            db_session,
            lambda: decide(db_session, ctx.principal, bank, exchange_id, Decision.confirm),
            retries=settings_of(request).write_retries,
        )
    except BalanceLimitExceeded as exc:
        ex = await reads.get_exchange(db_session, ctx.principal, bank, exchange_id)
        change = {}
        if ex.provider_account_id and ex.recipient_account_id:
            change = {ex.provider_account_id: ex.minutes, ex.recipient_account_id: -ex.minutes}
        problems.add("", await limit_message(ctx, db_session, exc, change))
    except DomainError as exc:
        if exc.code == "not_found":
            raise
        problems.add("", plain(ctx, exc.code))
    if problems:
        return await _exchange_page(ctx, db_session, exchange_id, problems=problems, status=409)
    return redirect(ctx.url(f"/exchanges/{exchange_id}?done=confirmed"))


@get("/{tb:str}/exchanges/{exchange_id:uuid}/reject", include_in_schema=False)
async def reject_form(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, exchange_id: uuid.UUID
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    ex = await reads.get_exchange(db_session, ctx.principal, ctx.tb, exchange_id)
    (row,) = await rows_of(db_session, [ex])
    return render(ctx, "reject.html", section="proposals", row=row, ex=ex, form={})


@post("/{tb:str}/exchanges/{exchange_id:uuid}/reject", include_in_schema=False, status_code=200)
async def reject(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, exchange_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    _ = ctx.gettext
    form = await form_of(request, ctx)
    problems = Problems()
    reason = form.get("reason", "").strip()[:2000]
    if not reason:
        problems.add("reason", _("Enter why the proposal is rejected (the member will see it)"))
    else:
        try:
            await db.write(
                db_session,
                lambda: decide(
                    db_session, ctx.principal, bank, exchange_id, Decision.reject, reason
                ),
                retries=settings_of(request).write_retries,
            )
            return redirect(ctx.url(f"/exchanges/{exchange_id}?done=rejected"))
        except DomainError as exc:
            if exc.code == "not_found":
                raise
            problems.add("", plain(ctx, exc.code))
    ex = await reads.get_exchange(db_session, ctx.principal, bank, exchange_id)
    (row,) = await rows_of(db_session, [ex])
    return render(
        ctx,
        "reject.html",
        section="proposals",
        row=row,
        ex=ex,
        form=form,
        problems=problems,
        status=422,
    )
