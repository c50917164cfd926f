from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
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
from timebank.members import search
from timebank.organisations import service
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.organisations.schemas import (
    OrganisationCreate,
    OrganisationCreated,
    OrganisationOut,
    OrganisationPatch,
)
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import get_by_slug
from timebank.web.idempotent import IdempotencyKeyHeader, idempotent, view_as, write
from timebank.web.openapi import FILE
from timebank.web.pagination import LimitParam, Page, check_limit, id_cursor, page
from timebank.web.problems import problems


class OrganisationController(Controller):
    path = "/v1/timebanks/{tb:str}/organisations"
    tags = ["organisations"]

    @post(
        "/",
        responses=problems(400, 403, 404, 413, 422, keyed=True),
        summary="Register an organisation",
        operation_id="createOrganisation",
        description="Organisations are parties like members (charities, groups, NHS teams); names are shown in reports. A name like a current one's is registered with `warnings` naming them. Brokers and admins.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: OrganisationCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[OrganisationCreated]:
        warnings: list[dict[str, Any]] = []

        async def use_case(claim: Claim) -> Organisation:
            bank = await get_by_slug(db_session, principal, tb)
            principal.require(bank.id, *STAFF)
            similar = await search.lookalikes(db_session, bank, data.name)
            warnings.extend(search.warnings_for(similar))
            return await register.create_organisation(db_session, principal, bank, data, claim)

        def render(org: Organisation) -> Any:
            return {**view_as(OrganisationOut)(org), "warnings": warnings}

        return await idempotent(request, db_session, principal, use_case, render=render)

    @get(
        "/",
        responses=problems(403, 404, 422),
        operation_id="listOrganisations",
        summary="Organisations of the bank",
        description="Filter by `status`. `q`: each of its words starts a word of the name, "
        "ignoring case, accents and spacing, or `q` is the organisation's `external_ref`. "
        "Paged. Staff keys.",
    )
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

    @get(
        "/{organisation_id:uuid}",
        responses=problems(403, 404),
        operation_id="getOrganisation",
        summary="An organisation's record",
        description="Staff keys.",
    )
    async def get_one(
        self, db_session: AsyncSession, principal: Principal, tb: str, organisation_id: uuid.UUID
    ) -> OrganisationOut:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        org = await service.get_organisation(db_session, bank, organisation_id)
        return OrganisationOut.model_validate(org)

    @patch(
        "/{organisation_id:uuid}",
        responses=problems(400, 403, 404, 409, 413, 422, conflict=["duplicate"]),
        operation_id="updateOrganisation",
        summary="Edit an organisation or change its status",
        description="Only the fields given change; `null` clears a field that may be empty.",
    )
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

    @get(
        "/{organisation_id:uuid}/balance",
        responses=problems(403, 404),
        operation_id="getOrganisationBalance",
        summary="An organisation's balance, limits and pending minutes",
        description="Staff keys.",
    )
    async def balance(
        self, db_session: AsyncSession, principal: Principal, tb: str, organisation_id: uuid.UUID
    ) -> BalanceOut:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        return await reads.balance(db_session, bank, OwnerType.organisation, organisation_id)

    async def _statement_of(
        self, db_session: AsyncSession, principal: Principal, tb: str, organisation_id: uuid.UUID
    ) -> tuple[TimeBank, Organisation]:
        bank = await get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        return bank, await service.get_organisation(db_session, bank, organisation_id)

    @get(
        "/{organisation_id:uuid}/statement",
        responses=problems(403, 404, 422),
        operation_id="getOrganisationStatement",
        summary="An organisation's statement (JSON, paged)",
        description="Entries in value-date order (`occurred_on`, then recording order), "
        "each with the running balance after it in that order; `from`/`to` (inclusive) filter "
        "on occurred_on: `opening_balance_minutes` counts every entry dated before `from`, "
        "`closing_balance_minutes` = opening + the lines = every entry dated on or before `to` "
        "(no period: the current balance). A reversal line says what it reverses and why. "
        "The cursor keeps its place in this order. The same as CSV: `getOrganisationStatementCsv`.",
    )
    async def statement(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        organisation_id: uuid.UUID,
        date_from: date | None = FromParam,
        date_to: date | None = ToParam,
        limit: int | None = LimitParam,
        cursor: str | None = None,
        fmt: str | None = FormatParam,
    ) -> Response[StatementOut]:
        bank, party = await self._statement_of(db_session, principal, tb, organisation_id)
        if wants_csv(request, fmt):  # curl users; the document's CSV is its own operation
            return await statement_csv(  # type: ignore[return-value]
                db_session,
                bank,
                party.account_id,
                name=party.name,
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
        "/{organisation_id:uuid}/statement.csv",
        responses=problems(403, 404, 422),
        media_type=CSV,
        opt={FILE: CSV},
        operation_id="getOrganisationStatementCsv",
        summary="An organisation's statement as CSV (the whole period)",
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
        organisation_id: uuid.UUID,
        date_from: date | None = FromParam,
        date_to: date | None = ToParam,
    ) -> Response[bytes]:
        bank, party = await self._statement_of(db_session, principal, tb, organisation_id)
        return await statement_csv(
            db_session,
            bank,
            party.account_id,
            name=party.name,
            date_from=date_from,
            date_to=date_to,
        )

    @get(
        "/{organisation_id:uuid}/statement.xlsx",
        responses=problems(403, 404, 422),
        media_type=XLSX,
        opt={FILE: XLSX},
        operation_id="getOrganisationStatementXlsx",
        summary="An organisation's statement as XLSX (the whole period)",
        description="The CSV's rows in a workbook, figures as numbers "
        "(`statement-sian-llyr-2026-11.xlsx`).",
    )
    async def statement_xlsx(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        organisation_id: uuid.UUID,
        date_from: date | None = FromParam,
        date_to: date | None = ToParam,
    ) -> Response[bytes]:
        bank, party = await self._statement_of(db_session, principal, tb, organisation_id)
        return await statement_xlsx(
            db_session,
            bank,
            party.account_id,
            name=party.name,
            date_from=date_from,
            date_to=date_to,
        )
