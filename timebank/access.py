"""Who is calling: the role and scope of an API key or of a console user's session (SPEC §7.2:
the same ``Principal`` either way, so the services need not know which), and the checks every
use case makes. The base of access control: every domain imports it, it imports
only the domain errors."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from timebank.errors import Forbidden, NotFound


class Role(enum.StrEnum):
    admin = "admin"
    broker = "broker"
    member = "member"
    funder = "funder"


@dataclass(frozen=True)
class Principal:
    key_id: uuid.UUID | None
    role: Role
    timebank_id: uuid.UUID | None = None  # None for a global admin
    member_id: uuid.UUID | None = None  # member keys: the member the partner app acts for
    report_timebanks: frozenset[uuid.UUID] = frozenset()  # funder keys spanning several banks
    user_id: uuid.UUID | None = None  # a console user's session (then key_id is None)

    @property
    def scope_id(self) -> uuid.UUID | None:
        """Whose Idempotency-Keys these are: the key's or the console user's (SPEC §7.2)."""
        return self.key_id or self.user_id

    @property
    def is_global_admin(self) -> bool:
        return self.role is Role.admin and self.timebank_id is None

    def can_access(self, timebank_id: uuid.UUID) -> bool:
        return (
            self.is_global_admin
            or self.timebank_id == timebank_id
            or timebank_id in self.report_timebanks
        )

    def require(self, timebank_id: uuid.UUID | None, *roles: Role) -> None:
        """Refuse unless the key is scoped to ``timebank_id`` and has one of ``roles``. A bank
        outside the key's scope is ``not_found``, as an unknown one is (SPEC §7.1), so a key
        cannot list the banks that exist."""
        if timebank_id is not None and not self.can_access(timebank_id):
            raise NotFound("No such time bank")
        if self.role not in roles:
            raise Forbidden(f"A {self.role.value} key cannot do this")

    def require_global_admin(self) -> None:
        if not self.is_global_admin:
            raise Forbidden("Only a global admin key can do this")


SYSTEM = Principal(key_id=None, role=Role.admin)
STAFF = (Role.admin, Role.broker)


def require_self_or_staff(
    principal: Principal, timebank_id: uuid.UUID, member_id: uuid.UUID
) -> None:
    """Staff may read any member; a member key only its own member."""
    if principal.role is Role.member:
        principal.require(timebank_id, Role.member)
        if principal.member_id != member_id:
            raise Forbidden("A member key may read only its own member")
        return
    principal.require(timebank_id, *STAFF)
