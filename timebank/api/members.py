from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal, Role, require_self_or_staff
from timebank.api.statements import (
    CSV,
    XLSX,
    FormatParam,
    FromParam,
    ToParam,
    statement_csv,
    statement_json,
    statement_xlsx,
    wants_csv,
)
from timebank.idempotency import Claim
from timebank.ledger import reads
from timebank.ledger.models import OwnerType
from timebank.ledger.schemas import BalanceOut, StatementOut
from timebank.lifecycle import register
from timebank.lifecycle.erase import erase_member
from timebank.members import search, service
from timebank.members.models import Member, MemberStatus
from timebank.members.schemas import (
    DirectoryEntry,
    MemberCreate,
    MemberCreated,
    MemberOut,
    MemberPatch,
)
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import get_by_slug
from timebank.web.auth import provide_principal, require_bearer
from timebank.web.idempotent import (
    IdempotencyKeyHeader,
    balance_in_one_call,
    idempotent,
    session_for,
    view_as,
    write,
)
from timebank.web.openapi import FILE
from timebank.web.pagination import LimitParam, Page, check_limit, id_cursor, page
from timebank.web.problems import problems


@get(
    "/v1/timebanks/{tb:str}/directory",
    tags=["members"],
    responses=problems(403, 404, 422),
    summary="Directory: id and display name of active members and organisations",
    description="For partner apps choosing a counterparty; no contact or demographic data. "
    "`q`: each of its words starts a word of the name, ignoring case, accents and spacing "
    "(`sian llyr` finds `Siân Llŷr`).",
    operation_id="getDirectory",
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
        operation_id="createMember",
        description="Brokers and admins. A name the same as a current member's or "
        "organisation's once folded, or looking the same, is registered with `warnings` naming "
        "them. The member gets an account with the bank's default "
        "limits (and its starting grant from the pool, if the bank gives one). Reports count "
        "demographic fields only of members with `statistics_consent: true`.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: MemberCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[MemberCreated]:
        warnings: list[dict[str, Any]] = []

        async def use_case(claim: Claim) -> Member:
            bank = await get_by_slug(db_session, principal, tb)
            principal.require(bank.id, *STAFF)
            similar = await search.lookalikes(db_session, bank, data.display_name)
            warnings.extend(search.warnings_for(similar))
            return await register.create_member(db_session, principal, bank, data, claim)

        def render(member: Member) -> Any:
            return {**view_as(MemberOut)(member), "warnings": warnings}

        return await idempotent(request, db_session, principal, use_case, render=render)

    @get(
        "/",
        responses=problems(403, 404, 422),
        operation_id="listMembers",
        summary="Members of the bank (broker, admin)",
        description="Filter by `status`. `q`: each of its words starts a word of the display "
        "name, ignoring case, accents and spacing (`llyr` finds `Siân Llŷr`), or `q` is a "
        "membership number (`external_ref`). Paged.",
    )
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

    @get(
        "/{member_id:uuid}",
        responses=problems(403, 404),
        operation_id="getMember",
        summary="A member's record",
        description="Staff keys, or a member key for itself.",
    )
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
        operation_id="eraseMember",
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
        operation_id="updateMember",
        description="Only the fields given change; `null` clears a field that may be empty. Status changes (suspended, left) are audited.",
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

    @get(
        "/{member_id:uuid}/balance",
        responses=problems(403, 404),
        operation_id="getMemberBalance",
        guards=[require_bearer],
        summary="A member's balance, limits and pending minutes",
        description="Staff keys, or a member key for itself.",
    )
    async def balance(
        self, request: Request[Any, Any, Any], tb: str, member_id: uuid.UUID
    ) -> Response[BalanceOut]:
        # a hot route: no session until the in-process path needs one
        answered = await balance_in_one_call(request, tb, member_id)
        if answered is not None:
            return answered
        async with session_for(request) as db_session:
            principal = await provide_principal(request, db_session)
            bank = await get_by_slug(db_session, principal, tb)
            require_self_or_staff(principal, bank.id, member_id)
            return Response(await reads.balance(db_session, bank, OwnerType.member, member_id))

    async def _statement_of(
        self, db_session: AsyncSession, principal: Principal, tb: str, member_id: uuid.UUID
    ) -> tuple[TimeBank, Member]:
        bank = await get_by_slug(db_session, principal, tb)
        require_self_or_staff(principal, bank.id, member_id)
        return bank, await service.get_member(db_session, bank, member_id)

    @get(
        "/{member_id:uuid}/statement",
        responses=problems(403, 404, 422),
        operation_id="getMemberStatement",
        summary="A member's statement (JSON, paged)",
        description="Entries in value-date order (`occurred_on`, then recording order), "
        "each with the running balance after it in that order; `from`/`to` (inclusive) filter "
        "on occurred_on: `opening_balance_minutes` counts every entry dated before `from`, "
        "`closing_balance_minutes` = opening + the lines = every entry dated on or before `to` "
        "(no period: the current balance). A reversal line says what it reverses and why. "
        "The cursor keeps its place in this order. The same as CSV: `getMemberStatementCsv`.",
    )
    async def statement(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        member_id: uuid.UUID,
        date_from: date | None = FromParam,
        date_to: date | None = ToParam,
        limit: int | None = LimitParam,
        cursor: str | None = None,
        fmt: str | None = FormatParam,
    ) -> Response[StatementOut]:
        bank, party = await self._statement_of(db_session, principal, tb, member_id)
        if wants_csv(request, fmt):  # curl users; the document's CSV is its own operation
            return await statement_csv(  # type: ignore[return-value]
                db_session,
                bank,
                party.account_id,
                name=party.display_name,
                date_from=date_from,
                date_to=date_to,
            )
        return Response(
            await statement_json(
                db_session,
                bank,
                party.account_id,
                date_from=date_from,
                date_to=date_to,
                limit=limit,
                cursor=cursor,
            )
        )

    @get(
        "/{member_id:uuid}/statement.csv",
        responses=problems(403, 404, 422),
        media_type=CSV,
        opt={FILE: CSV},
        operation_id="getMemberStatementCsv",
        summary="A member's statement as CSV (the whole period)",
        description="UTF-8 with a byte-order mark. Header rows (`time_bank`, `statement_of`, "
        "`period`, `order`), a blank row, then the table: one row per entry in value-date order "
        "with the running balance after it (minutes and hours), the opening balance as the "
        "first row and the closing balance as the last (`row`: opening_balance, entry, "
        "closing_balance); times in ISO 8601; `from`/`to` (inclusive) on occurred_on. No "
        "paging. The file is named for the person and the period "
        "(`statement-sian-llyr-2026-11.csv`).",
    )
    async def statement_csv(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        member_id: uuid.UUID,
        date_from: date | None = FromParam,
        date_to: date | None = ToParam,
    ) -> Response[bytes]:
        bank, party = await self._statement_of(db_session, principal, tb, member_id)
        return await statement_csv(
            db_session,
            bank,
            party.account_id,
            name=party.display_name,
            date_from=date_from,
            date_to=date_to,
        )

    @get(
        "/{member_id:uuid}/statement.xlsx",
        responses=problems(403, 404, 422),
        media_type=XLSX,
        opt={FILE: XLSX},
        operation_id="getMemberStatementXlsx",
        summary="A member's statement as XLSX (the whole period)",
        description="The CSV's rows in a workbook, figures as numbers "
        "(`statement-sian-llyr-2026-11.xlsx`).",
    )
    async def statement_xlsx(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        member_id: uuid.UUID,
        date_from: date | None = FromParam,
        date_to: date | None = ToParam,
    ) -> Response[bytes]:
        bank, party = await self._statement_of(db_session, principal, tb, member_id)
        return await statement_xlsx(
            db_session,
            bank,
            party.account_id,
            name=party.display_name,
            date_from=date_from,
            date_to=date_to,
        )
