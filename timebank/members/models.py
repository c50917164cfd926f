from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from timebank.db import Base, BigInt, record_key, utcnow, uuid7
from timebank.names import FOLDED_LENGTH, fold, skeleton
from timebank.types import DateTimeUTC, str_enum


class MemberStatus(enum.StrEnum):
    active = "active"
    suspended = "suspended"
    left = "left"
    erased = "erased"


class Gender(enum.StrEnum):
    female = "female"
    male = "male"
    non_binary = "non_binary"
    other = "other"
    prefer_not_to_say = "prefer_not_to_say"


class Disability(enum.StrEnum):
    yes = "yes"
    no = "no"
    prefer_not_to_say = "prefer_not_to_say"


class Ethnicity(enum.StrEnum):
    asian = "asian"
    black = "black"
    mixed = "mixed"
    white = "white"
    other = "other"
    prefer_not_to_say = "prefer_not_to_say"


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("timebank_id", "external_ref"),
        Index(None, "timebank_id", "id"),
        Index(None, "timebank_id", "name_folded"),
        Index(None, "timebank_id", "name_skeleton"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    # the name as compared and as it looks (timebank.names), set with every display_name
    name_folded: Mapped[str] = mapped_column(String(FOLDED_LENGTH))
    name_skeleton: Mapped[str] = mapped_column(String(FOLDED_LENGTH))
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    phone: Mapped[str | None] = mapped_column(String(50), default=None)
    locality: Mapped[str | None] = mapped_column(String(100), default=None)
    postcode: Mapped[str | None] = mapped_column(String(16), default=None)
    birth_year: Mapped[int | None] = mapped_column(Integer, default=None)
    gender: Mapped[Gender | None] = mapped_column(str_enum(Gender, "gender"), default=None)
    disability: Mapped[Disability | None] = mapped_column(
        str_enum(Disability, "disability"), default=None
    )
    ethnicity: Mapped[Ethnicity | None] = mapped_column(
        str_enum(Ethnicity, "ethnicity"), default=None
    )
    statistics_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_recorded_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    joined_on: Mapped[date] = mapped_column(Date)
    left_on: Mapped[date | None] = mapped_column(Date, default=None)
    status: Mapped[MemberStatus] = mapped_column(
        str_enum(MemberStatus, "member_status"), default=MemberStatus.active
    )
    record_key: Mapped[int] = mapped_column(BigInt, default=record_key)  # never shown
    external_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow, onupdate=utcnow)

    @validates("display_name")
    def _keep_folded(self, _: str, value: str) -> str:
        self.name_folded = fold(value)[:FOLDED_LENGTH]
        self.name_skeleton = skeleton(value)[:FOLDED_LENGTH]
        return value
