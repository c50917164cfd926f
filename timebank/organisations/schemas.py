from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from timebank.bodies import Email, JsonBody
from timebank.organisations.models import OrganisationKind, OrganisationStatus


class _In(JsonBody):
    model_config = ConfigDict(str_strip_whitespace=True)


class OrganisationCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    kind: OrganisationKind
    locality: str | None = Field(default=None, max_length=100)
    registration_number: str | None = Field(default=None, max_length=50)
    contact_email: Email | None = None


class OrganisationPatch(_In):
    """Only the fields given change; null clears a field, except name, kind and status."""

    name: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=200)
    kind: OrganisationKind | SkipJsonSchema[None] = None
    locality: str | None = Field(default=None, max_length=100)
    registration_number: str | None = Field(default=None, max_length=50)
    contact_email: Email | None = None
    status: OrganisationStatus | SkipJsonSchema[None] = None


class OrganisationOut(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    kind: OrganisationKind
    locality: str | None
    registration_number: str | None
    contact_email: str | None
    status: OrganisationStatus
    created_at: datetime

    model_config = ConfigDict(from_attributes=True)
