from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.api.statements import statement_response
from timebank.idempotency import Claim
from timebank.ledger import reads
from timebank.ledger.models import OwnerType
from timebank.ledger.schemas import BalanceOut, FormatParam, StatementOut
from timebank.lifecycle import register
from timebank.organisations import service
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.organisations.schemas import OrganisationCreate, OrganisationOut, OrganisationPatch
from timebank.timebanks.service import get_by_slug
from timebank.web.idempotent import IdempotencyKeyHeader, idempotent, view_as, write
from timebank.web.openapi import ALSO_RETURNS
from timebank.web.pagination import LimitParam, Page, check_limit, id_cursor, page
from timebank.web.problems import problems


class OrganisationController(Controller):
    path = "/v1/timebanks/{tb:str}/organisations"
    tags = ["organisations"]

    @post(
        "/",
        responses=problems(400, 403, 404, 413, 422, keyed=True),
        summary="Register an organisation",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: OrganisationCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[OrganisationOut]:
        async def use_case(claim: Claim) -> Organisation:
            bank = await get_by_slug(db_session, principal, tb)
            return await register.create_organisation(db_session, principal, bank, data, claim)

        return await idempotent(
            request, db_session, principal, use_case, render=view_as(OrganisationOut)
        )

    @get("/", responses=problems(403, 404, 422))
    async def list_(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        status: OrganisationStatus | None = None,
        q: str | None = Parameter(default=None, max_length=100),
        limit: int | None = LimitParam,
        cursor: str | None = None,
    ) -> Page[OrganisationOut]:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        n = check_limit(limit)
        rows = await service.list_organisations(db_session, bank, status, q, id_cursor(cursor), n)
        items, nxt = page(rows, n, lambda o: o.id)
        return Page(items=[OrganisationOut.model_validate(o) for o in items], next_cursor=nxt)

    @get("/{organisation_id:uuid}", responses=problems(403, 404))
    async def get_one(
        self, db_session: AsyncSession, principal: Principal, tb: str, organisation_id: uuid.UUID
    ) -> OrganisationOut:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        org = await service.get_organisation(db_session, bank, organisation_id)
        return OrganisationOut.model_validate(org)

    @patch("/{organisation_id:uuid}", responses=problems(400, 403, 404, 413, 422))
    async def update(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        organisation_id: uuid.UUID,
        data: OrganisationPatch,
    ) -> OrganisationOut:
        async def use_case() -> OrganisationOut:
            bank = await get_by_slug(db_session, principal, tb)
            org = await service.update_organisation(
                db_session, principal, bank, organisation_id, data
            )
            return OrganisationOut.model_validate(org)

        return await write(request, db_session, use_case)

    @get("/{organisation_id:uuid}/balance", responses=problems(403, 404))
    async def balance(
        self, db_session: AsyncSession, principal: Principal, tb: str, organisation_id: uuid.UUID
    ) -> BalanceOut:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        return await reads.balance(db_session, bank, OwnerType.organisation, organisation_id)

    @get(
        "/{organisation_id:uuid}/statement",
        responses=problems(403, 404, 422),
        opt={ALSO_RETURNS: ["text/csv"]},
        description="As the member statement.",
    )
    async def statement(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        organisation_id: uuid.UUID,
        date_from: date | None = Parameter(query="from", default=None),
        date_to: date | None = Parameter(query="to", default=None),
        limit: int | None = LimitParam,
        cursor: str | None = None,
        fmt: FormatParam | None = Parameter(query="format", default=None),
    ) -> Response[StatementOut]:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        org = await service.get_organisation(db_session, bank, organisation_id)
        return await statement_response(
            request,
            db_session,
            bank,
            org.account_id,
            date_from=date_from,
            date_to=date_to,
            limit=limit,
            cursor=cursor,
            fmt=fmt,
            filename=f"statement-{org.id}",
        )
