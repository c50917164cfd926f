from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from timebank.db import Base, BigInt, record_key, utcnow, uuid7
from timebank.names import FOLDED_LENGTH, fold, skeleton
from timebank.types import DateTimeUTC, str_enum


class OrganisationKind(enum.StrEnum):
    charity = "charity"
    community_group = "community_group"
    social_enterprise = "social_enterprise"
    public_sector = "public_sector"
    health = "health"
    local_authority = "local_authority"
    care_provider = "care_provider"
    business = "business"
    other = "other"


class OrganisationStatus(enum.StrEnum):
    active = "active"
    suspended = "suspended"
    closed = "closed"


class Organisation(Base):
    __tablename__ = "organisations"
    __table_args__ = (
        UniqueConstraint("timebank_id", "external_ref"),
        Index(None, "timebank_id", "id"),
        Index(None, "timebank_id", "name_folded"),
        Index(None, "timebank_id", "name_skeleton"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # the name as compared and as it looks (timebank.names), set with every name
    name_folded: Mapped[str] = mapped_column(String(FOLDED_LENGTH))
    name_skeleton: Mapped[str] = mapped_column(String(FOLDED_LENGTH))
    kind: Mapped[OrganisationKind] = mapped_column(str_enum(OrganisationKind, "organisation_kind"))
    locality: Mapped[str | None] = mapped_column(String(100), default=None)
    registration_number: Mapped[str | None] = mapped_column(String(50), default=None)
    contact_email: Mapped[str | None] = mapped_column(String(254), default=None)
    # the bank's own reference (e.g. on paper time sheets), unique in the bank
    external_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[OrganisationStatus] = mapped_column(
        str_enum(OrganisationStatus, "organisation_status"), default=OrganisationStatus.active
    )
    record_key: Mapped[int] = mapped_column(BigInt, default=record_key)  # never shown
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow, onupdate=utcnow)

    @validates("name")
    def _keep_folded(self, _: str, value: str) -> str:
        self.name_folded = fold(value)[:FOLDED_LENGTH]
        self.name_skeleton = skeleton(value)[:FOLDED_LENGTH]
        return value
