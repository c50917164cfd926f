from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from timebank.access import STAFF, Principal, Role
from timebank.api.statements import statement_response
from timebank.errors import Forbidden
from timebank.idempotency import Claim
from timebank.ledger import reads
from timebank.ledger.models import OwnerType
from timebank.ledger.schemas import BalanceOut, FormatParam, StatementOut
from timebank.lifecycle import register
from timebank.lifecycle.erase import erase_member
from timebank.members import service
from timebank.members.models import Member, MemberStatus
from timebank.members.schemas import DirectoryEntry, MemberCreate, MemberOut, MemberPatch
from timebank.timebanks.service import get_by_slug
from timebank.web.auth import provide_principal
from timebank.web.idempotent import (
    IdempotencyKeyHeader,
    balance_in_one_call,
    idempotent,
    view_as,
    write,
)
from timebank.web.openapi import ALSO_RETURNS
from timebank.web.pagination import LimitParam, Page, check_limit, id_cursor, page
from timebank.web.problems import problems


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


@get(
    "/v1/timebanks/{tb:str}/directory",
    tags=["members"],
    responses=problems(403, 404, 422),
    summary="Directory: id and display name of active members and organisations",
    description="For partner apps choosing a counterparty; no contact or demographic data.",
)
async def directory(
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    q: str | None = Parameter(default=None, max_length=100),
    limit: int | None = LimitParam,
    cursor: str | None = None,
) -> Page[DirectoryEntry]:
    bank = await get_by_slug(db_session, principal, tb)
    principal.require(bank.id, Role.admin, Role.broker, Role.member)
    n = check_limit(limit)
    rows = await service.directory(db_session, bank, q, id_cursor(cursor), n)
    items, nxt = page(rows, n, lambda r: r[1])
    return Page(
        items=[DirectoryEntry(type=t, id=i, display_name=name) for t, i, name in items],
        next_cursor=nxt,
    )


class MemberController(Controller):
    path = "/v1/timebanks/{tb:str}/members"
    tags = ["members"]

    @post(
        "/",
        responses=problems(
            400,
            403,
            404,
            409,
            413,
            422,
            conflict=["duplicate", "balance_limit_exceeded"],
            keyed=True,
        ),
        summary="Register a member (broker)",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: MemberCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[MemberOut]:
        async def use_case(claim: Claim) -> Member:
            bank = await get_by_slug(db_session, principal, tb)
            return await register.create_member(db_session, principal, bank, data, claim)

        return await idempotent(request, db_session, principal, use_case, render=view_as(MemberOut))

    @get("/", responses=problems(403, 404, 422))
    async def list_(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        status: MemberStatus | None = None,
        q: str | None = Parameter(default=None, max_length=100),
        limit: int | None = LimitParam,
        cursor: str | None = None,
    ) -> Page[MemberOut]:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        n = check_limit(limit)
        rows = await service.list_members(db_session, bank, status, q, id_cursor(cursor), n)
        items, nxt = page(rows, n, lambda m: m.id)
        return Page(items=[MemberOut.model_validate(m) for m in items], next_cursor=nxt)

    @get("/{member_id:uuid}", responses=problems(403, 404))
    async def get_one(
        self, db_session: AsyncSession, principal: Principal, tb: str, member_id: uuid.UUID
    ) -> MemberOut:
        bank = await get_by_slug(db_session, principal, tb)
        require_self_or_staff(principal, bank.id, member_id)
        return MemberOut.model_validate(await service.get_member(db_session, bank, member_id))

    @post(
        "/{member_id:uuid}/erase",
        status_code=200,
        responses=problems(403, 404, 422),
        summary="Erase a member's personal data (right to erasure)",
        description="Personal and demographic fields are nulled, the display name replaced and "
        "the status set to `erased`. Postings stay; the free text of the member's exchanges "
        "is redacted; the member's keys are revoked. Repeating it changes nothing.",
    )
    async def erase(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        member_id: uuid.UUID,
    ) -> MemberOut:
        async def use_case() -> MemberOut:
            bank = await get_by_slug(db_session, principal, tb)
            return MemberOut.model_validate(
                await erase_member(db_session, principal, bank, member_id)
            )

        return await write(request, db_session, use_case)

    @patch(
        "/{member_id:uuid}",
        responses=problems(400, 403, 404, 409, 413, 422, conflict=["duplicate"]),
        summary="Edit a member or change status",
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        member_id: uuid.UUID,
        data: MemberPatch,
    ) -> MemberOut:
        async def use_case() -> MemberOut:
            bank = await get_by_slug(db_session, principal, tb)
            m = await service.update_member(db_session, principal, bank, member_id, data)
            return MemberOut.model_validate(m)

        return await write(request, db_session, use_case)

    @get("/{member_id:uuid}/balance", responses=problems(403, 404))
    async def balance(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        db_engine: AsyncEngine,
        tb: str,
        member_id: uuid.UUID,
    ) -> Response[BalanceOut]:
        if db_engine.dialect.name == "postgresql":
            answered = await balance_in_one_call(request, db_engine, tb, member_id)
            if answered is not None:
                return answered
        principal = await provide_principal(request, db_session)
        bank = await get_by_slug(db_session, principal, tb)
        require_self_or_staff(principal, bank.id, member_id)
        return Response(await reads.balance(db_session, bank, OwnerType.member, member_id))

    @get(
        "/{member_id:uuid}/statement",
        responses=problems(403, 404, 422),
        opt={ALSO_RETURNS: ["text/csv"]},
        description="Entries in ledger order; `from`/`to` (inclusive) filter on occurred_on. "
        "`Accept: text/csv` or `?format=csv` gives every entry of the period as CSV.",
    )
    async def statement(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        member_id: uuid.UUID,
        date_from: date | None = Parameter(query="from", default=None),
        date_to: date | None = Parameter(query="to", default=None),
        limit: int | None = LimitParam,
        cursor: str | None = None,
        fmt: FormatParam | None = Parameter(query="format", default=None),
    ) -> Response[StatementOut]:
        bank = await get_by_slug(db_session, principal, tb)
        require_self_or_staff(principal, bank.id, member_id)
        m = await service.get_member(db_session, bank, member_id)
        return await statement_response(
            request,
            db_session,
            bank,
            m.account_id,
            date_from=date_from,
            date_to=date_to,
            limit=limit,
            cursor=cursor,
            fmt=fmt,
            filename=f"statement-{m.id}",
        )
