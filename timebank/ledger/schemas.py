from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from timebank.bodies import JsonBody

SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"


class Strict(JsonBody):
    """A request body or a part of one."""


def _one_of_forms(*forms: tuple[list[str], list[str]]) -> dict[str, Any]:
    """JSON Schema for "exactly one of these forms": each form's fields given (not null), the
    fields of the other forms absent or null — as the model validators check it."""
    return {
        "oneOf": [
            {
                "required": given,
                "properties": {
                    **{f: {"not": {"type": "null"}} for f in given},
                    **{f: {"type": "null"} for f in absent},
                },
            }
            for given, absent in forms
        ]
    }


PARTY_FIELDS = ["member_id", "organisation_id", "account_id"]
SIMPLE_FORM = ["provider", "recipient", "minutes"]
GROUP_FORM = ["providers", "recipients"]


class PartyRef(Strict):
    """Exactly one of ``member_id``, ``organisation_id`` or ``account_id`` (the pool's)."""

    model_config = ConfigDict(
        json_schema_extra=_one_of_forms(
            *(([f], [g for g in PARTY_FIELDS if g != f]) for f in PARTY_FIELDS)
        )
    )

    member_id: uuid.UUID | None = None
    organisation_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PartyRef:
        given = [v for v in (self.member_id, self.organisation_id, self.account_id) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of member_id, organisation_id, account_id")
        return self


class GroupLeg(Strict):
    party: PartyRef
    minutes: int = Field(gt=0, le=10_000_000)


class ExchangeCreate(Strict):
    """Simple form (provider, recipient, minutes) or group form (providers, recipients).
    Providers are credited, recipients debited. ``override_limits`` needs an
    ``override_reason``."""

    model_config = ConfigDict(
        json_schema_extra={
            **_one_of_forms((SIMPLE_FORM, GROUP_FORM), (GROUP_FORM, SIMPLE_FORM)),
            "if": {
                "required": ["override_limits"],
                "properties": {"override_limits": {"const": True}},
            },
            "then": {
                "required": ["override_reason"],
                "properties": {"override_reason": {"type": "string", "pattern": r"\S"}},
            },
        }
    )

    provider: PartyRef | None = None
    recipient: PartyRef | None = None
    minutes: int | None = Field(default=None, gt=0, le=10_000_000)
    providers: list[GroupLeg] | None = Field(default=None, min_length=1, max_length=200)
    recipients: list[GroupLeg] | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, max_length=63)
    occurred_on: date | None = None
    description: str | None = Field(default=None, max_length=2000)
    external_ref: str | None = Field(default=None, min_length=1, max_length=200)
    override_limits: bool = False
    override_reason: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_form(self) -> ExchangeCreate:
        simple = (self.provider, self.recipient, self.minutes)
        group = (self.providers, self.recipients)
        if any(v is not None for v in group):
            if any(v is not None for v in simple):
                raise ValueError(
                    "providers: use either provider/recipient/minutes or providers/recipients"
                )
            if self.providers is None:
                raise ValueError("providers: required in the group form")
            if self.recipients is None:
                raise ValueError("recipients: required in the group form")
        else:
            for name, value in zip(("provider", "recipient", "minutes"), simple, strict=True):
                if value is None:
                    raise ValueError(
                        f"{name}: required (simple form: provider, recipient, minutes)"
                    )
        if self.override_limits and not (self.override_reason or "").strip():
            raise ValueError("override_reason: required with override_limits")
        return self

    @property
    def is_group(self) -> bool:
        return self.providers is not None


class ReverseRequest(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class DecisionRequest(Strict):
    reason: str | None = Field(default=None, max_length=2000)


class BatchRequest(Strict):
    exchanges: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    atomic: bool = False


class PostingOut(BaseModel):
    account_id: uuid.UUID
    minutes: int


class LoggedBy(BaseModel):
    key_id: uuid.UUID | None
    role: str


class ExchangeOut(BaseModel):
    id: uuid.UUID
    status: str
    kind: str
    minutes: int
    category: str | None
    occurred_on: date
    recorded_at: datetime
    description: str | None
    external_ref: str | None
    postings: list[PostingOut]
    provider_account_id: uuid.UUID | None = Field(
        default=None, description="Simple form: the credited party's account (also while pending)"
    )
    recipient_account_id: uuid.UUID | None = Field(
        default=None, description="Simple form: the debited party's account (also while pending)"
    )
    reverses: uuid.UUID | None
    reversed_by: uuid.UUID | None
    logged_by: LoggedBy
    proposed_by: uuid.UUID | None
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    reason: str | None = None
    override_reason: str | None = None


class BatchError(BaseModel):
    code: str
    title: str
    detail: str
    errors: list[dict[str, str]] | None = None


class BatchResult(BaseModel):
    index: int
    status: int
    exchange: ExchangeOut | None = None
    error: BatchError | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]


class AccountOut(BaseModel):
    id: uuid.UUID
    owner: dict[str, Any]
    balance_minutes: int
    min_balance_minutes: int | None
    max_balance_minutes: int | None
    custom_limits: bool


class AccountPatch(Strict):
    """Set an account's own limits (null = unbounded), or ``use_defaults: true`` to follow
    the time bank's defaults again."""

    min_balance_minutes: int | None = Field(default=None, ge=-10_000_000, le=10_000_000)
    max_balance_minutes: int | None = Field(default=None, ge=-10_000_000, le=10_000_000)
    use_defaults: bool = False


class BalanceOut(BaseModel):
    account_id: uuid.UUID
    balance_minutes: int
    earned_minutes: int
    spent_minutes: int
    pending_in_minutes: int
    pending_out_minutes: int
    min_balance_minutes: int | None
    max_balance_minutes: int | None
    as_of: datetime


class Counterparty(BaseModel):
    type: str
    id: uuid.UUID
    display_name: str


class StatementEntry(BaseModel):
    entry_id: int
    exchange_id: uuid.UUID
    kind: str
    occurred_on: date
    recorded_at: datetime
    minutes: int
    balance_after_minutes: int
    counterparties: list[Counterparty]
    category: str | None
    description: str | None


class StatementOut(BaseModel):
    account_id: uuid.UUID
    period: dict[str, date | None]
    opening_balance_minutes: int
    closing_balance_minutes: int
    items: list[StatementEntry]
    next_cursor: str | None


FormatParam = Literal["json", "csv"]
