from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from timebank.bodies import JsonBody
from timebank.ledger.schemas import PartyRef

LineStatus = Literal["ready", "refused", "repeat", "already_recorded", "conflict", "recorded"]


class SheetParty(BaseModel):
    type: Literal["member", "organisation", "pool"]
    id: uuid.UUID = Field(description="member or organisation id; the pool's account id")
    name: str
    hint: str | None = Field(description="a membership number or email that tells two apart")


class LineError(BaseModel):
    code: str = Field(
        description="unknown_party, ambiguous_party, bad_date, bad_hours, unknown_category, "
        "formula, already_recorded, conflict, repeated_line (the same as an earlier line), "
        "repeats_exchange (the same as an exchange in the ledger), or a problem code of createExchange "
        "(validation_error, balance_limit_exceeded, party_inactive, duplicate)"
    )
    message: str
    field: str | None
    candidates: list[SheetParty] | None = Field(
        default=None, description="for an unknown or ambiguous party: the names to choose from"
    )


class RepeatOf(BaseModel):
    """What a line repeats: an earlier line of the sheet, or an exchange in the ledger."""

    line: int | None = Field(default=None, description="the earlier line of this sheet")
    exchange_id: uuid.UUID | None = Field(default=None, description="the recorded exchange")
    external_ref: str | None = Field(
        default=None, description="the recorded exchange's reference (a sheet's line, say)"
    )
    recorded_at: datetime | None = Field(default=None, description="when it was recorded")


class SheetLine(BaseModel):
    line: int = Field(description="the line number as a spreadsheet shows it (header = 1)")
    external_ref: str
    cells: dict[str, str] = Field(description="the line as written, by column")
    occurred_on: date | None
    provider: SheetParty | None
    recipient: SheetParty | None
    minutes: int | None
    category: str | None
    description: str | None
    status: LineStatus = Field(
        description="`repeat`: the same date, people, minutes and category as an earlier "
        "line or an exchange in the ledger (see `repeats`); recorded only once a broker says "
        "it is a separate exchange (`chooseImportParty` with `separate: true`)"
    )
    error: LineError | None
    exchange_id: uuid.UUID | None
    repeats: RepeatOf | None = None
    separate: bool = Field(
        default=False, description="a broker said this line is a separate exchange"
    )


class ImportSummary(BaseModel):
    lines: int
    ready: int
    refused: int
    repeat: int = 0
    already_recorded: int
    conflict: int
    recorded: int


class ImportOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01937b00-1111-7222-8333-444455556666",
                    "timebank": "north-ayrshire",
                    "sheet": "november",
                    "filename": "november.csv",
                    "status": "preview",
                    "date_formats": "YYYY-MM-DD or DD/MM/YYYY",
                    "columns": {
                        "date": "Date",
                        "provider": "Giver",
                        "recipient": "Receiver",
                        "hours": "Hours",
                    },
                    "created_at": "2026-12-01T10:00:00Z",
                    "committed_at": None,
                    "summary": {
                        "lines": 2,
                        "ready": 1,
                        "refused": 1,
                        "already_recorded": 0,
                        "conflict": 0,
                        "recorded": 0,
                    },
                    "lines": [
                        {
                            "line": 2,
                            "external_ref": "november/2",
                            "cells": {
                                "date": "28/11/2026",
                                "provider": "May Reid",
                                "recipient": "Raj Patel",
                                "hours": "1:30",
                            },
                            "occurred_on": "2026-11-28",
                            "provider": {
                                "type": "member",
                                "id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                                "name": "May Reid",
                                "hint": "M-0042",
                            },
                            "recipient": {
                                "type": "member",
                                "id": "01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40",
                                "name": "Raj Patel",
                                "hint": None,
                            },
                            "minutes": 90,
                            "category": "home-garden",
                            "description": None,
                            "status": "ready",
                            "error": None,
                            "exchange_id": None,
                        },
                        {
                            "line": 3,
                            "external_ref": "november/3",
                            "cells": {
                                "date": "29/11/2026",
                                "provider": "Jo",
                                "recipient": "Raj Patel",
                                "hours": "2",
                            },
                            "occurred_on": "2026-11-29",
                            "provider": None,
                            "recipient": None,
                            "minutes": None,
                            "category": None,
                            "description": None,
                            "status": "refused",
                            "error": {
                                "code": "ambiguous_party",
                                "message": "provider: 2 parties are called 'Jo': use a membership number or email",
                                "field": "provider",
                                "candidates": [
                                    {
                                        "type": "member",
                                        "id": "01937a4e-0000-7000-8000-000000000011",
                                        "name": "Jo",
                                        "hint": "M-0007",
                                    },
                                    {
                                        "type": "member",
                                        "id": "01937a4e-0000-7000-8000-000000000012",
                                        "name": "Jo",
                                        "hint": "jo@example.org",
                                    },
                                ],
                            },
                            "exchange_id": None,
                        },
                    ],
                }
            ]
        }
    )
    id: uuid.UUID
    timebank: str
    sheet: str
    filename: str | None
    status: Literal["preview", "committed", "discarded"]
    date_formats: str = Field(description="the dates a sheet may use")
    columns: dict[str, str] = Field(description="our column → the header as written")
    created_at: datetime
    committed_at: datetime | None
    summary: ImportSummary
    lines: list[SheetLine]


class LineChoice(JsonBody):
    """A broker's word on one line: who its provider or recipient is (e.g. one of the
    candidates of an ambiguous name), or that a line repeating another line or an exchange
    in the ledger is a separate exchange (``separate: true``; ``false`` takes it back).
    Exactly one of ``provider``, ``recipient`` and ``separate``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"provider": {"member_id": "01937a4e-0000-7000-8000-000000000011"}},
                {"separate": True},
            ]
        }
    )
    provider: PartyRef | None = None
    recipient: PartyRef | None = None
    separate: bool | None = Field(
        default=None,
        description="true: this line is a separate exchange, though it repeats an earlier "
        "line or an exchange in the ledger — record it",
    )

    @model_validator(mode="after")
    def _one_side(self) -> LineChoice:
        given = [v for v in (self.provider, self.recipient, self.separate) if v is not None]
        if len(given) != 1:
            raise ValueError("provider: give one of provider, recipient or separate")
        return self

    def choice(self) -> tuple[str, uuid.UUID]:
        side = "provider" if self.provider is not None else "recipient"
        ref = self.provider or self.recipient
        assert ref is not None
        party_id = ref.member_id or ref.organisation_id or ref.account_id
        assert party_id is not None
        return side, party_id


class CommitRequest(JsonBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"atomic": True}]})
    atomic: bool = Field(
        default=False, description="Record nothing unless every ready line can be recorded"
    )
