"""Members and organisations: search by name, register, a page each (balance, limits,
statement with the running balance, CSV), edit, suspend, leave, erase, member keys."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import Parameter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import db, idempotency
from timebank.access import Role
from timebank.api.statements import (
    FromParam,
    ToParam,
    statement_csv,
    statement_json,
    statement_xlsx,
)
from timebank.auth import service as keys
from timebank.console.base import (
    Ctx,
    detached,
    form_of,
    new_form_key,
    redirect,
    render,
    settings_of,
    staff,
)
from timebank.console.home import choice
from timebank.console.messages import Problems, from_validation, plain
from timebank.errors import DomainError, InvalidInput
from timebank.idempotency import Claim
from timebank.ledger import reads
from timebank.ledger.models import OwnerType
from timebank.lifecycle.erase import erase_member
from timebank.lifecycle.register import create_member, create_organisation
from timebank.members import search
from timebank.members.models import Disability, Ethnicity, Gender, Member, MemberStatus
from timebank.members.schemas import MemberCreate, MemberOut, MemberPatch
from timebank.members.service import get_member, list_members, update_member
from timebank.organisations.models import OrganisationKind, OrganisationStatus
from timebank.organisations.schemas import OrganisationCreate, OrganisationOut, OrganisationPatch
from timebank.organisations.service import (
    get_organisation,
    list_organisations,
    update_organisation,
)
from timebank.web.idempotent import run_once, view_as
from timebank.web.pagination import encode_cursor, id_cursor

PAGE = 25
STATEMENT_PAGE = 20

# the statement's period on a member's or an organisation's page: dates as typed
PeriodFrom = Parameter(query="from", default=None)
PeriodTo = Parameter(query="to", default=None)


def member_labels(ctx: Ctx) -> dict[str, str]:
    _ = ctx.gettext
    return {
        "display_name": _("Full name"),
        "email": _("Email address"),
        "phone": _("Phone number"),
        "locality": _("Town or neighbourhood"),
        "postcode": _("Postcode"),
        "birth_year": _("Year of birth"),
        "gender": _("Gender"),
        "disability": _("Disability"),
        "ethnicity": _("Ethnic group"),
        "statistics_consent": _("Consent to statistics"),
        "joined_on": _("Date joined"),
        "external_ref": _("Your reference"),
        "left_on": _("Date left"),
        "status": _("Status"),
    }


def member_choices(ctx: Ctx) -> dict[str, list[tuple[str, str]]]:
    _ = ctx.gettext
    none = ("", _("Not given"))
    return {
        "gender": [
            none,
            (Gender.female.value, _("Female")),
            (Gender.male.value, _("Male")),
            (Gender.non_binary.value, _("Non-binary")),
            (Gender.other.value, _("Another gender")),
            (Gender.prefer_not_to_say.value, _("Prefers not to say")),
        ],
        "disability": [
            none,
            (Disability.yes.value, _("Yes")),
            (Disability.no.value, _("No")),
            (Disability.prefer_not_to_say.value, _("Prefers not to say")),
        ],
        "ethnicity": [
            none,
            (Ethnicity.asian.value, _("Asian")),
            (Ethnicity.black.value, _("Black")),
            (Ethnicity.mixed.value, _("Mixed")),
            (Ethnicity.white.value, _("White")),
            (Ethnicity.other.value, _("Another ethnic group")),
            (Ethnicity.prefer_not_to_say.value, _("Prefers not to say")),
        ],
    }


def org_kinds(ctx: Ctx) -> list[tuple[str, str]]:
    _ = ctx.gettext
    names = {
        OrganisationKind.charity: _("Charity"),
        OrganisationKind.community_group: _("Community group"),
        OrganisationKind.social_enterprise: _("Social enterprise"),
        OrganisationKind.public_sector: _("Public sector"),
        OrganisationKind.health: _("Health"),
        OrganisationKind.local_authority: _("Local authority"),
        OrganisationKind.care_provider: _("Care provider"),
        OrganisationKind.business: _("Business"),
        OrganisationKind.other: _("Other"),
    }
    return [(k.value, names[k]) for k in OrganisationKind]


MEMBER_FIELDS = (
    "display_name",
    "email",
    "phone",
    "locality",
    "postcode",
    "birth_year",
    "gender",
    "disability",
    "ethnicity",
    "joined_on",
    "external_ref",
)


def member_body(form: dict[str, str], *, patch: bool) -> dict[str, Any]:
    """The API's body from the form: empty boxes are "not given" (null when editing)."""
    body: dict[str, Any] = {}
    for name in MEMBER_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = value
        elif patch and name not in ("display_name", "joined_on"):
            body[name] = None
        elif name == "display_name":
            body[name] = value
    body["statistics_consent"] = form.get("statistics_consent") == "yes"
    return body


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise DomainError("bad id") from exc


async def _write(request: Request[Any, Any, Any], session: AsyncSession, fn: Any) -> Any:
    return await db.write(session, fn, retries=settings_of(request).write_retries)


# ---- members ------------------------------------------------------------------------------


@get("/{tb:str}/members", include_in_schema=False)
async def members(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    q: str = "",
    after: str | None = None,
    partial: bool = False,
) -> Response[str]:
    """Search by name: a GET form (works without JavaScript); the script asks for the
    results alone (``partial``) as you type."""
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    q = q.strip()[:100]
    try:
        start = id_cursor(after)
    except DomainError:
        start = None
    found = await list_members(db_session, ctx.tb, None, q or None, start, PAGE)
    more = encode_cursor(found[PAGE - 1].id) if len(found) > PAGE else None
    return render(
        ctx,
        "members_results.html" if partial else "members.html",
        section="members",
        q=q,
        members=found[:PAGE],
        more=more,
    )


@get("/{tb:str}/members/new", include_in_schema=False)
async def member_new(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    return render(
        ctx,
        "member_form.html",
        section="members",
        form={},
        key=new_form_key(),
        choices=member_choices(ctx),
        editing=None,
    )


@post("/{tb:str}/members/new", include_in_schema=False, status_code=200)
async def member_create(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    problems = Problems()
    key = idempotency.check_key(form.get("idempotency_key") or None)
    try:
        data = MemberCreate.model_validate(member_body(form, patch=False))
        fp = idempotency.fingerprint("POST", request.url.path, form)

        async def use_case(claim: Claim) -> Member:
            return await create_member(db_session, ctx.principal, bank, data, claim)

        outcome = await run_once(
            request, db_session, ctx.principal, use_case, key=key, fp=fp, render=view_as(MemberOut)
        )
    except (ValidationError, DomainError) as exc:
        from_validation(ctx, problems, exc, member_labels(ctx))
        return render(
            ctx,
            "member_form.html",
            section="members",
            form=form,
            key=form.get("idempotency_key"),
            choices=member_choices(ctx),
            problems=problems,
            editing=None,
            status=422,
        )
    member_id = json.loads(outcome.body)["id"]
    return redirect(ctx.url(f"/members/{member_id}?done=registered"))


@get("/{tb:str}/members/{member_id:uuid}", include_in_schema=False)
async def member_page(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    member_id: uuid.UUID,
    after: str | None = None,
    done: str | None = None,
    date_from: str | None = PeriodFrom,
    date_to: str | None = PeriodTo,
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    member = await get_member(db_session, ctx.tb, member_id)
    return await _party_page(
        request,
        db_session,
        ctx,
        "member",
        member,
        member.account_id,
        member.display_name,
        after,
        done,
        (date_from, date_to),
    )


async def _party_page(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    ctx: Ctx,
    kind: str,
    party: Any,
    account_id: uuid.UUID,
    name: str,
    after: str | None,
    done: str | None,
    period: tuple[str | None, str | None] = (None, None),
) -> Response[str]:
    assert ctx.tb is not None
    _ = ctx.gettext
    owner = OwnerType.member if kind == "member" else OwnerType.organisation
    balance = await reads.balance(session, ctx.tb, owner, party.id)
    period_problem = None
    try:
        date_from, date_to = (date.fromisoformat(p) if p else None for p in period)
        if date_from and date_to and date_from > date_to:
            raise ValueError
    except ValueError:
        date_from = date_to = None
        period_problem = _(
            "Give the period as two dates, the first no later than the second "
            "(for example 2026-11-01 and 2026-11-30)."
        )
    try:
        statement = await statement_json(
            session,
            ctx.tb,
            account_id,
            date_from=date_from,
            date_to=date_to,
            limit=STATEMENT_PAGE,
            cursor=after,
        )
    except DomainError:
        statement = await statement_json(
            session,
            ctx.tb,
            account_id,
            date_from=date_from,
            date_to=date_to,
            limit=STATEMENT_PAGE,
            cursor=None,
        )
    query = "&".join(f"{k}={v.isoformat()}" for k, v in (("from", date_from), ("to", date_to)) if v)
    member_keys = []
    if kind == "member":
        member_keys = [
            k
            for k in await keys.list_keys(session, ctx.principal, ctx.tb.id, None, 500)
            if k.member_id == party.id and k.revoked_at is None
        ]
    flashes = {
        "registered": _("%(name)s is registered.") % {"name": name},
        "saved": _("Your changes are saved."),
        "suspended": _("%(name)s is suspended.") % {"name": name},
        "active": _("%(name)s is active again.") % {"name": name},
        "left": _("%(name)s has left the time bank.") % {"name": name},
        "closed": _("%(name)s is closed.") % {"name": name},
        "erased": _("The member's personal data was erased."),
        "revoked": _("The key was revoked. Apps using it can no longer act for this member."),
    }
    lookalikes = []
    if done == "registered":
        lookalikes = [
            choice(ctx, p) for p in await search.lookalikes(session, ctx.tb, name, party.id)
        ]
    return render(
        ctx,
        "party.html",
        section="members" if kind == "member" else "organisations",
        lookalikes=lookalikes,
        kind=kind,
        party=party,
        name=name,
        balance=balance,
        statement=statement,
        period={"from": date_from, "to": date_to, "query": query, "problem": period_problem},
        member_keys=member_keys,
        flash=flashes.get(done or ""),
        base=ctx.url(f"/{kind}s/{party.id}"),
    )


async def _statement_file(
    ctx: Ctx,
    session: AsyncSession,
    account_id: uuid.UUID,
    name: str,
    ext: str,
    date_from: date | None,
    date_to: date | None,
) -> Response[bytes]:
    assert ctx.tb is not None
    write = statement_xlsx if ext == "xlsx" else statement_csv
    return await write(session, ctx.tb, account_id, name=name, date_from=date_from, date_to=date_to)


@get("/{tb:str}/members/{member_id:uuid}/statement.csv", include_in_schema=False)
async def member_csv(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    member_id: uuid.UUID,
    date_from: date | None = FromParam,
    date_to: date | None = ToParam,
) -> Response[bytes]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    member = await get_member(db_session, ctx.tb, member_id)
    return await _statement_file(
        ctx, db_session, member.account_id, member.display_name, "csv", date_from, date_to
    )


@get("/{tb:str}/members/{member_id:uuid}/statement.xlsx", include_in_schema=False)
async def member_xlsx(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    member_id: uuid.UUID,
    date_from: date | None = FromParam,
    date_to: date | None = ToParam,
) -> Response[bytes]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    member = await get_member(db_session, ctx.tb, member_id)
    return await _statement_file(
        ctx, db_session, member.account_id, member.display_name, "xlsx", date_from, date_to
    )


def _edit_form(member: Member) -> dict[str, str]:
    out = {n: "" if getattr(member, n) is None else str(getattr(member, n)) for n in MEMBER_FIELDS}
    out["statistics_consent"] = "yes" if member.statistics_consent else ""
    return out


@get("/{tb:str}/members/{member_id:uuid}/edit", include_in_schema=False)
async def member_edit(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, member_id: uuid.UUID
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    member = await get_member(db_session, ctx.tb, member_id)
    return render(
        ctx,
        "member_form.html",
        section="members",
        form=_edit_form(member),
        key=None,
        choices=member_choices(ctx),
        editing=member,
    )


@post("/{tb:str}/members/{member_id:uuid}/edit", include_in_schema=False, status_code=200)
async def member_save(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, member_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    member = detached(db_session, await get_member(db_session, bank, member_id))
    problems = Problems()
    try:
        patch = MemberPatch.model_validate(member_body(form, patch=True))
        await _write(
            request,
            db_session,
            lambda: update_member(db_session, ctx.principal, bank, member_id, patch),
        )
    except (ValidationError, DomainError) as exc:
        from_validation(ctx, problems, exc, member_labels(ctx))
        return render(
            ctx,
            "member_form.html",
            section="members",
            form=form,
            key=None,
            choices=member_choices(ctx),
            editing=member,
            problems=problems,
            status=422,
        )
    return redirect(ctx.url(f"/members/{member_id}?done=saved"))


@post("/{tb:str}/members/{member_id:uuid}/status", include_in_schema=False, status_code=200)
async def member_status(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, member_id: uuid.UUID
) -> Response[Any]:
    """Suspend, reactivate or mark as left (one button each on the member's page)."""
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    status = form.get("status", "")
    if status not in (MemberStatus.active, MemberStatus.suspended, MemberStatus.left):
        raise InvalidInput("status", "must be active, suspended or left")
    patch = MemberPatch.model_validate({"status": status})
    await _write(
        request,
        db_session,
        lambda: update_member(db_session, ctx.principal, bank, member_id, patch),
    )
    return redirect(ctx.url(f"/members/{member_id}?done={status}"))


@get("/{tb:str}/members/{member_id:uuid}/erase", include_in_schema=False)
async def member_erase_confirm(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, member_id: uuid.UUID
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    member = await get_member(db_session, ctx.tb, member_id)
    return render(ctx, "erase.html", section="members", member=member)


@post("/{tb:str}/members/{member_id:uuid}/erase", include_in_schema=False, status_code=200)
async def member_erase(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, member_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    member = await get_member(db_session, bank, member_id)
    if form.get("confirm") != "yes":
        problems = Problems()
        problems.add(
            "confirm", ctx.gettext("Tick the box to confirm you want to erase this member")
        )
        return render(
            ctx, "erase.html", section="members", member=member, problems=problems, status=422
        )
    await _write(
        request, db_session, lambda: erase_member(db_session, ctx.principal, bank, member_id)
    )
    return redirect(ctx.url(f"/members/{member_id}?done=erased"))


@post("/{tb:str}/members/{member_id:uuid}/keys", include_in_schema=False, status_code=200)
async def member_key_create(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, member_id: uuid.UUID
) -> Response[Any]:
    """A member key for a partner app; its secret is shown on this page, once."""
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    member = await get_member(db_session, bank, member_id)
    label = form.get("label", "").strip()[:200] or None
    created = await _write(
        request,
        db_session,
        lambda: keys.issue_key(
            db_session,
            ctx.principal,
            role=Role.member,
            timebank_id=bank.id,
            member_id=member.id,
            label=label,
        ),
    )
    return render(ctx, "key_created.html", section="members", member=member, created=created)


@post(
    "/{tb:str}/members/{member_id:uuid}/keys/{key_id:uuid}/revoke",
    include_in_schema=False,
    status_code=200,
)
async def member_key_revoke(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    member_id: uuid.UUID,
    key_id: uuid.UUID,
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    await form_of(request, ctx)
    await _write(
        request, db_session, lambda: keys.revoke_key(db_session, ctx.principal, key_id, bank.id)
    )
    return redirect(ctx.url(f"/members/{member_id}?done=revoked"))


# ---- organisations ------------------------------------------------------------------------


def org_labels(ctx: Ctx) -> dict[str, str]:
    _ = ctx.gettext
    return {
        "name": _("Name"),
        "kind": _("Kind of organisation"),
        "locality": _("Town or neighbourhood"),
        "registration_number": _("Registration number"),
        "contact_email": _("Contact email address"),
    }


@get("/{tb:str}/organisations", include_in_schema=False)
async def organisations(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    q: str = "",
    after: str | None = None,
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    q = q.strip()[:100]
    try:
        start = id_cursor(after)
    except DomainError:
        start = None
    found = await list_organisations(db_session, ctx.tb, None, q or None, start, PAGE)
    more = encode_cursor(found[PAGE - 1].id) if len(found) > PAGE else None
    return render(
        ctx,
        "organisations.html",
        section="organisations",
        q=q,
        organisations=found[:PAGE],
        more=more,
    )


@get("/{tb:str}/organisations/new", include_in_schema=False)
async def organisation_new(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    return render(
        ctx,
        "organisation_form.html",
        section="organisations",
        form={},
        key=new_form_key(),
        kinds=org_kinds(ctx),
    )


@post("/{tb:str}/organisations/new", include_in_schema=False, status_code=200)
async def organisation_create(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    problems = Problems()
    key = idempotency.check_key(form.get("idempotency_key") or None)
    try:
        data = OrganisationCreate.model_validate(_org_body(form, patch=False))
        fp = idempotency.fingerprint("POST", request.url.path, form)

        async def use_case(claim: Claim) -> Any:
            return await create_organisation(db_session, ctx.principal, bank, data, claim)

        outcome = await run_once(
            request,
            db_session,
            ctx.principal,
            use_case,
            key=key,
            fp=fp,
            render=view_as(OrganisationOut),
        )
    except (ValidationError, DomainError) as exc:
        from_validation(ctx, problems, exc, org_labels(ctx))
        return render(
            ctx,
            "organisation_form.html",
            section="organisations",
            form=form,
            key=form.get("idempotency_key"),
            kinds=org_kinds(ctx),
            problems=problems,
            status=422,
        )
    org_id = json.loads(outcome.body)["id"]
    return redirect(ctx.url(f"/organisations/{org_id}?done=registered"))


@get("/{tb:str}/organisations/{org_id:uuid}", include_in_schema=False)
async def organisation_page(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    org_id: uuid.UUID,
    after: str | None = None,
    done: str | None = None,
    date_from: str | None = PeriodFrom,
    date_to: str | None = PeriodTo,
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    org = await get_organisation(db_session, ctx.tb, org_id)
    return await _party_page(
        request,
        db_session,
        ctx,
        "organisation",
        org,
        org.account_id,
        org.name,
        after,
        done,
        (date_from, date_to),
    )


def _org_body(form: dict[str, str], *, patch: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        k: form.get(k, "").strip() or None
        for k in ("locality", "registration_number", "contact_email")
    }
    body["name"] = form.get("name", "").strip()
    body["kind"] = form.get("kind", "")
    return body


@get("/{tb:str}/organisations/{org_id:uuid}/edit", include_in_schema=False)
async def organisation_edit(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, org_id: uuid.UUID
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    org = await get_organisation(db_session, ctx.tb, org_id)
    form = {
        k: "" if getattr(org, k) is None else str(getattr(org, k))
        for k in ("name", "locality", "registration_number", "contact_email")
    }
    form["kind"] = org.kind.value
    return render(
        ctx,
        "organisation_form.html",
        section="organisations",
        form=form,
        key=None,
        kinds=org_kinds(ctx),
        editing=org,
    )


@post("/{tb:str}/organisations/{org_id:uuid}/edit", include_in_schema=False, status_code=200)
async def organisation_save(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, org_id: uuid.UUID
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    org = detached(db_session, await get_organisation(db_session, bank, org_id))
    problems = Problems()
    try:
        patch = OrganisationPatch.model_validate(_org_body(form, patch=True))
        await _write(
            request,
            db_session,
            lambda: update_organisation(db_session, ctx.principal, bank, org_id, patch),
        )
    except (ValidationError, DomainError) as exc:
        from_validation(ctx, problems, exc, org_labels(ctx))
        return render(
            ctx,
            "organisation_form.html",
            section="organisations",
            form=form,
            key=None,
            kinds=org_kinds(ctx),
            editing=org,
            problems=problems,
            status=422,
        )
    return redirect(ctx.url(f"/organisations/{org_id}?done=saved"))


@post("/{tb:str}/organisations/{org_id:uuid}/status", include_in_schema=False, status_code=200)
async def organisation_status(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, org_id: uuid.UUID
) -> Response[Any]:
    """Suspend, reactivate or close (one button each on the organisation's page)."""
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    status = form.get("status", "")
    if status not in (s.value for s in OrganisationStatus):
        raise InvalidInput("status", "must be active, suspended or closed")
    patch = OrganisationPatch.model_validate({"status": status})
    await _write(
        request,
        db_session,
        lambda: update_organisation(db_session, ctx.principal, bank, org_id, patch),
    )
    return redirect(ctx.url(f"/organisations/{org_id}?done={status}"))


@get("/{tb:str}/organisations/{org_id:uuid}/statement.csv", include_in_schema=False)
async def organisation_csv(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    org_id: uuid.UUID,
    date_from: date | None = FromParam,
    date_to: date | None = ToParam,
) -> Response[bytes]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    org = await get_organisation(db_session, ctx.tb, org_id)
    return await _statement_file(
        ctx, db_session, org.account_id, org.name, "csv", date_from, date_to
    )


@get("/{tb:str}/organisations/{org_id:uuid}/statement.xlsx", include_in_schema=False)
async def organisation_xlsx(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    org_id: uuid.UUID,
    date_from: date | None = FromParam,
    date_to: date | None = ToParam,
) -> Response[bytes]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    org = await get_organisation(db_session, ctx.tb, org_id)
    return await _statement_file(
        ctx, db_session, org.account_id, org.name, "xlsx", date_from, date_to
    )


__all__ = ["plain"]
