"""Admin pages: the time bank's settings, console users (create with a one-time password,
disable and enable, a new one-time password for a forgotten one, role, sign out a session),
API keys, and the audit trail."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import available_timezones

from litestar import Request, Response, get, post
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import db
from timebank.access import Role
from timebank.audit.service import list_events
from timebank.auth import service as keys
from timebank.auth import users
from timebank.console.base import (
    Ctx,
    admin,
    form_of,
    now,
    redirect,
    render,
    settings_of,
    timeouts,
)
from timebank.console.i18n import known
from timebank.console.messages import Problems, from_validation, plain
from timebank.errors import DomainError, InvalidInput
from timebank.timebanks.models import TimeBank
from timebank.timebanks.schemas import TimeBankSettingsPatch
from timebank.timebanks.service import update_timebank


async def _write(request: Request[Any, Any, Any], session: AsyncSession, fn: Any) -> Any:
    return await db.write(session, fn, retries=settings_of(request).write_retries)


@get("/{tb:str}/admin", include_in_schema=False)
async def admin_home(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await admin(request, db_session, tb)
    return render(ctx, "admin.html", section="admin")


# ---- settings -----------------------------------------------------------------------------

HOUR_SETTINGS = (
    "member_min_balance_minutes",
    "member_max_balance_minutes",
    "organisation_min_balance_minutes",
    "organisation_max_balance_minutes",
    "max_exchange_minutes",
    "starting_grant_minutes",
)


def _settings_form(ctx: Ctx) -> dict[str, str]:
    assert ctx.tb is not None
    out = {
        "name": ctx.tb.name,
        "pending_expiry_days": str(ctx.tb.pending_expiry_days),
        "default_language": ctx.tb.default_language or "",
        "time_zone": ctx.tb.time_zone,
        "suppression_threshold": str(ctx.tb.suppression_threshold),
    }
    for name in HOUR_SETTINGS:
        value = getattr(ctx.tb, name)
        if value is not None and name in LOWEST:
            value = -value  # asked as how far below zero
        out[name] = "" if value is None else f"{value / 60:g}"
    return out


# the lowest balances: a person types how far below zero ("15" or "-15" both mean −15 h)
LOWEST = ("member_min_balance_minutes", "organisation_min_balance_minutes")
WHOLE_SETTINGS = ("pending_expiry_days", "suppression_threshold")


def settings_labels(ctx: Ctx) -> dict[str, str]:
    _ = ctx.gettext
    return {
        "name": _("Name of the time bank"),
        "member_min_balance_minutes": _("Lowest balance a member may reach, in hours below zero"),
        "member_max_balance_minutes": _("Highest balance a member may have, in hours"),
        "organisation_min_balance_minutes": _(
            "Lowest balance an organisation may reach, in hours below zero"
        ),
        "organisation_max_balance_minutes": _("Highest balance an organisation may have, in hours"),
        "max_exchange_minutes": _("Longest exchange, in hours"),
        "starting_grant_minutes": _("Starting grant for a new member, in hours"),
        "pending_expiry_days": _("Days before an unanswered proposal expires"),
        "default_language": _("Language of the console"),
        "time_zone": _("Time zone"),
        "suppression_threshold": _("Smallest group shown to funders"),
    }


@get("/{tb:str}/admin/settings", include_in_schema=False)
async def settings_form(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[str]:
    ctx = await admin(request, db_session, tb)
    return render(
        ctx,
        "settings.html",
        section="admin",
        form=_settings_form(ctx),
        labels=settings_labels(ctx),
        hours=HOUR_SETTINGS,
        lowest=LOWEST,
        zones=sorted(available_timezones()),
    )


@post("/{tb:str}/admin/settings", include_in_schema=False, status_code=200)
async def settings_save(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    _ = ctx.gettext
    form = await form_of(request, ctx)
    labels = settings_labels(ctx)
    problems = Problems()
    changes: dict[str, Any] = {}
    for name in HOUR_SETTINGS:
        text = form.get(name, "").strip().replace("\u2212", "-")
        if not text:
            if name.endswith("balance_minutes"):
                changes[name] = None
            continue
        try:
            minutes = round(float(text) * 60)
        except ValueError:
            problems.add(
                name, _("%(label)s must be a number, like 10 or 2.5") % {"label": labels[name]}
            )
            continue
        changes[name] = -abs(minutes) if name in LOWEST else minutes
    for name in WHOLE_SETTINGS:
        whole = form.get(name, "").strip()
        if not whole:
            continue
        if whole.isdigit():
            changes[name] = int(whole)
        else:
            problems.add(name, _("%(label)s must be a whole number") % {"label": labels[name]})
    zone = form.get("time_zone", "").strip()
    if zone and zone in available_timezones():
        changes["time_zone"] = zone
    elif zone:
        problems.add(
            "time_zone",
            _("%(label)s must be a time zone from the list, like Europe/London")
            % {"label": labels["time_zone"]},
        )
    name = form.get("name", "").strip()
    if not name:
        problems.add("name", _("Enter the name of the time bank"))
    language = form.get("default_language", "")
    if language and not known(language):
        problems.add("default_language", _("Choose a language from the list"))
    patch = None
    try:  # every field's problem at once, those found above and the rules' own
        patch = TimeBankSettingsPatch.model_validate(changes)
    except ValidationError as exc:
        from_validation(ctx, problems, exc, labels)
    if not problems and patch is not None:
        try:
            settings = patch.model_dump(exclude_unset=True)
            # the console's own setting (not in the API's settings): set, and audited, alike
            settings["default_language"] = known(language)
            body = {"name": name[:200], "settings": settings}

            async def save() -> Any:
                attached = await db_session.get(TimeBank, bank.id)  # ctx.tb is detached
                assert attached is not None
                return await update_timebank(db_session, ctx.principal, attached, body)

            await _write(request, db_session, save)
            return redirect(ctx.url("/admin/settings?done=saved"))
        except (ValidationError, DomainError) as exc:
            from_validation(ctx, problems, exc, labels)
    return render(
        ctx,
        "settings.html",
        section="admin",
        form=form,
        labels=labels,
        hours=HOUR_SETTINGS,
        lowest=LOWEST,
        zones=sorted(available_timezones()),
        problems=problems,
        status=422,
    )


# ---- console users ------------------------------------------------------------------------


@get("/{tb:str}/admin/users", include_in_schema=False)
async def users_page(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, done: str | None = None
) -> Response[str]:
    ctx = await admin(request, db_session, tb)
    return await _users_page(request, ctx, db_session, done=done)


async def _users_page(
    request: Request[Any, Any, Any],
    ctx: Ctx,
    session: AsyncSession,
    *,
    form: dict[str, str] | None = None,
    problems: Problems | None = None,
    done: str | None = None,
    status: int = 200,
) -> Response[str]:
    assert ctx.tb is not None
    _ = ctx.gettext
    idle, absolute = timeouts(request)
    people = await users.list_users(session, ctx.principal, ctx.tb.id)
    live = await users.list_sessions(
        session, ctx.principal, ctx.tb.id, now(request), idle, absolute
    )
    flashes = {
        "created": _("The user is created. Give them their password in person or by phone."),
        "disabled": _("The user is disabled and signed out everywhere."),
        "enabled": _("The user can sign in again."),
        "updated": _("The user's role is changed. They were signed out, so it applies at once."),
        "revoked": _("That session is signed out."),
    }
    return render(
        ctx,
        "users.html",
        section="admin",
        people=people,
        live=live,
        form=form or {"role": "broker"},
        problems=problems,
        flash=flashes.get(done or ""),
        status=status,
    )


@post("/{tb:str}/admin/users", include_in_schema=False, status_code=200)
async def user_create(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    """A new user gets a one-time password, shown once here, and chooses their own at their
    first sign-in (an admin never picks a password someone else keeps)."""
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    _ = ctx.gettext
    form = await form_of(request, ctx)
    problems = Problems()
    role = form.get("role", "")
    if role not in ("admin", "broker", "funder"):
        problems.add("role", _("Choose a role"))
    if not form.get("email", "").strip():
        problems.add("email", _("Enter their email address"))
    if not problems:
        password = users.one_time_password()
        try:
            made = await _write(
                request,
                db_session,
                lambda: users.create_user(
                    db_session,
                    ctx.principal,
                    email=form.get("email", ""),
                    password=password,
                    role=Role(role),
                    timebank_ids=[bank.id],
                    now=now(request),
                    name=form.get("name"),
                    must_change_password=True,
                ),
            )
            return _one_time(ctx, made.email, password, created=True)
        except DomainError as exc:
            if exc.code == "duplicate":
                problems.add("email", _("A console user with this email address exists"))
            else:
                from_validation(
                    ctx, problems, exc, {"email": _("Email address"), "role": _("Role")}
                )
    return await _users_page(request, ctx, db_session, form=form, problems=problems, status=422)


def _one_time(ctx: Ctx, email: str, password: str, *, created: bool) -> Response[str]:
    return render(
        ctx,
        "password_given.html",
        section="admin",
        email=email,
        password=password,
        created=created,
    )


async def _user_action(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    run: Any,
    done: str,
) -> Response[Any]:
    """One user's button (disable, enable, new password, role): the same page again, with
    what was done or why not."""
    ctx = await admin(request, db_session, tb)
    form = await form_of(request, ctx)
    try:
        result = await _write(request, db_session, lambda: run(ctx, form))
    except DomainError as exc:
        if exc.code == "not_found":
            raise
        problems = Problems()
        if exc.code == "validation_error":
            from_validation(ctx, problems, exc, {"role": ctx.gettext("Role")})
        else:
            problems.add("", plain(ctx, exc.code))
        return await _users_page(request, ctx, db_session, problems=problems, status=422)
    if isinstance(result, tuple):  # a one-time password to show
        email, password = result
        return _one_time(ctx, email, password, created=False)
    return redirect(ctx.url(f"/admin/users?done={done}"))


@post("/{tb:str}/admin/users/{user_id:uuid}/disable", include_in_schema=False, status_code=200)
async def user_disable(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, user_id: uuid.UUID
) -> Response[Any]:
    return await _user_action(
        request,
        db_session,
        tb,
        lambda ctx, form: users.disable_user(db_session, ctx.principal, user_id, now(request)),
        "disabled",
    )


@post("/{tb:str}/admin/users/{user_id:uuid}/enable", include_in_schema=False, status_code=200)
async def user_enable(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, user_id: uuid.UUID
) -> Response[Any]:
    return await _user_action(
        request,
        db_session,
        tb,
        lambda ctx, form: users.enable_user(db_session, ctx.principal, user_id, now(request)),
        "enabled",
    )


@post("/{tb:str}/admin/users/{user_id:uuid}/password", include_in_schema=False, status_code=200)
async def user_reset_password(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, user_id: uuid.UUID
) -> Response[Any]:
    async def run(ctx: Ctx, form: dict[str, str]) -> tuple[str, str]:
        password = await users.reset_password(db_session, ctx.principal, user_id, now(request))
        target = await users.find_user(db_session, str(user_id))
        return target.email, password

    return await _user_action(request, db_session, tb, run, "reset")


@post("/{tb:str}/admin/users/{user_id:uuid}/role", include_in_schema=False, status_code=200)
async def user_role(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, user_id: uuid.UUID
) -> Response[Any]:
    def run(ctx: Ctx, form: dict[str, str]) -> Any:
        role = form.get("role", "")
        if role not in ("admin", "broker", "funder"):
            raise InvalidInput("role", "must be admin, broker or funder")
        return users.update_user(
            db_session, ctx.principal, user_id, role=Role(role), now=now(request)
        )

    return await _user_action(request, db_session, tb, run, "updated")


@post("/{tb:str}/admin/sessions/{session_id:uuid}/revoke", include_in_schema=False, status_code=200)
async def session_revoke(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, session_id: uuid.UUID
) -> Response[Any]:
    ctx = await admin(request, db_session, tb)
    await form_of(request, ctx)
    await _write(
        request,
        db_session,
        lambda: users.revoke_session(db_session, ctx.principal, session_id, now(request)),
    )
    return redirect(ctx.url("/admin/users?done=revoked"))


# ---- API keys -----------------------------------------------------------------------------


@get("/{tb:str}/admin/keys", include_in_schema=False)
async def keys_page(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, done: str | None = None
) -> Response[str]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    found = await keys.list_keys(db_session, ctx.principal, ctx.tb.id, None, 500)
    flash = ctx.gettext("The key was revoked.") if done == "revoked" else None
    return render(ctx, "keys.html", section="admin", keys=found[:500], flash=flash)


@post("/{tb:str}/admin/keys", include_in_schema=False, status_code=200)
async def key_create(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    form = await form_of(request, ctx)
    role = form.get("role", "broker")
    if role not in ("admin", "broker"):
        role = "broker"
    label = form.get("label", "").strip()[:200] or None
    created = await _write(
        request,
        db_session,
        lambda: keys.issue_key(
            db_session, ctx.principal, role=Role(role), timebank_id=bank.id, label=label
        ),
    )
    return render(ctx, "key_created.html", section="admin", member=None, created=created)


@post("/{tb:str}/admin/keys/{key_id:uuid}/revoke", include_in_schema=False, status_code=200)
async def key_revoke(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, key_id: uuid.UUID
) -> Response[Any]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    await form_of(request, ctx)
    await _write(
        request, db_session, lambda: keys.revoke_key(db_session, ctx.principal, key_id, bank.id)
    )
    return redirect(ctx.url("/admin/keys?done=revoked"))


# ---- audit --------------------------------------------------------------------------------


@get("/{tb:str}/admin/audit", include_in_schema=False)
async def audit_page(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    action: str = "",
    after: int | None = None,
) -> Response[str]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    action = action.strip()[:64]
    events = await list_events(
        db_session,
        ctx.principal,
        ctx.tb.id,
        action=action or None,
        target=None,
        date_from=None,
        date_to=None,
        after=after,
        limit=50,
    )
    more = events[49].id if len(events) > 50 else None
    return render(ctx, "audit.html", section="admin", events=events[:50], action=action, more=more)
