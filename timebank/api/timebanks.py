from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.errors import InvalidInput
from timebank.idempotency import Claim
from timebank.ledger import accounts
from timebank.ledger.schemas import AccountOut, AccountPatch
from timebank.lifecycle import register
from timebank.timebanks import service
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.schemas import (
    SETTING_FIELDS,
    CategoryCreate,
    CategoryOut,
    CategoryPatch,
    TimeBankCreate,
    TimeBankOut,
    TimeBankPatch,
    TimeBankSettings,
)
from timebank.web.idempotent import IdempotencyKeyHeader, as_json, idempotent, write
from timebank.web.pagination import LimitParam, Page, check_limit, id_cursor, page
from timebank.web.problems import problems


def timebank_view(tb: TimeBank) -> TimeBankOut:
    assert tb.pool_account_id is not None
    return TimeBankOut(
        id=tb.id,
        slug=tb.slug,
        name=tb.name,
        pool_account_id=tb.pool_account_id,
        settings=TimeBankSettings(**{f: getattr(tb, f) for f in SETTING_FIELDS}),
        created_at=tb.created_at,
    )


class TimeBankController(Controller):
    path = "/v1/timebanks"

    @post(
        "/",
        responses=problems(400, 403, 409, 413, 422, conflict=["duplicate"], keyed=True),
        summary="Create a time bank (global admin)",
        operation_id="createTimebank",
        tags=["time banks"],
        description="Creates the bank, its community pool account and the default categories. Global admin keys only.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        data: TimeBankCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[TimeBankOut]:
        settings = data.settings.model_dump(exclude_unset=True) if data.settings else {}

        async def use_case(claim: Claim) -> TimeBank:
            return await register.create_timebank(
                db_session, principal, data.slug, data.name, settings, claim
            )

        return await idempotent(
            request, db_session, principal, use_case, render=lambda tb: as_json(timebank_view(tb))
        )

    @get(
        "/",
        responses=problems(403, 422),
        summary="Time banks in the key's scope",
        operation_id="listTimebanks",
        tags=["time banks"],
        description="The time banks this key may see, in slug order, paged.",
    )
    async def list_(
        self,
        db_session: AsyncSession,
        principal: Principal,
        limit: int | None = LimitParam,
        cursor: str | None = None,
    ) -> Page[TimeBankOut]:
        n = check_limit(limit)
        rows = await service.list_timebanks(db_session, principal, id_cursor(cursor), n)
        items, nxt = page(rows, n, lambda t: t.id)
        return Page(items=[timebank_view(t) for t in items], next_cursor=nxt)

    @get(
        "/{tb:str}",
        responses=problems(403, 404),
        operation_id="getTimebank",
        tags=["time banks"],
        summary="A time bank and its settings",
        description="Any key scoped to the bank.",
    )
    async def get_one(self, db_session: AsyncSession, principal: Principal, tb: str) -> TimeBankOut:
        return timebank_view(await service.get_by_slug(db_session, principal, tb))

    @patch(
        "/{tb:str}",
        responses=problems(400, 403, 404, 413, 422),
        summary="Rename a time bank or change its settings (admin)",
        operation_id="updateTimebank",
        tags=["time banks"],
        description="Only the fields given change. Admin keys of the bank, or a global admin.",
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: TimeBankPatch,
    ) -> TimeBankOut:
        changes: dict[str, Any] = {}
        if "name" in data.model_fields_set:
            changes["name"] = data.name
        if data.settings is not None:
            changes["settings"] = data.settings.model_dump(exclude_unset=True)
            for key in (
                "max_exchange_minutes",
                "starting_grant_minutes",
                "time_zone",
                "suppression_threshold",
                "pending_expiry_days",
            ):
                if key in changes["settings"] and changes["settings"][key] is None:
                    raise InvalidInput(f"settings.{key}", "cannot be null")

        async def use_case() -> TimeBankOut:
            bank = await service.get_by_slug(db_session, principal, tb)
            return timebank_view(
                await service.update_timebank(db_session, principal, bank, changes)
            )

        return await write(request, db_session, use_case)

    @get(
        "/{tb:str}/categories",
        responses=problems(403, 404, 422),
        tags=["categories"],
        operation_id="listCategories",
        summary="The bank's categories",
        description="Every key scoped to the bank; paged.",
    )
    async def categories(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        limit: int | None = LimitParam,
        cursor: str | None = None,
    ) -> Page[CategoryOut]:
        bank = await service.get_by_slug(db_session, principal, tb)
        n = check_limit(limit)
        rows = await service.list_categories(db_session, bank, id_cursor(cursor), n)
        items, nxt = page(rows, n, lambda c: c.id)
        return Page(items=[CategoryOut.of(c) for c in items], next_cursor=nxt)

    @get(
        "/{tb:str}/categories/{slug:str}",
        responses=problems(403, 404),
        tags=["categories"],
        operation_id="getCategory",
        summary="One category",
        description="Every key scoped to the bank.",
    )
    async def category(
        self, db_session: AsyncSession, principal: Principal, tb: str, slug: str
    ) -> CategoryOut:
        bank = await service.get_by_slug(db_session, principal, tb)
        found = await service.get_category(db_session, bank, slug)
        return CategoryOut.of(found)

    @post(
        "/{tb:str}/categories",
        responses=problems(400, 403, 404, 409, 413, 422, conflict=["duplicate"], keyed=True),
        tags=["categories"],
        summary="Add a category (broker)",
        operation_id="createCategory",
        description="A new category slug and name for exchanges. Brokers and admins.",
    )
    async def add_category(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: CategoryCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[CategoryOut]:
        async def use_case(claim: Claim) -> Category:
            bank = await service.get_by_slug(db_session, principal, tb)
            return await service.create_category(
                db_session, principal, bank, data.slug, data.name, claim, name_cy=data.name_cy
            )

        return await idempotent(
            request,
            db_session,
            principal,
            use_case,
            render=lambda cat: as_json(CategoryOut.of(cat)),
        )

    @patch(
        "/{tb:str}/categories/{slug:str}",
        responses=problems(400, 403, 404, 413, 422),
        tags=["categories"],
        summary="Rename or retire a category (broker, audited)",
        operation_id="updateCategory",
        description=(
            "Renames a category (`name`, `name_cy`: its Welsh name; `null` removes it) or "
            "retires it (`retired: true`) — a retired category stays on the exchanges that "
            "used it and in reports, and is refused for new exchanges (422 on `category`); "
            "`retired: false` brings it back. Brokers and admins. Audited."
        ),
    )
    async def patch_category(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        slug: str,
        data: CategoryPatch,
    ) -> CategoryOut:
        async def use_case() -> CategoryOut:
            bank = await service.get_by_slug(db_session, principal, tb)
            changes = data.model_dump(include=data.model_fields_set)
            if changes.get("name") is None:
                changes.pop("name", None)
            if changes.get("retired") is None:
                changes.pop("retired", None)
            return CategoryOut.of(
                await service.update_category(db_session, principal, bank, slug, changes)
            )

        return await write(request, db_session, use_case)

    @get(
        "/{tb:str}/accounts/{account_id:uuid}",
        responses=problems(403, 404),
        tags=["accounts"],
        operation_id="getAccount",
        summary="An account: owner, balance and limits",
        description="Staff keys, or a member key for its own account.",
    )
    async def account(
        self, db_session: AsyncSession, principal: Principal, tb: str, account_id: uuid.UUID
    ) -> AccountOut:
        bank = await service.get_by_slug(db_session, principal, tb)
        principal.require(bank.id, *STAFF)
        return accounts.account_view(await accounts.get_account(db_session, bank, account_id), bank)

    @patch(
        "/{tb:str}/accounts/{account_id:uuid}",
        responses=problems(400, 403, 404, 413, 422),
        tags=["accounts"],
        summary="Set an account's own limits (broker, audited)",
        operation_id="updateAccount",
        description="Sets the account's own lower and upper limits (null = unbounded), or `use_defaults: true` to follow the bank's defaults again. Audited.",
    )
    async def patch_account(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        account_id: uuid.UUID,
        data: AccountPatch,
    ) -> AccountOut:
        async def use_case() -> AccountOut:
            bank = await service.get_by_slug(db_session, principal, tb)
            acc = await accounts.patch_account(
                db_session, principal, bank, account_id, data, set(data.model_fields_set)
            )
            return accounts.account_view(acc, bank)

        return await write(request, db_session, use_case)
