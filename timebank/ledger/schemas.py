from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from timebank.access import Role
from timebank.bodies import FieldError, FreeText, JsonBody, LeavesOut, one_of
from timebank.ledger.models import ExchangeKind, ExchangeStatus

SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"
OwnerTypeName = Literal["member", "organisation", "pool"]


class Strict(JsonBody):
    """A request body or a part of one."""


EXAMPLE_MEMBER = "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21"
EXAMPLE_OTHER_MEMBER = "01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40"
EXAMPLE_ORGANISATION = "01937a4f-0b2e-7d44-b1c3-7e8f9a0b1c2d"
EXAMPLE_POOL = "01937a4d-ffee-7abc-8def-0123456789ab"


class MemberParty(Strict):
    """A member of this time bank."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"member_id": EXAMPLE_MEMBER}]})
    member_id: uuid.UUID


class OrganisationParty(Strict):
    """A member organisation of this time bank."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"organisation_id": EXAMPLE_ORGANISATION}]}
    )
    organisation_id: uuid.UUID


class PoolParty(Strict):
    """The time bank's community pool, by its account id (``pool_account_id`` of the bank)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"account_id": EXAMPLE_POOL}]})
    account_id: uuid.UUID


class PartyRef(Strict):
    """Exactly one of ``member_id``, ``organisation_id`` or ``account_id`` (the pool's)."""

    __get_pydantic_json_schema__ = one_of(MemberParty, OrganisationParty, PoolParty)

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


MINUTES = Field(gt=0, le=10_000_000, description="Whole minutes, more than 0")


class _ExchangeDetails(Strict):
    """What both forms of a new exchange may carry."""

    category: str | None = Field(
        default=None, max_length=63, description="A category slug of the bank"
    )
    occurred_on: date | None = Field(
        default=None, description="When the work was done (default today in the bank's zone)"
    )
    description: Annotated[str, FreeText] | None = Field(default=None, max_length=2000)
    external_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your own reference (e.g. a time sheet line), unique in the bank: a second "
        "exchange with it is refused as `duplicate` (staff keys only)",
    )
    override_limits: bool = Field(
        default=False, description="Staff: record even past a balance limit (needs a reason)"
    )
    override_reason: Annotated[str, FreeText] | None = Field(
        default=None, max_length=2000, description="Required with `override_limits: true`"
    )


class SimpleExchangeCreate(_ExchangeDetails):
    """One provider gives ``minutes`` to one recipient."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "provider": {"member_id": EXAMPLE_MEMBER},
                    "recipient": {"member_id": EXAMPLE_OTHER_MEMBER},
                    "minutes": 90,
                    "category": "gardening",
                    "occurred_on": "2026-11-28",
                    "description": "Cleared the front garden",
                }
            ]
        }
    )
    provider: PartyRef
    recipient: PartyRef
    minutes: int = MINUTES


class GroupExchangeCreate(_ExchangeDetails):
    """Several legs, e.g. a class: one provider, several recipients. The providers' minutes
    and the recipients' minutes must add up to the same total."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "providers": [{"party": {"member_id": EXAMPLE_MEMBER}, "minutes": 120}],
                    "recipients": [
                        {"party": {"member_id": EXAMPLE_OTHER_MEMBER}, "minutes": 60},
                        {"party": {"organisation_id": EXAMPLE_ORGANISATION}, "minutes": 60},
                    ],
                    "category": "learning",
                    "description": "Computer class",
                }
            ]
        }
    )
    providers: list[GroupLeg] = Field(min_length=1, max_length=200)
    recipients: list[GroupLeg] = Field(min_length=1, max_length=200)


class ExchangeCreate(Strict):
    """Simple form (provider, recipient, minutes) or group form (providers, recipients).
    Providers are credited, recipients debited. ``override_limits`` needs an
    ``override_reason``."""

    __get_pydantic_json_schema__ = one_of(SimpleExchangeCreate, GroupExchangeCreate)

    provider: PartyRef | None = None
    recipient: PartyRef | None = None
    minutes: int | None = Field(default=None, gt=0, le=10_000_000)
    providers: list[GroupLeg] | None = Field(default=None, min_length=1, max_length=200)
    recipients: list[GroupLeg] | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, max_length=63)
    occurred_on: date | None = None
    description: Annotated[str, FreeText] | None = Field(default=None, max_length=2000)
    external_ref: str | None = Field(default=None, min_length=1, max_length=200)
    override_limits: bool = False
    override_reason: Annotated[str, FreeText] | None = Field(default=None, max_length=2000)

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
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Entered twice from the same sheet"}]}
    )
    reason: Annotated[str, FreeText] = Field(min_length=1, max_length=2000)


class DecisionRequest(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "Not this week"}]})
    reason: Annotated[str, FreeText] | None = Field(default=None, max_length=2000)


class BatchRequest(Strict):
    """Each item is an exchange as ``createExchange`` takes it; items are checked one by one
    (an item's mistake is its own result, not a refusal of the batch)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "exchanges": [
                        {
                            "provider": {"member_id": EXAMPLE_MEMBER},
                            "recipient": {"member_id": EXAMPLE_OTHER_MEMBER},
                            "minutes": 60,
                            "external_ref": "sheet-2026-11/1",
                        }
                    ],
                    "atomic": False,
                }
            ]
        }
    )
    exchanges: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=1000,
        json_schema_extra={"items": {"$ref": "#/components/schemas/ExchangeCreate"}},
    )
    atomic: bool = Field(
        default=False, description="Record nothing unless every item can be recorded"
    )


class PostingOut(BaseModel):
    account_id: uuid.UUID
    minutes: int


class LoggedBy(BaseModel):
    """Who recorded it (SPEC §7.2): an API key or a console user, and the role it had."""

    key_id: uuid.UUID | None
    user_id: uuid.UUID | None
    role: Role


class Actor(LeavesOut):
    """Who decided a proposal, as the reader may see it: a member (through their app), a
    console user or an API key. A member reading sees a member's name, and of staff only
    their role (no id)."""

    ABSENT_IF_NONE = ("id",)
    type: Literal["member", "user", "key"]
    id: uuid.UUID | SkipJsonSchema[None] = Field(
        default=None, description="Left out where the reader may not see it"
    )
    name: str = Field(description="A member's name, a console user's, a key's label, or a role")


class ExchangeOut(LeavesOut):
    ABSENT_IF_NONE = ("recorded_at", "expires_at")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01937a52-1c4d-7e8f-9a0b-1c2d3e4f5a6b",
                    "status": "recorded",
                    "kind": "p2p",
                    "minutes": 90,
                    "category": "gardening",
                    "occurred_on": "2026-11-28",
                    "recorded_at": "2026-11-30T10:15:00Z",
                    "description": "Cleared the front garden",
                    "external_ref": None,
                    "postings": [
                        {"account_id": "01937a4e-58c2-7c3e-9a51-000000000001", "minutes": 90},
                        {"account_id": "01937a4e-6d10-7b9a-8e2f-000000000002", "minutes": -90},
                    ],
                    "provider_account_id": "01937a4e-58c2-7c3e-9a51-000000000001",
                    "recipient_account_id": "01937a4e-6d10-7b9a-8e2f-000000000002",
                    "reverses": None,
                    "reversed_by": None,
                    "logged_by": {
                        "key_id": "01937a40-0000-7000-8000-00000000beef",
                        "user_id": None,
                        "role": "broker",
                    },
                    "proposed_by": None,
                    "decided_by": None,
                    "decided_at": None,
                    "created_at": "2026-11-30T10:15:00Z",
                    "updated_at": "2026-11-30T10:15:00Z",
                }
            ]
        }
    )
    id: uuid.UUID
    status: ExchangeStatus
    kind: ExchangeKind
    minutes: int
    category: str | None
    occurred_on: date
    recorded_at: datetime | SkipJsonSchema[None] = Field(
        default=None, description="When it was recorded; left out until it is (a proposal)"
    )
    created_at: datetime = Field(description="When it was recorded or proposed")
    updated_at: datetime = Field(
        description="When it last changed (decided, expired, reversed, redacted); the lists' "
        "`updated_since` compares this"
    )
    expires_at: datetime | SkipJsonSchema[None] = Field(
        default=None, description="A pending proposal: when it expires unless decided"
    )
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
    proposed_by: uuid.UUID | None = Field(description="A proposal: the proposing member's id")
    decided_by: Actor | None = Field(description="Who confirmed, rejected or cancelled it")
    decided_at: datetime | None
    reason: str | None = None
    override_reason: str | None = None


class BatchError(LeavesOut):
    ABSENT_IF_NONE = ("errors",)
    code: str = Field(description="A problem `code` (see ProblemCode), e.g. `batch_aborted`")
    title: str
    detail: str
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="`validation_error`: each refused field"
    )


class BatchResult(LeavesOut):
    ABSENT_IF_NONE = ("exchange", "error")
    index: int
    status: int
    exchange: ExchangeOut | SkipJsonSchema[None] = Field(
        default=None, description="Recorded (status 201): the exchange"
    )
    error: BatchError | SkipJsonSchema[None] = Field(default=None, description="Refused: why")


class BatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "index": 0,
                            "status": 424,
                            "error": {
                                "code": "batch_aborted",
                                "title": "Batch aborted",
                                "detail": "Not recorded: another item of this atomic batch "
                                "was refused",
                            },
                        },
                        {
                            "index": 1,
                            "status": 409,
                            "error": {
                                "code": "duplicate",
                                "title": "Duplicate",
                                "detail": "external_ref 'sheet-2026-11/2' is already recorded",
                            },
                        },
                    ]
                }
            ]
        }
    )
    results: list[BatchResult]


class AccountOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01937a4e-58c2-7c3e-9a51-000000000001",
                    "owner": {
                        "type": "member",
                        "id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                        "display_name": "Alex Smith",
                    },
                    "balance_minutes": 150,
                    "min_balance_minutes": -600,
                    "max_balance_minutes": None,
                    "custom_limits": False,
                }
            ]
        }
    )
    id: uuid.UUID
    owner: dict[str, Any]
    balance_minutes: int
    min_balance_minutes: int | None
    max_balance_minutes: int | None
    custom_limits: bool


class AccountPatch(Strict):
    """Set an account's own limits (null = unbounded), or ``use_defaults: true`` to follow
    the time bank's defaults again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"min_balance_minutes": -1200, "max_balance_minutes": None}]
        }
    )
    min_balance_minutes: int | None = Field(default=None, ge=-10_000_000, le=10_000_000)
    max_balance_minutes: int | None = Field(default=None, ge=-10_000_000, le=10_000_000)
    use_defaults: bool = False


class BalanceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": "01937a4e-58c2-7c3e-9a51-000000000001",
                    "balance_minutes": 150,
                    "earned_minutes": 600,
                    "spent_minutes": 450,
                    "pending_in_minutes": 60,
                    "pending_out_minutes": 0,
                    "min_balance_minutes": -600,
                    "max_balance_minutes": None,
                    "as_of": "2026-11-30T10:15:00Z",
                }
            ]
        }
    )
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
    type: OwnerTypeName
    id: uuid.UUID
    display_name: str


class ReversedExchange(BaseModel):
    """What a reversal line reverses: its date, the other party and the category."""

    exchange_id: uuid.UUID
    occurred_on: date
    counterparties: list[Counterparty]
    category: str | None


class StatementEntry(BaseModel):
    entry_id: int
    exchange_id: uuid.UUID
    kind: ExchangeKind
    occurred_on: date
    recorded_at: datetime
    minutes: int
    balance_after_minutes: int = Field(
        description="The running balance after this line, in the statement's order "
        "(occurred_on, then recording order)"
    )
    counterparties: list[Counterparty]
    category: str | None
    description: str | None
    reverses: ReversedExchange | None = Field(
        default=None, description="For a reversal: the exchange it reverses"
    )
    reason: str | None = Field(default=None, description="For a reversal: the reason typed")


class StatementOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": "01937a4e-58c2-7c3e-9a51-000000000001",
                    "period": {"from": "2026-11-01", "to": "2026-11-30"},
                    "opening_balance_minutes": 60,
                    "closing_balance_minutes": 150,
                    "items": [
                        {
                            "entry_id": 5812,
                            "exchange_id": "01937a52-1c4d-7e8f-9a0b-1c2d3e4f5a6b",
                            "kind": "p2p",
                            "occurred_on": "2026-11-28",
                            "recorded_at": "2026-11-30T10:15:00Z",
                            "minutes": 90,
                            "balance_after_minutes": 150,
                            "counterparties": [
                                {
                                    "type": "member",
                                    "id": "01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40",
                                    "display_name": "Sam Jones",
                                }
                            ],
                            "category": "gardening",
                            "description": "Cleared the front garden",
                        }
                    ],
                    "next_cursor": None,
                    "resume_cursor": "NTgxMg",
                }
            ]
        }
    )
    account_id: uuid.UUID
    period: dict[str, date | None]
    opening_balance_minutes: int
    closing_balance_minutes: int
    items: list[StatementEntry]
    next_cursor: str | None
    resume_cursor: str = Field(
        description="Where this page ends, on every page (the last too): ask again later "
        "with `cursor=` this to get only the entries added since"
    )


FormatParam = Literal["json", "csv"]
