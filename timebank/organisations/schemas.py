from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from timebank.bodies import NOT_BLANK, Email, JsonBody, NameText, Trimmed
from timebank.namesearch import NameWarning
from timebank.organisations.models import OrganisationKind, OrganisationStatus


class _In(JsonBody):
    """Text fields are trimmed after their length is checked (see ``timebank.bodies``)."""


class OrganisationCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Irvine Food Bank",
                    "kind": "charity",
                    "locality": "Irvine",
                    "registration_number": "SC012345",
                }
            ]
        }
    )
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), NameText, Trimmed]
    kind: OrganisationKind
    locality: Annotated[str, Field(max_length=100), Trimmed] | None = None
    registration_number: Annotated[str, Field(max_length=50), Trimmed] | None = None
    contact_email: Email | None = None
    external_ref: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), Trimmed] | None
    ) = Field(
        default=None,
        description="Your own reference for it (e.g. on time sheets), unique in the bank",
    )


class OrganisationPatch(_In):
    """Only the fields given change; null clears a field, except name, kind and status."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"contact_email": "volunteers@example.org"}]}
    )
    name: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), NameText, Trimmed]
        | SkipJsonSchema[None]
    ) = None
    kind: OrganisationKind | SkipJsonSchema[None] = None
    locality: Annotated[str, Field(max_length=100), Trimmed] | None = None
    registration_number: Annotated[str, Field(max_length=50), Trimmed] | None = None
    contact_email: Email | None = None
    external_ref: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), Trimmed] | None
    ) = Field(
        default=None,
        description="Your own reference for it (e.g. on time sheets), unique in the bank",
    )
    status: OrganisationStatus | SkipJsonSchema[None] = None


class OrganisationOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "01937a4f-0b2e-7d44-b1c3-7e8f9a0b1c2d",
                    "account_id": "01937a4f-0b2e-7d44-b1c3-000000000003",
                    "name": "Irvine Food Bank",
                    "kind": "charity",
                    "locality": "Irvine",
                    "registration_number": "SC012345",
                    "contact_email": None,
                    "external_ref": "ORG-7",
                    "status": "active",
                    "created_at": "2026-11-02T09:40:00Z",
                }
            ]
        },
    )
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    kind: OrganisationKind
    locality: str | None
    registration_number: str | None
    contact_email: str | None
    external_ref: str | None = None
    status: OrganisationStatus
    created_at: datetime


class OrganisationCreated(OrganisationOut):
    """A new organisation, and who already has the same or a look-alike name."""

    warnings: list[NameWarning] = Field(default_factory=list)
