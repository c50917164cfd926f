"""The evidence tables: the chain's entries, the Merkle tree's perfect subtrees, the signed
checkpoints, and the proposals sealed while pending. Written only by the sealer; entries,
nodes and checkpoints are append-only and entries gapless (the database refuses anything
else: migration 0015)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base, BigInt, utcnow, uuid7
from timebank.types import DateTimeUTC


class EvidenceEntry(Base):
    """Entry ``seq`` (1, 2, … without gaps) of a bank's chain: an exchange's canonical facts
    in one status (``leaf``, see :mod:`timebank.evidence.canonical`) and the chain hash
    SHA-256(previous chain hash ‖ leaf hash), the first previous being 32 zero bytes. Leaf
    ``seq`` is leaf ``seq - 1`` of the bank's Merkle tree."""

    __tablename__ = "evidence_entries"
    __table_args__ = (CheckConstraint("seq >= 1", name="seq_positive"),)

    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exchange_id: Mapped[uuid.UUID] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16))
    leaf: Mapped[str] = mapped_column(Text)
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    sealed_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)


class EvidenceNode(Base):
    """The hash of the perfect subtree of ``2**level`` leaves starting at leaf
    ``idx * 2**level`` (level 0: a leaf hash); every proof is built from these."""

    __tablename__ = "evidence_nodes"

    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class EvidenceCheckpoint(Base):
    """A signed tree head: the note as signed, and its fields for look-ups."""

    __tablename__ = "evidence_checkpoints"
    __table_args__ = (Index(None, "timebank_id", "tree_size", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"))
    tree_size: Mapped[int] = mapped_column(BigInt)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain_head: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    key_name: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text)


class EvidenceOpen(Base):
    """A proposal sealed as pending whose decision is not sealed yet (few: the sealer looks
    at each on every pass)."""

    __tablename__ = "evidence_open"

    exchange_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), index=True)
