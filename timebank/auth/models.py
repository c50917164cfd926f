from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from timebank.access import Role
from timebank.db import Base, BigInt, utcnow, uuid7
from timebank.types import DateTimeUTC, str_enum


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored; ``prefix`` lets people tell
    keys apart in lists without revealing them."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    timebank_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("timebanks.id"), default=None, index=True
    )
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), default=None)
    label: Mapped[str | None] = mapped_column(String(200), default=None)
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)


class ApiKeyTimeBank(Base):
    """The time banks a funder key may report on (a funder key may span several)."""

    __tablename__ = "api_key_timebanks"

    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)


class ConsoleUser(Base):
    """A person who signs in to the console (SPEC §3.9) with an email and a password. Only
    an argon2id hash of the password is stored. A user holds one role (§4) in the time banks
    of ``ConsoleUserTimeBank``; an admin with none is a global admin."""

    __tablename__ = "console_users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    # the console language they chose with the switch ("en", "cy"); None: not chosen
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    # set when an admin gave them a one-time password: the console asks for their own first
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())


class ConsoleUserTimeBank(Base):
    """The time banks a console user works in (one or several)."""

    __tablename__ = "console_user_timebanks"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("console_users.id"), primary_key=True)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so
    a copy of the database signs no one in. Revoked at once by setting ``revoked_at``; the
    idle and absolute timeouts are checked on every request; ``last_seen_at`` is written at
    most once a minute (SPEC §7.5). ``csrf_token`` is the session-bound token every form
    carries."""

    __tablename__ = "console_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("console_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    address: Mapped[str | None] = mapped_column(String(64), default=None)


class SignInFailure(Base):
    """A refused sign-in, counted to throttle guessing per account and per address (in the
    database, so every worker sees the same count)."""

    __tablename__ = "console_sign_in_failures"
    __table_args__ = (Index(None, "email", "at"), Index(None, "address", "at"))

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTimeUTC)
