from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from timebank.organisations.models import OrganisationKind, OrganisationStatus


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrganisationCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    kind: OrganisationKind
    locality: str | None = Field(default=None, max_length=100)
    registration_number: str | None = Field(default=None, max_length=50)
    contact_email: EmailStr | None = None


class OrganisationPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: OrganisationKind | None = None
    locality: str | None = Field(default=None, max_length=100)
    registration_number: str | None = Field(default=None, max_length=50)
    contact_email: EmailStr | None = None
    status: OrganisationStatus | None = None


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
