"""Report rollups, maintained by the database in the transaction that records an exchange.

Both are sums over *service exchanges* (recorded, p2p/p2o/o2p/o2o) that are not reversed,
by the month the exchange occurred in: a trigger adds an exchange when it is recorded
(inserted as recorded, or a proposal confirmed) and takes it away again when its reversal
is recorded (see the migration ``0002``). They hold nothing a report could not compute from
the postings — a test checks exactly that — they only make it cheap: a month holds one row
per account that traded in it instead of one per leg.

Rows are keyed by account, so a write only touches rows of the accounts it has already
locked: the rollups add no lock contention to the ledger. Minutes are 32-bit: an account's
month holds far less than 2³¹ minutes, and integer sums stay cheap (PostgreSQL sums bigints
as numerics).
"""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import Date, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base
from timebank.ledger.models import ExchangeKind, OwnerType
from timebank.types import str_enum


class ActivityMonth(Base):
    """One account's service exchanges in one month: how many it took part in, how many it
    *leads* (an exchange is led by the account of its first credited posting, so summing
    ``led`` counts each exchange once), minutes given (credited) and received (debited)."""

    __tablename__ = "activity_months"

    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)  # the 1st
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    owner_type: Mapped[OwnerType] = mapped_column(str_enum(OwnerType, "owner_type"))
    exchanges: Mapped[int] = mapped_column(Integer)
    led: Mapped[int] = mapped_column(Integer)
    given_minutes: Mapped[int] = mapped_column(Integer)
    received_minutes: Mapped[int] = mapped_column(Integer)


class CategoryMonth(Base):
    """As :class:`ActivityMonth`, by category and kind."""

    __tablename__ = "category_months"

    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    category_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("categories.id"), primary_key=True)
    kind: Mapped[ExchangeKind] = mapped_column(
        str_enum(ExchangeKind, "exchange_kind"), primary_key=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    owner_type: Mapped[OwnerType] = mapped_column(str_enum(OwnerType, "owner_type"))
    exchanges: Mapped[int] = mapped_column(Integer)
    led: Mapped[int] = mapped_column(Integer)
    given_minutes: Mapped[int] = mapped_column(Integer)
    received_minutes: Mapped[int] = mapped_column(Integer)
