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
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    delete,
    false,
    insert,
    intersect,
    select,
    union,
)
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


# Compound selects of however many parts (typed loosely: mypy 2.4 cannot infer the variadic
# overloads of ``union``/``intersect`` over a list and stops with an internal error).
_union: Any = union
_intersect: Any = intersect


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


def owners_matching(timebank_id: uuid.UUID, q: str) -> Any:
    """The ids of the members and organisations of a bank with, for each word of ``q``, a
    word of their name starting with it ("llyr", "LLYR" and "sian ll" all find "Siân Llŷr"):
    one range of the index per word, intersected. None when ``q`` has no words."""
    selects = [
        select(NameWord.owner_id).where(
            NameWord.timebank_id == timebank_id,
            NameWord.word >= w[:100],
            NameWord.word < prefix_end(w[:100]),
        )
        for w in query_words(q)
    ]
    if not selects:
        return None
    return selects[0] if len(selects) == 1 else _intersect(*selects)


def name_condition(
    owner_id: Any, timebank_id: uuid.UUID, q: str, *also: Select[Any]
) -> ColumnElement[bool]:
    """``owner_id`` (a members' or organisations' id column) is one whose name matches
    ``q`` (:func:`owners_matching`) or is among ``also`` (e.g. the one whose membership
    number ``q`` is). The database reads the index and then those rows, never the bank's
    names one by one. A search with no words and nothing else matches nobody."""
    found = owners_matching(timebank_id, q)
    if isinstance(found, CompoundSelect) and also:  # SQLite: no compound inside a compound
        found = select(found.subquery().c.owner_id)
    parts: list[Any] = ([found] if found is not None else []) + list(also)
    if not parts:
        return false()
    condition: ColumnElement[bool] = owner_id.in_(parts[0] if len(parts) == 1 else _union(*parts))
    return condition


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
