"""The webhook dispatcher: queues each new event for the endpoints that want it, sends the
deliveries that are due — signed as Standard Webhooks — and schedules retries.

One tick: (1) *fan out*: for each enabled endpoint, the bank's events after its
``last_seq`` up to the bank's horizon become deliveries; (2) *claim* the due deliveries by
pushing their next attempt a lease ahead and committing; (3) *send* them, each a POST with
a 15 s timeout and no redirect followed; (4) *record* each result: a 2xx ends it, anything
else schedules the next try (:data:`SCHEDULE`) or, after the last, marks it failed. An
endpoint that has not answered a 2xx for :data:`DISABLE_AFTER` is disabled, and a
``webhook.disabled`` event says so.

Several dispatchers may run at once (every worker of ``timebank serve``, other machines):
on PostgreSQL the rows they take are locked with ``FOR UPDATE SKIP LOCKED``, so none is
taken twice; on SQLite every claim is a write transaction (the database's one writer). A
dispatcher that dies mid-send leaves its claims to run out; they are sent again — delivery
is at least once, and receivers deduplicate by ``webhook-id`` (the event's id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Select, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from timebank.clock import SYSTEM_CLOCK, Clock
from timebank.db import begin_write, table_of, utcnow, uuid7
from timebank.errors import InvalidInput
from timebank.events.feed import _position
from timebank.events.models import (
    DeliveryStatus,
    Event,
    EventCounter,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
)
from timebank.events.service import Change, emit
from timebank.events.webhooks import check_url
from timebank.timebanks.models import TimeBank

log = logging.getLogger("timebank.webhooks")

# Delay before each try: the first at once, then after each failure the next delay.
SCHEDULE = [
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]
TIMEOUT_SECONDS = 15.0
LEASE = timedelta(seconds=60)  # a claim's hold: longer than a send can take
DISABLE_AFTER = timedelta(days=5)
FAN_OUT_BATCH = 1000


@dataclass
class Due:
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    timebank_id: uuid.UUID
    url: str
    secret: str
    attempts: int
    body: bytes
    event_id: uuid.UUID


def payload(event: Event, slug: str) -> bytes:
    """The body of a delivery: the event as the feed shows it, with its bank's slug."""
    return json.dumps(
        {
            "id": str(event.id),
            "type": event.type,
            "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
            "timebank": slug,
            "data": event.data,
        },
        separators=(",", ":"),
    ).encode()


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        allow_private: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        interval: float = 1.0,
        batch: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.sessions = sessions
        self.allow_private = allow_private
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self.http = httpx.AsyncClient(
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            headers={"User-Agent": "timebank-webhooks/1"},
        )

    async def close(self) -> None:
        await self.http.aclose()

    @staticmethod
    def _locking(stmt: Select[Any], session: AsyncSession, *of: Any) -> Select[Any]:
        if session.get_bind().dialect.name == "postgresql":
            return stmt.with_for_update(skip_locked=True, of=list(of))
        return stmt

    async def fan_out(self) -> int:
        """Queue deliveries of the events each enabled endpoint has not had yet."""
        queued = 0
        async with self.sessions() as session:
            behind = await session.execute(
                select(WebhookEndpoint.id)
                .join(EventCounter, EventCounter.timebank_id == WebhookEndpoint.timebank_id)
                .where(
                    WebhookEndpoint.disabled_at.is_(None),
                    EventCounter.last_seq > WebhookEndpoint.last_seq,
                )
                .limit(1)
            )
            if behind.first() is None:  # an idle tick reads, and writes nothing
                return 0
            await session.rollback()
            await begin_write(session)
            endpoints = (
                await session.execute(
                    self._locking(
                        select(WebhookEndpoint)
                        .where(WebhookEndpoint.disabled_at.is_(None))
                        .order_by(WebhookEndpoint.id),
                        session,
                        WebhookEndpoint,
                    )
                )
            ).scalars()
            now = self.clock.now()
            for endpoint in list(endpoints):
                horizon, _ = await _position(session, endpoint.timebank_id)
                if horizon <= endpoint.last_seq:
                    continue
                stmt = select(Event.id, Event.seq).where(
                    Event.timebank_id == endpoint.timebank_id,
                    Event.seq > endpoint.last_seq,
                    Event.seq <= horizon,
                )
                if endpoint.events is not None:
                    stmt = stmt.where(Event.type.in_(endpoint.events))
                rows = (await session.execute(stmt.order_by(Event.seq).limit(FAN_OUT_BATCH))).all()
                reached = rows[-1][1] if len(rows) == FAN_OUT_BATCH else horizon
                if rows:
                    await session.execute(
                        insert(table_of(WebhookDelivery)),
                        [
                            {
                                "id": uuid7(),
                                "endpoint_id": endpoint.id,
                                "event_id": event_id,
                                "status": DeliveryStatus.pending,
                                "attempts": 0,
                                "next_attempt_at": now,
                                "created_at": now,
                            }
                            for event_id, _ in rows
                        ],
                    )
                    queued += len(rows)
                endpoint.last_seq = reached
            await session.commit()
        return queued

    async def claim(self) -> list[Due]:
        """Take the due deliveries of enabled endpoints: their next attempt moves a lease
        ahead, committed, so no other dispatcher takes them while they are sent."""
        async with self.sessions() as session:
            now = self.clock.now()
            due = select(WebhookDelivery.id).where(
                WebhookDelivery.status == DeliveryStatus.pending,
                WebhookDelivery.next_attempt_at <= now,
            )
            if (await session.execute(due.limit(1))).first() is None:
                return []
            await session.rollback()
            await begin_write(session)
            ids = list(
                (
                    await session.execute(
                        self._locking(
                            select(WebhookDelivery.id)
                            .join(
                                WebhookEndpoint,
                                and_(
                                    WebhookEndpoint.id == WebhookDelivery.endpoint_id,
                                    WebhookEndpoint.disabled_at.is_(None),
                                ),
                            )
                            .where(
                                WebhookDelivery.status == DeliveryStatus.pending,
                                WebhookDelivery.next_attempt_at <= now,
                            )
                            .order_by(WebhookDelivery.next_attempt_at)
                            .limit(self.batch),
                            session,
                            WebhookDelivery,
                        )
                    )
                ).scalars()
            )
            if not ids:
                await session.rollback()
                return []
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(next_attempt_at=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            rows = await session.execute(
                select(WebhookDelivery, WebhookEndpoint, Event, TimeBank.slug)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .join(TimeBank, TimeBank.id == Event.timebank_id)
                .where(WebhookDelivery.id.in_(ids))
                .order_by(Event.seq)
            )
            taken = [
                Due(
                    d.id, e.id, e.timebank_id, e.url, e.secret, d.attempts, payload(ev, slug), ev.id
                )
                for d, e, ev, slug in rows.tuples()
            ]
            await session.commit()
        return taken

    async def send(self, due: Due) -> tuple[int | None, str | None]:
        """One POST: the status code (``None`` if there was no answer) and what went wrong."""
        try:
            await check_url(due.url, allow_private=self.allow_private)
        except InvalidInput as exc:
            return None, exc.detail
        now = utcnow()  # the moment of sending, whatever clock schedules the tries
        headers = {
            "content-type": "application/json",
            "webhook-id": str(due.event_id),
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(due.secret).sign(str(due.event_id), now, due.body),
        }
        try:
            async with self.http.stream("POST", due.url, content=due.body, headers=headers) as r:
                status = r.status_code
        except httpx.TimeoutException:
            return None, f"no answer within {TIMEOUT_SECONDS:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= status < 300:
            return status, None
        if 300 <= status < 400:
            return status, "a redirect: redirects are not followed"
        return status, f"answered {status}"

    async def record(self, due: Due, status: int | None, error: str | None) -> None:
        async with self.sessions() as session:
            await begin_write(session)
            now = self.clock.now()
            attempts = due.attempts + 1
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_attempt_at": now,
                "last_status_code": status,
                "last_error": error,
            }
            endpoint = update(WebhookEndpoint).where(WebhookEndpoint.id == due.endpoint_id)
            if error is None:
                values |= {"status": DeliveryStatus.succeeded, "next_attempt_at": None}
                await session.execute(endpoint.values(failing_since=None))
            else:
                values["next_attempt_at"] = next_attempt(attempts, now)
                if values["next_attempt_at"] is None:
                    values["status"] = DeliveryStatus.failed
                await session.execute(
                    endpoint.values(failing_since=func.coalesce(WebhookEndpoint.failing_since, now))
                )
                disabled = await session.execute(
                    endpoint.where(
                        WebhookEndpoint.disabled_at.is_(None),
                        WebhookEndpoint.failing_since <= now - DISABLE_AFTER,
                    ).values(disabled_at=now)
                )
                if getattr(disabled, "rowcount", 0) == 1:
                    log.warning("webhook endpoint %s disabled after failing", due.endpoint_id)
                    change = Change(
                        EventType.webhook_disabled, {"endpoint_id": str(due.endpoint_id)}
                    )
                    await emit(session, due.timebank_id, [change], now=now)
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == due.delivery_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    async def tick(self) -> int:
        """Fan out, then send what is due; how many deliveries were tried."""
        await self.fan_out()
        due = await self.claim()
        if not due:
            return 0
        results = await asyncio.gather(*(self.send(d) for d in due))
        for d, (status, error) in zip(due, results, strict=True):
            await self.record(d, status, error)
        return len(due)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Tick until ``stop`` is set (or the task is cancelled), resting ``interval``
        seconds whenever there was nothing to send."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                sent = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away, say: try again on the next tick
                log.exception("webhook dispatcher tick failed")
                sent = 0
            if not sent:
                await self.clock.sleep(self.interval)


def next_attempt(attempts: int, now: datetime) -> datetime | None:
    """When the next try follows ``attempts`` failed ones (``None``: no more)."""
    return now + SCHEDULE[attempts] if attempts < len(SCHEDULE) else None
