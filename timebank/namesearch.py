"""Finding people by what is typed (see docs/names.md): every word of a member's or an
organisation's folded name is a row of ``name_words``, keyed (bank, word, owner), so a
search for word prefixes is a range read of that key on both engines — never a scan of the
bank's names. The folded name itself is stored beside the name (``name_folded``) for exact
matches, and its look-alike skeleton (``name_skeleton``) for duplicate warnings.

Every write of a name goes through :func:`reindex` (registration, edits, erasure) or
:func:`word_rows` (the demo's bulk load), so the words always say what the name says."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, String, and_, delete, false, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base
from timebank.names import words

# Byte order on both engines (SQLite's BINARY, PostgreSQL's "C"), so that a prefix is one
# contiguous range of the index whatever the database's locale.
WORD = String(100).with_variant(String(100, collation="C"), "postgresql")


class NameWord(Base):
    __tablename__ = "name_words"

    timebank_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    word: Mapped[str] = mapped_column(WORD, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # a member or organisation
    owner_type: Mapped[str] = mapped_column(String(16))


def word_rows(
    timebank_id: uuid.UUID, owner_type: str, owner_id: uuid.UUID, name: str
) -> list[dict[str, Any]]:
    return [
        {
            "timebank_id": timebank_id,
            "word": w[:100],
            "owner_id": owner_id,
            "owner_type": owner_type,
        }
        for w in dict.fromkeys(w[:100] for w in words(name))
    ]


async def reindex(
    session: AsyncSession,
    timebank_id: uuid.UUID,
    owner_type: str,
    owner_id: uuid.UUID,
    name: str,
) -> None:
    """The words of ``owner_id``'s name, replaced by those of ``name``."""
    await session.execute(
        delete(NameWord).where(NameWord.timebank_id == timebank_id, NameWord.owner_id == owner_id)
    )
    rows = word_rows(timebank_id, owner_type, owner_id, name)
    if rows:
        await session.execute(insert(NameWord), rows)


def prefix_end(prefix: str) -> str:
    """The least string above every string that starts with ``prefix`` (code point order is
    UTF-8 byte order)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return prefix + "\U0010ffff"
    return prefix[:-1] + chr(last + 1)


def query_words(q: str) -> list[str]:
    """The folded words of a search, longest first (the narrowest range leads)."""
    return sorted(words(q), key=len, reverse=True)[:8]


def matching(owner_id: Any, timebank_id: uuid.UUID, q: str) -> list[ColumnElement[bool]]:
    """Conditions on ``owner_id`` (a members' or organisations' id column): each word of
    ``q`` is the start of a word of the name ("llyr", "LLYR" and "sian ll" all find "Siân
    Llŷr"). No words (``q`` blank once folded): no condition."""
    conditions: list[ColumnElement[bool]] = []
    for w in query_words(q):
        w = w[:100]
        conditions.append(
            owner_id.in_(
                select(NameWord.owner_id).where(
                    NameWord.timebank_id == timebank_id,
                    NameWord.word >= w,
                    NameWord.word < prefix_end(w),
                )
            )
        )
    return conditions


def name_condition(owner_id: Any, timebank_id: uuid.UUID, q: str) -> ColumnElement[bool]:
    """:func:`matching` as one condition; a search with no words matches nobody."""
    conditions = matching(owner_id, timebank_id, q)
    return and_(*conditions) if conditions else false()


class NameWarning(BaseModel):
    """A registration went through, but someone current has the same name once folded, or
    a look-alike one (e.g. a Cyrillic "р" for a Latin "p"): check it is not the same person
    registered twice."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "similar_name",
                    "message": "Homo Glyph (member, M-0042) has the same or a look-alike name",
                    "type": "member",
                    "id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                    "name": "Homo Glyph",
                    "external_ref": "M-0042",
                }
            ]
        }
    )
    code: str = Field(description="`similar_name`")
    message: str
    type: str = Field(description="member or organisation: who has the similar name")
    id: uuid.UUID
    name: str
    external_ref: str | None
