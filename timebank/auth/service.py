"""API keys: long random secrets with a recognisable prefix, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.audit import service as audit
from timebank.auth.models import ApiKey, ApiKeyTimeBank
from timebank.db import begin_write, end_read, utcnow, uuid7
from timebank.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from timebank.idempotency import Claim
from timebank.members.models import Member, MemberStatus
from timebank.timebanks.models import TimeBank

SECRET_PREFIX = "tbk_"  # noqa: S105 - a prefix, not a secret
LAST_USED_LAG = timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass
class CreatedKey:
    key: ApiKey
    secret: str


async def create_key(
    session: AsyncSession,
    principal: Principal,
    *,
    role: Role,
    timebank_id: uuid.UUID | None,
    member_id: uuid.UUID | None = None,
    label: str | None = None,
    expires_at: datetime | None = None,
    report_timebanks: list[uuid.UUID] | None = None,
) -> CreatedKey:
    """Create a key (caller commits). Brokers may create member keys only. A key with no
    time bank is a global admin key, or a funder key over ``report_timebanks``; only a
    global admin creates those."""
    if principal.role is Role.broker and role is not Role.member:
        raise Forbidden("Brokers may create member keys only")
    if principal.role not in (Role.admin, Role.broker):
        raise Forbidden("This key cannot create keys")
    if timebank_id is None:
        principal.require_global_admin()
        if role is Role.funder:
            if not report_timebanks:
                raise InvalidInput("timebanks", "a funder key needs at least one time bank")
        elif role is not Role.admin:
            raise InvalidInput("role", "a key without a time bank is an admin or funder key")
        elif report_timebanks:
            raise InvalidInput("timebanks", "only funder keys span time banks")
    else:
        principal.require(timebank_id, Role.admin, Role.broker)
    if role is Role.member:
        if member_id is None:
            raise InvalidInput("member_id", "required for a member key")
        member = await session.get(Member, member_id)
        if member is None or member.timebank_id != timebank_id:
            raise InvalidInput("member_id", "no such member in this time bank")
        if member.status is MemberStatus.erased:
            raise InvalidInput("member_id", "this member was erased")
    elif member_id is not None:
        raise InvalidInput("member_id", "only a member key is bound to a member")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at", "must be in the future")
    secret = new_secret()
    key = ApiKey(
        id=uuid7(),
        secret_hash=hash_secret(secret),
        prefix=secret[:12],
        role=role,
        timebank_id=timebank_id,
        member_id=member_id,
        label=label,
        created_by_key_id=principal.key_id,
        expires_at=expires_at,
        created_at=utcnow(),
    )
    session.add(key)
    await session.flush()
    for tb_id in dict.fromkeys(report_timebanks or []):
        session.add(ApiKeyTimeBank(api_key_id=key.id, timebank_id=tb_id))
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "api_key.create",
            timebank_id=timebank_id,
            target_type="api_key",
            target_id=key.id,
            details={"role": role.value},
        ),
    )
    return CreatedKey(key, secret)


def bearer_secret(authorization: str | None) -> str | None:
    """The API key's secret from an ``Authorization: Bearer`` header, if it can be one."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    secret = authorization[7:].strip()
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    return secret


async def authenticate(session: AsyncSession, authorization: str | None) -> Principal:
    """Resolve a Bearer secret to a principal; 401 for anything missing, unknown, revoked or
    expired. Revocation is read from the database on every request, so it is immediate in
    every worker."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("Send Authorization: Bearer <api key>")
    secret = bearer_secret(authorization)
    if secret is None:
        raise Unauthorized("Unknown API key")
    digest = hash_secret(secret)
    key = (
        await session.execute(select(ApiKey).where(ApiKey.secret_hash == digest))
    ).scalar_one_or_none()
    now = utcnow()
    key = check_key(key, digest, now)
    scopes: frozenset[uuid.UUID] = frozenset()
    if key.role is Role.funder:
        scopes = frozenset(
            (
                await session.execute(
                    select(ApiKeyTimeBank.timebank_id).where(ApiKeyTimeBank.api_key_id == key.id)
                )
            ).scalars()
        )
    principal = principal_of(key, scopes)
    stale = due_for_touch(key, now)  # before end_read, which expires the key's attributes
    await end_read(session)
    if stale:
        await _touch(session, principal.key_id, now)
    return principal


def check_key(key: ApiKey | None, digest: str, now: datetime) -> ApiKey:
    """The key a secret's digest found, if it may be used now; 401 if unknown, revoked or
    expired (the rules of a key, once: every path that authenticates asks here)."""
    if key is None or not hmac.compare_digest(key.secret_hash, digest):
        raise Unauthorized("Unknown API key")
    if key.revoked_at is not None:
        raise Unauthorized("This API key was revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("This API key has expired")
    return key


def principal_of(key: ApiKey, report_timebanks: frozenset[uuid.UUID] = frozenset()) -> Principal:
    return Principal(
        key_id=key.id,
        role=key.role,
        timebank_id=key.timebank_id,
        member_id=key.member_id,
        report_timebanks=report_timebanks,
    )


def due_for_touch(key: ApiKey, now: datetime) -> bool:
    """Whether the key's ``last_used_at`` is due (written at most once a minute)."""
    return key.last_used_at is None or now - key.last_used_at > LAST_USED_LAG


async def _touch(session: AsyncSession, key_id: uuid.UUID | None, now: datetime) -> None:
    """Best effort: ``last_used_at`` may lag, so a busy database never fails a request."""
    try:
        await begin_write(session)
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        await session.commit()
    except DBAPIError:
        await session.rollback()


async def issue_key(
    session: AsyncSession, principal: Principal, claim: Claim | None = None, **kwargs: Any
) -> CreatedKey:
    """The use case behind ``POST …/api-keys``: :func:`create_key`, settled and committed."""
    created = await create_key(session, principal, **kwargs)
    if claim is not None:
        await claim.settle(session, created)
    await session.commit()
    return created


async def revoke_key(
    session: AsyncSession, principal: Principal, key_id: uuid.UUID, timebank_id: uuid.UUID | None
) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or (timebank_id is not None and key.timebank_id != timebank_id):
        raise NotFound("No such API key")
    if principal.role is Role.broker and key.role is not Role.member:
        raise Forbidden("Brokers may revoke member keys only")
    if key.timebank_id is None:
        principal.require_global_admin()
    else:
        principal.require(key.timebank_id, Role.admin, Role.broker)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await audit.record(
            session,
            audit.event(
                principal,
                "api_key.revoke",
                timebank_id=key.timebank_id,
                target_type="api_key",
                target_id=key.id,
            ),
        )
    await session.commit()
    return key


async def list_keys(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    after: uuid.UUID | None,
    limit: int,
) -> list[ApiKey]:
    principal.require(timebank_id, Role.admin, Role.broker)
    stmt = select(ApiKey).where(ApiKey.timebank_id == timebank_id)
    if principal.role is Role.broker:
        stmt = stmt.where(ApiKey.role == Role.member)
    if after is not None:
        stmt = stmt.where(ApiKey.id > after)
    return list((await session.execute(stmt.order_by(ApiKey.id).limit(limit + 1))).scalars())


async def timebanks_by_slug(session: AsyncSession, slugs: list[str]) -> dict[str, uuid.UUID]:
    """slug → id for the given slugs, in order; 422 naming the first unknown one."""
    if not slugs:
        return {}
    found = dict(
        (await session.execute(select(TimeBank.slug, TimeBank.id).where(TimeBank.slug.in_(slugs))))
        .tuples()
        .all()
    )
    for slug in slugs:
        if slug not in found:
            raise InvalidInput("timebanks", f"no time bank '{slug}'")
    return {slug: found[slug] for slug in slugs}
