from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.auth import service
from timebank.auth.models import ApiKey
from timebank.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, GlobalApiKeyCreate
from timebank.auth.service import CreatedKey
from timebank.idempotency import Claim
from timebank.timebanks.service import get_by_slug
from timebank.web.idempotent import IdempotencyKeyHeader, as_json, idempotent, write
from timebank.web.pagination import LimitParam, Page, check_limit, id_cursor, page
from timebank.web.problems import problems


def key_view(key: ApiKey, slug: str | None) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        prefix=key.prefix,
        role=key.role,
        timebank=slug,
        member_id=key.member_id,
        label=key.label,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


class ApiKeyController(Controller):
    path = "/v1/timebanks/{tb:str}/api-keys"
    tags = ["api keys"]

    @post(
        "/",
        responses=problems(400, 403, 404, 413, 422, keyed=True),
        summary="Create an API key (admin; brokers: member keys only)",
        description="The secret is in the response once and never again.",
        operation_id="createApiKey",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: ApiKeyCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[ApiKeyCreated]:
        slug = ""

        async def use_case(claim: Claim) -> CreatedKey:
            nonlocal slug
            bank = await get_by_slug(db_session, principal, tb)
            slug = bank.slug
            return await service.issue_key(
                db_session,
                principal,
                claim,
                role=data.role,
                timebank_id=bank.id,
                member_id=data.member_id,
                label=data.label,
                expires_at=data.expires_at,
            )

        def render(created: CreatedKey) -> Any:
            view = key_view(created.key, slug)
            return as_json(ApiKeyCreated(**view.model_dump(), secret=created.secret))

        return await idempotent(
            request, db_session, principal, use_case, render=render, unstored_fields=("secret",)
        )

    @get(
        "/",
        responses=problems(403, 404, 422),
        summary="List keys (never secrets)",
        operation_id="listApiKeys",
        description="Prefix, role, label, expiry and status of every key of the bank; secrets are never shown again. Admin keys (brokers: member keys).",
    )
    async def list_(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        limit: int | None = LimitParam,
        cursor: str | None = None,
    ) -> Page[ApiKeyOut]:
        bank = await get_by_slug(db_session, principal, tb)
        n = check_limit(limit)
        rows = await service.list_keys(db_session, principal, bank.id, id_cursor(cursor), n)
        items, nxt = page(rows, n, lambda k: k.id)
        return Page(items=[key_view(k, bank.slug) for k in items], next_cursor=nxt)

    @delete(
        "/{key_id:uuid}",
        status_code=200,
        responses=problems(403, 404),
        summary="Revoke a key, at once, in every worker",
        operation_id="revokeApiKey",
        description="Refused at once by every worker; repeating it changes nothing.",
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        key_id: uuid.UUID,
    ) -> ApiKeyOut:
        async def use_case() -> ApiKeyOut:
            bank = await get_by_slug(db_session, principal, tb)
            return key_view(
                await service.revoke_key(db_session, principal, key_id, bank.id), bank.slug
            )

        return await write(request, db_session, use_case)


class GlobalApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api keys"]

    @post(
        "/",
        responses=problems(400, 403, 413, 422, keyed=True),
        summary="Create a global admin key (global admin)",
        operation_id="createGlobalApiKey",
        description="A key over every bank (admin), or a funder key over several banks. The secret is in the response once and never again.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        data: GlobalApiKeyCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[ApiKeyCreated]:
        banks: dict[str, uuid.UUID] = {}

        async def use_case(claim: Claim) -> CreatedKey:
            principal.require_global_admin()
            banks.update(await service.timebanks_by_slug(db_session, data.timebanks or []))
            return await service.issue_key(
                db_session,
                principal,
                claim,
                role=data.role,
                timebank_id=None,
                label=data.label,
                expires_at=data.expires_at,
                report_timebanks=list(banks.values()),
            )

        def render(created: CreatedKey) -> Any:
            view = key_view(created.key, None)
            view.timebanks = list(banks) or None
            return as_json(ApiKeyCreated(**view.model_dump(), secret=created.secret))

        return await idempotent(
            request, db_session, principal, use_case, render=render, unstored_fields=("secret",)
        )

    @delete(
        "/{key_id:uuid}",
        status_code=200,
        responses=problems(403, 404),
        summary="Revoke any key by id (global admin), e.g. a funder key over several banks",
        operation_id="revokeGlobalApiKey",
        description="Any key, by id; refused at once by every worker.",
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        key_id: uuid.UUID,
    ) -> ApiKeyOut:
        async def use_case() -> ApiKeyOut:
            principal.require_global_admin()
            return key_view(await service.revoke_key(db_session, principal, key_id, None), None)

        return await write(request, db_session, use_case)
