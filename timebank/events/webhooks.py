"""Webhook endpoints (admins): where a bank's events are sent, signed as Standard Webhooks.

An endpoint's URL must not lead into the service's own network: a host that resolves to a
loopback, private, link-local or otherwise non-public address is refused (when it is
registered and again before each delivery) unless ``TIMEBANK_WEBHOOKS_ALLOW_PRIVATE=true``
(tests, intranets). The secret (``whsec_`` + 32 random bytes, base64) is shown once, when
the endpoint is made; it must be kept in clear to sign with.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.audit import service as audit
from timebank.db import utcnow, uuid7
from timebank.errors import InvalidInput, NotFound
from timebank.events.feed import _position
from timebank.events.models import (
    DeliveryStatus,
    Event,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
)
from timebank.idempotency import Claim

MAX_ENDPOINTS = 20  # per bank


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse (422 on ``url``) anything but an http(s) URL whose host resolves only to public
    addresses (any address, with ``allow_private``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url", "must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise InvalidInput("url", "must not carry a user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput("url", "has a port that is not a number from 1 to 65535") from exc
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise InvalidInput("url", f"its host '{parts.hostname}' cannot be resolved") from exc
    addresses = {str(info[4][0]) for info in found}
    if not allow_private and not all(is_public(a) for a in addresses):
        raise InvalidInput(
            "url",
            f"its host '{parts.hostname}' resolves to a loopback, private or link-local "
            "address: webhooks go to public addresses only (an operator may allow private "
            "ones with TIMEBANK_WEBHOOKS_ALLOW_PRIVATE=true)",
        )


def check_types(types: Sequence[str] | None) -> list[str] | None:
    if types is None:
        return None
    known = {t.value for t in EventType}
    unknown = sorted(set(types) - known)
    if unknown:
        raise InvalidInput(
            "events", f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    if not types:
        raise InvalidInput("events", "name at least one event type, or leave it out for all")
    return sorted(set(types))


async def create_endpoint(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    url: str,
    types: Sequence[str] | None,
    *,
    allow_private: bool,
    claim: Claim | None = None,
) -> WebhookEndpoint:
    """A new endpoint, sent every event from now on (of ``types``, or all). Commits."""
    principal.require(timebank_id, Role.admin)
    wanted = check_types(types)
    await check_url(url, allow_private=allow_private)
    count = len(await list_endpoints(session, principal, timebank_id))
    if count >= MAX_ENDPOINTS:
        raise InvalidInput("url", f"a time bank may have at most {MAX_ENDPOINTS} endpoints")
    horizon, _ = await _position(session, timebank_id)
    endpoint = WebhookEndpoint(
        id=uuid7(),
        timebank_id=timebank_id,
        url=url,
        events=wanted,
        secret=new_secret(),
        last_seq=horizon,
        created_at=utcnow(),
        created_by_key_id=principal.key_id,
        created_by_user_id=principal.user_id,
    )
    session.add(endpoint)
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "webhook.create",
            timebank_id=timebank_id,
            target_type="webhook",
            target_id=endpoint.id,
            details={"events": wanted},
        ),
    )
    if claim is not None:
        await claim.settle(session, endpoint)
    await session.commit()
    return endpoint


async def list_endpoints(
    session: AsyncSession, principal: Principal, timebank_id: uuid.UUID
) -> list[WebhookEndpoint]:
    principal.require(timebank_id, Role.admin)
    rows = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.timebank_id == timebank_id)
        .order_by(WebhookEndpoint.id)
    )
    return list(rows.scalars())


async def get_endpoint(
    session: AsyncSession, principal: Principal, timebank_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    principal.require(timebank_id, Role.admin)
    found = await session.get(WebhookEndpoint, endpoint_id)
    if found is None or found.timebank_id != timebank_id:
        raise NotFound("No such webhook endpoint in this time bank")
    return found


async def delete_endpoint(
    session: AsyncSession, principal: Principal, timebank_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    """Remove an endpoint and its delivery log. Commits."""
    endpoint = await get_endpoint(session, principal, timebank_id, endpoint_id)
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
    await audit.record(
        session,
        audit.event(
            principal,
            "webhook.delete",
            timebank_id=timebank_id,
            target_type="webhook",
            target_id=endpoint.id,
        ),
    )
    await session.commit()


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    after: uuid.UUID | None,
    limit: int,
) -> list[tuple[WebhookDelivery, str]]:
    """An endpoint's delivery log, newest first: each delivery with its event's type."""
    endpoint = await get_endpoint(session, principal, timebank_id, endpoint_id)
    stmt = (
        select(WebhookDelivery, Event.type)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
    )
    if after is not None:
        stmt = stmt.where(WebhookDelivery.id < after)
    rows = await session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1))
    return [(d, str(t)) for d, t in rows.tuples()]


async def redeliver(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    now: datetime | None = None,
) -> tuple[WebhookDelivery, str]:
    """Send a delivery again now, and on its schedule from the start if that fails; a
    disabled endpoint is turned back on (it then also gets the events it missed, as far as
    they are kept). Commits."""
    endpoint = await get_endpoint(session, principal, timebank_id, endpoint_id)
    found = await session.get(WebhookDelivery, delivery_id)
    if found is None or found.endpoint_id != endpoint.id:
        raise NotFound("No such delivery for this endpoint")
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(status=DeliveryStatus.pending, attempts=0, next_attempt_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint.id)
        .values(disabled_at=None, failing_since=None)
        .execution_options(synchronize_session=False)
    )
    await audit.record(
        session,
        audit.event(
            principal,
            "webhook.redeliver",
            timebank_id=timebank_id,
            target_type="webhook",
            target_id=endpoint.id,
            details={"delivery_id": str(delivery_id)},
        ),
    )
    await session.commit()
    await session.refresh(found)
    await session.refresh(endpoint)
    event = await session.get(Event, found.event_id)
    return found, event.type if event else ""
