"""Who a sheet's provider or recipient cell names (SPEC §3.10, §7.7): a member's or an
organisation's ``external_ref`` (membership number), an email unique in the bank, a display
name unique in the bank once folded (case, accents, spacing and Unicode form ignored:
docs/names.md), or "Pool" for the community pool. Anything else is refused with the
candidates a broker can choose from — the closest names, by the same suggester as the
console's record form (:func:`timebank.names.suggest`)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.members.models import Member, MemberStatus
from timebank.names import fold, suggest
from timebank.organisations.models import Organisation
from timebank.timebanks.models import TimeBank

POOL_NAMES = {"pool", "the pool", "community pool", "time bank", "timebank"}


@dataclass(frozen=True)
class Party:
    type: str  # member, organisation, pool
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    hint: str | None = None  # what tells two of the same name apart: a reference or email

    def ref(self) -> dict[str, str]:
        key = {"member": "member_id", "organisation": "organisation_id", "pool": "account_id"}
        return {key[self.type]: str(self.id)}

    def view(self) -> dict[str, str | None]:
        return {"type": self.type, "id": str(self.id), "name": self.name, "hint": self.hint}


class Unresolved(ValueError):
    """A cell that names nobody, or several; ``code``: unknown_party or ambiguous_party."""

    def __init__(self, code: str, message: str, candidates: list[Party]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.candidates = candidates


@dataclass
class Directory:
    """Every member and organisation of a bank, indexed as sheets name them (one query
    each, however many lines)."""

    pool: Party
    by_ref: dict[str, list[Party]]
    by_email: dict[str, list[Party]]
    by_name: dict[str, list[Party]]
    by_party: dict[uuid.UUID, Party]  # every party (the pool by its account id)

    @classmethod
    async def load(cls, session: AsyncSession, tb: TimeBank) -> Directory:
        by_ref: dict[str, list[Party]] = defaultdict(list)
        by_email: dict[str, list[Party]] = defaultdict(list)
        by_name: dict[str, list[Party]] = defaultdict(list)
        members = await session.execute(
            select(
                Member.id,
                Member.account_id,
                Member.display_name,
                Member.name_folded,
                Member.email,
                Member.external_ref,
            ).where(Member.timebank_id == tb.id, Member.status != MemberStatus.erased)
        )
        for id_, account_id, name, folded, email, ref in members.tuples():
            party = Party("member", id_, account_id, name, ref or email)
            by_name[folded].append(party)
            if ref:
                by_ref[fold(ref)].append(party)
            if email:
                by_email[fold(email)].append(party)
        orgs = await session.execute(
            select(
                Organisation.id,
                Organisation.account_id,
                Organisation.name,
                Organisation.name_folded,
                Organisation.external_ref,
            ).where(Organisation.timebank_id == tb.id)
        )
        for id_, account_id, name, folded, ref in orgs.tuples():
            party = Party("organisation", id_, account_id, name, ref)
            by_name[folded].append(party)
            if ref:
                by_ref[fold(ref)].append(party)
        assert tb.pool_account_id is not None  # every bank has its pool
        pool = Party("pool", tb.pool_account_id, tb.pool_account_id, "Pool")
        everyone = {p.id: p for ps in by_name.values() for p in ps} | {pool.id: pool}
        return cls(pool, dict(by_ref), dict(by_email), dict(by_name), everyone)

    def by_id(self, party_id: uuid.UUID) -> Party | None:
        return self.by_party.get(party_id)

    def resolve(self, cell: str) -> Party:
        """The one party ``cell`` names, or :class:`Unresolved` with the candidates."""
        text = fold(cell)
        if not text:
            raise Unresolved("unknown_party", "no name given", [])
        if text in POOL_NAMES:
            return self.pool
        for index, what in ((self.by_ref, "reference"), (self.by_email, "email")):
            found = index.get(text, [])
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise Unresolved(
                    "ambiguous_party", f"'{cell}' is the {what} of {len(found)} parties", found
                )
        found = self.by_name.get(text, [])
        if len(found) == 1:
            return found[0]
        if found:
            raise Unresolved(
                "ambiguous_party",
                f"{len(found)} parties are called '{cell}': use a membership number or email",
                found,
            )
        close = suggest(text, self.by_name, n=3)
        candidates = [p for name in close for p in self.by_name[name]]
        names = list(dict.fromkeys(p.name for p in candidates))
        said = f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""
        raise Unresolved(
            "unknown_party", f"nobody in this time bank is called '{cell}'{said}", candidates
        )
