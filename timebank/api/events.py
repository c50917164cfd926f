"""The event feed and webhook endpoints of a time bank (docs/events.md)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.clock import SYSTEM_CLOCK, Clock
from timebank.events import feed, webhooks
from timebank.events.models import WebhookDelivery, WebhookEndpoint
from timebank.events.schemas import (
    DeliveryOut,
    DeliveryPage,
    EventOut,
    EventPage,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
)
from timebank.idempotency import Claim
from timebank.timebanks.service import get_by_slug
from timebank.web.idempotent import IdempotencyKeyHeader, as_json, idempotent, write
from timebank.web.pagination import LimitParam, check_limit, encode_cursor, id_cursor, seq_cursor
from timebank.web.problems import problems


def clock_of(request: Request[Any, Any, Any]) -> Clock:
    """The app's clock (a test may put its own in ``app.state.events_clock``)."""
    clock: Clock = request.app.state.get("events_clock") or SYSTEM_CLOCK
    return clock


@get(
    "/v1/timebanks/{tb:str}/events",
    tags=["events"],
    responses=problems(403, 404, 410, 422),
    summary="The bank's events in order, after a cursor",
    description="Every change a partner app may care about (`exchange.*`, `member.*`), in "
    "the order committed. Start without `after`; then always send the `cursor` of the last "
    "answer as `after` — it is present on every answer, even an empty one. A member key gets "
    "the events about its own member only; a funder key none. `wait` (seconds, at most 30) "
    "holds an empty answer open until an event comes. Events are kept 90 days: a cursor "
    "older than that gets 410 `cursor_expired`.",
    operation_id="listEvents",
)
async def list_events(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    after: str | None = Parameter(default=None, description="A `cursor` this feed gave"),
    limit: int | None = LimitParam,
    wait: int | None = Parameter(
        default=None,
        ge=1,
        le=feed.MAX_WAIT_SECONDS,
        description="Seconds to wait for an event when there is none yet (1–30; leave it "
        "out to answer at once)",
    ),
) -> EventPage:
    bank = await get_by_slug(db_session, principal, tb)
    n = check_limit(limit)
    settings = request.app.state.settings
    found = await feed.wait_for(
        db_session,
        principal,
        bank.id,
        seq_cursor(after),
        n,
        wait=wait or 0,
        clock=clock_of(request),
        interval=settings.events_poll_interval_seconds,
    )
    return EventPage(
        items=[EventOut.model_validate(e) for e in found.items],
        cursor=encode_cursor(found.cursor),
    )


def delivery_view(d: WebhookDelivery, event_type: str) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=d.event_id,
        event_type=event_type,
        status=d.status.value,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=d.created_at,
    )


class WebhookController(Controller):
    path = "/v1/timebanks/{tb:str}/webhooks"
    tags = ["webhooks"]

    @post(
        "/",
        responses=problems(400, 403, 404, 413, 422, keyed=True),
        summary="Add a webhook endpoint (admin)",
        description="Events (of `events`, default every type) are POSTed to `url`, signed "
        "as Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with "
        "the `secret` answered here once (a replay of the same Idempotency-Key answers "
        "without it). Retried until a 2xx within 15 s: at once, then after 5 s, 5 min, "
        "30 min, 2 h, 5 h, 10 h and 10 h. No redirect is followed; hosts that resolve to "
        "private addresses are refused.",
        operation_id="createWebhook",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: WebhookCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[WebhookCreated]:
        allow = request.app.state.settings.webhooks_allow_private

        async def use_case(claim: Claim) -> WebhookEndpoint:
            bank = await get_by_slug(db_session, principal, tb)
            return await webhooks.create_endpoint(
                db_session,
                principal,
                bank.id,
                data.url,
                data.events,
                allow_private=allow,
                claim=claim,
            )

        def render(made: WebhookEndpoint) -> Any:
            view = WebhookOut.model_validate(made).model_dump()
            return as_json(WebhookCreated(**view, secret=made.secret))

        return await idempotent(
            request, db_session, principal, use_case, render=render, unstored_fields=("secret",)
        )

    @get(
        "/",
        responses=problems(403, 404, 422),
        summary="List webhook endpoints (admin; never secrets)",
        description="Every endpoint of the bank (at most 20): its address, the types it is "
        "sent, since when it has been failing and whether it was disabled.",
        operation_id="listWebhooks",
    )
    async def list_(self, db_session: AsyncSession, principal: Principal, tb: str) -> WebhookList:
        bank = await get_by_slug(db_session, principal, tb)
        found = await webhooks.list_endpoints(db_session, principal, bank.id)
        return WebhookList(items=[WebhookOut.model_validate(e) for e in found])

    @delete(
        "/{webhook_id:uuid}",
        status_code=204,
        responses=problems(403, 404),
        summary="Remove a webhook endpoint and its delivery log (admin)",
        description="Nothing more is sent to it, at once; deliveries not yet made are dropped.",
        operation_id="deleteWebhook",
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        webhook_id: uuid.UUID,
    ) -> None:
        async def use_case() -> None:
            bank = await get_by_slug(db_session, principal, tb)
            await webhooks.delete_endpoint(db_session, principal, bank.id, webhook_id)

        await write(request, db_session, use_case)

    @get(
        "/{webhook_id:uuid}/deliveries",
        responses=problems(403, 404, 422),
        summary="An endpoint's delivery log, newest first (admin)",
        description="Each event queued for the endpoint: pending (with its next try), "
        "succeeded or failed (no tries left), how many tries, and the last answer.",
        operation_id="listWebhookDeliveries",
    )
    async def deliveries(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        webhook_id: uuid.UUID,
        limit: int | None = LimitParam,
        cursor: str | None = None,
    ) -> DeliveryPage:
        bank = await get_by_slug(db_session, principal, tb)
        n = check_limit(limit)
        rows = await webhooks.list_deliveries(
            db_session, principal, bank.id, webhook_id, id_cursor(cursor), n
        )
        nxt = encode_cursor(rows[n - 1][0].id) if len(rows) > n else None
        return DeliveryPage(items=[delivery_view(d, t) for d, t in rows[:n]], next_cursor=nxt)

    @post(
        "/{webhook_id:uuid}/deliveries/{delivery_id:uuid}/redeliver",
        status_code=200,
        responses=problems(403, 404, 422),
        summary="Send a delivery again now (admin)",
        description="Its tries start again from the first; a disabled endpoint is turned back on.",
        operation_id="redeliverWebhook",
    )
    async def redeliver(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        webhook_id: uuid.UUID,
        delivery_id: uuid.UUID,
    ) -> DeliveryOut:
        async def use_case() -> DeliveryOut:
            bank = await get_by_slug(db_session, principal, tb)
            d, event_type = await webhooks.redeliver(
                db_session, principal, bank.id, webhook_id, delivery_id, clock_of(request).now()
            )
            return delivery_view(d, event_type)

        return await write(request, db_session, use_case)
