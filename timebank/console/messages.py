"""Refusals in plain English, next to the field they are about (GOV.UK's error pattern: a
summary at the top linking to each field, the message again above the field).

The services refuse with stable codes and field names (``timebank.errors``); this module
turns them into sentences a coordinator can act on. Every sentence is a gettext message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from markupsafe import escape
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.console.base import Ctx
from timebank.errors import DomainError, field_error
from timebank.ledger import reads
from timebank.ledger.accounts import account_view, get_account


@dataclass
class Problems:
    """Field → message, in the order found; ``""`` is the form as a whole."""

    messages: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.messages.setdefault(name, message)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def get(self, name: str) -> str | None:
        return self.messages.get(name)

    @property
    def summary(self) -> list[tuple[str, str]]:
        return list(self.messages.items())


def plain(ctx: Ctx, code: str) -> str:
    """A refusal without a field, by its code."""
    _ = ctx.gettext
    texts = {
        "not_pending": _("This proposal was already decided, or has expired."),
        "already_reversed": _("This exchange was already reversed."),
        "not_reversible": _(
            "This exchange cannot be reversed (it is not recorded, or is itself a reversal)."
        ),
        "duplicate": _("This was already recorded."),
        "idempotency_key_reused": _(
            "This form was already sent with other details. Open the page again and fill it in afresh."
        ),
        "idempotency_in_flight": _(
            "This form is still being processed. Wait a moment and look at the list again."
        ),
        "party_inactive": _("Someone in this exchange is not active (suspended, left or erased)."),
        "forbidden": _("Your role cannot do this."),
        "not_found": _("We could not find this. It may have been erased."),
        "rate_limited": _("Too many attempts. Wait a few minutes and try again."),
        "unavailable": _("The service is busy. Try again in a moment."),
    }
    return texts.get(code, _("Something went wrong. Try again."))


def field_message(ctx: Ctx, label: str, message: str, *, localised: bool = False) -> str:
    """A service's field message after the field's label: "Hours must be a whole number".
    ``localised``: the message is already in the page's language. A service's message the
    catalogue does not have stays English, marked ``lang="en"`` on a page in another
    language."""
    _ = ctx.gettext
    known = {
        "is after today in this time bank's time zone": _("must be today or earlier"),
        "is after today": _("must be today or earlier"),
        "must not be blank (spaces, tabs and line breaks alone are not a value)": _(
            "must not be blank"
        ),
        "value is not a valid email address": _("must be an email address, like name@example.org"),
        "required with override_limits": _("is needed to record past a limit"),
        "required for a service exchange": _("must be chosen for an exchange between members"),
        "is too easy to guess (a common password, a word with a few numbers, or a repeated or "
        "keyboard pattern): three random words make a good one": _(
            "is too easy to guess (a common password, a word with a few numbers, or a repeated "
            "or keyboard pattern): three random words make a good one"
        ),
        "must not be the same as your current password": _(
            "must not be the same as your current password"
        ),
        "you cannot change your own role": _("cannot be changed for yourself"),
    }
    text = message if localised else known.get(message)
    if text is None:
        text = _(message)
        if text == message:
            text = ctx.english(message)
    # the label and the words after it (Welsh puts a colon between them)
    return escape(_("%(label)s %(message)s")) % {"label": label, "message": text}


def from_validation(
    ctx: Ctx, problems: Problems, exc: ValidationError | DomainError, labels: dict[str, str]
) -> None:
    """Field errors of a pydantic model built from a form, or of ``InvalidInput``."""
    errors: list[tuple[dict[str, str], bool]] = []  # (the error, in the page's language)
    if isinstance(exc, ValidationError):
        for pe in exc.errors():
            text = pydantic_message(ctx, pe)
            error = field_error(".".join(str(p) for p in pe["loc"]), text)
            errors.append((error, text != str(pe["msg"]) and error["message"] == text))
    else:
        errors = [(e, False) for e in exc.extra.get("errors") or []]
    for e, localised in errors:
        name = e["field"].split(".")[0]
        label = labels.get(name)
        if label is None:
            label, name = ctx.gettext("The form"), ""
        problems.add(name, field_message(ctx, label, e["message"], localised=localised))
    if not problems:
        problems.add("", plain(ctx, getattr(exc, "code", "validation_error")))


def pydantic_message(ctx: Ctx, e: Any) -> str:
    """A pydantic error in words, by its type (its own message is for programmers)."""
    _ = ctx.gettext
    limit = e.get("ctx") or {}
    kind = e["type"]
    if (kind == "string_too_short" and limit.get("min_length") == 1) or kind == "missing":
        return _("must not be blank")
    if kind == "string_pattern_mismatch":
        return _("must not be blank")
    if kind == "string_too_long":
        return _("must be %(n)s characters or fewer") % {"n": limit.get("max_length")}
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return _("must be a whole number")
    if kind in ("date_parsing", "date_from_datetime_parsing", "date_type"):
        return _("must be a real date, like 2026-11-28")
    if kind in ("greater_than_equal", "greater_than"):
        return _("must be %(n)s or more") % {"n": limit.get("ge", limit.get("gt"))}
    if kind in ("less_than_equal", "less_than"):
        return _("must be %(n)s or less") % {"n": limit.get("le", limit.get("lt"))}
    if kind == "bad_character":
        return _(
            "must not contain invisible or control characters (%(character)s at character "
            "%(position)s): type it again without it"
        ) % {"character": limit.get("character"), "position": limit.get("position")}
    if kind == "enum":
        return _("must be one of the choices")
    if kind == "value_error" and "email" in str(e.get("msg", "")):
        return _("must be an email address, like name@example.org")
    return str(e["msg"])


async def limit_message(
    ctx: Ctx, session: AsyncSession, exc: DomainError, change: dict[uuid.UUID, int]
) -> str:
    """``balance_limit_exceeded`` as "May Reid would go to −11 h 55 min; the limit is
    −10 h", from the refused account's balance now and the change the form asked for."""
    _ = ctx.gettext
    assert ctx.tb is not None
    try:
        account_id = uuid.UUID(str(exc.extra.get("account_id")))
        acc = await get_account(session, ctx.tb, account_id)
    except (ValueError, DomainError):
        return _("This would take someone past their balance limit.")
    names = await reads.owner_names(session, [account_id])
    name = names.get(account_id, ("", account_id, _("This account")))[2]
    view = account_view(acc, ctx.tb)
    after = view.balance_minutes + change.get(account_id, 0)
    values: dict[str, Any] = {"name": name, "after": ctx.duration(after)}
    if view.min_balance_minutes is not None and after < view.min_balance_minutes:
        values["limit"] = ctx.duration(view.min_balance_minutes)
        return _("%(name)s would go to %(after)s; the lowest they may go is %(limit)s") % values
    values["limit"] = ctx.duration(view.max_balance_minutes)
    return _("%(name)s would go to %(after)s; the most they may hold is %(limit)s") % values
