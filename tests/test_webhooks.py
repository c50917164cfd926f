"""Webhooks (docs/events.md): admins register endpoints; a real HTTP receiver on 127.0.0.1
gets each event signed as Standard Webhooks and checks it with the ``standardwebhooks``
library; failures are retried on the schedule (the dispatcher's clock is moved on, never
slept); redirects are not followed; private addresses are refused unless allowed; an
endpoint failing for days is disabled, with an event saying so."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from tests.conftest import Api, simple
from tests.servers import TIMEBANK_CLI, running_server, server_env
from tests.test_console import Clock as ConsoleClock
from tests.test_console import errors, make_user, sign_in, token
from tests.test_events import FakeClock
from timebank.access import Role
from timebank.app import create_app
from timebank.config import Settings
from timebank.events.dispatch import DISABLE_AFTER, SCHEDULE, Dispatcher
from timebank.events.models import DeliveryStatus, WebhookDelivery

Maker = async_sessionmaker[AsyncSession]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1: answers each POST with the next of ``answers``
    (then 200); ``/redirect`` answers 302 to ``/elsewhere``."""

    answers: list[int] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every body received, each checked against its signature headers."""
        return [Webhook(secret).verify(r.body, r.headers) for r in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            state.got.append(Received(self.path, dict(self.headers.items()), body))
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{state.port}/elsewhere")
            else:
                self.send_response(state.answers.pop(0) if state.answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def allowing(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhooks_allow_private": True})


@dataclass
class Hooked:
    api: Api
    slug: str
    ann: dict[str, Any]
    bob: dict[str, Any]
    clock: FakeClock
    dispatcher: Dispatcher

    def path(self, rest: str = "") -> str:
        return f"/v1/timebanks/{self.slug}{rest}"

    async def endpoint(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = events
        made: dict[str, Any] = await self.api.ok("post", self.path("/webhooks"), body)
        return made

    async def deliveries(self, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
        page = await self.api.ok("get", self.path(f"/webhooks/{endpoint['id']}/deliveries"))
        items: list[dict[str, Any]] = page["items"]
        return items

    async def record(self, minutes: int = 30) -> dict[str, Any]:
        out: dict[str, Any] = await self.api.ok(
            "post", self.path("/exchanges"), simple(self.ann, self.bob, minutes)
        )
        return out


@pytest.fixture
async def hooked(
    allowing: Settings, admin_secret: str, session_maker: Maker
) -> AsyncIterator[Hooked]:
    clock = FakeClock()
    dispatcher = Dispatcher(session_maker, allow_private=True, clock=clock)
    async with AsyncTestClient(app=create_app(allowing), timeout=60) as c:
        api = Api(c, admin_secret)
        tb = await api.timebank()
        slug = tb["slug"]
        ann, bob = await api.member(slug, "Ann"), await api.member(slug, "Bob")
        yield Hooked(api, slug, ann, bob, clock, dispatcher)
    await dispatcher.close()


# --- endpoints ------------------------------------------------------------------------------


async def test_endpoints_are_for_admins_and_the_secret_is_shown_once(
    hooked: Hooked, receiver: Receiver
) -> None:
    made = await hooked.endpoint(receiver.url)
    assert made["secret"].startswith("whsec_") and made["events"] is None
    listed = (await hooked.api.ok("get", hooked.path("/webhooks")))["items"]
    assert [e["id"] for e in listed] == [made["id"]]
    assert "secret" not in listed[0] and made["secret"] not in json.dumps(listed)
    broker = hooked.api.as_key(await hooked.api.key(hooked.slug, "broker"))
    for r in (
        await broker.get(hooked.path("/webhooks")),
        await broker.post(hooked.path("/webhooks"), json={"url": receiver.url}),
    ):
        assert r.status_code == 403
    r = await hooked.api.post(hooked.path("/webhooks"), json={"url": receiver.url, "events": ["x"]})
    assert r.status_code == 422 and "unknown event type" in r.json()["detail"]
    gone = await hooked.api.delete(hooked.path(f"/webhooks/{made['id']}"))
    assert gone.status_code == 204
    assert await hooked.api.ok("get", hooked.path("/webhooks")) == {"items": []}


async def test_private_addresses_are_refused_without_the_setting(
    api: Api, receiver: Receiver
) -> None:
    tb = await api.timebank()
    for url in (
        receiver.url,
        "http://localhost:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "ftp://example.org/hook",
    ):
        r = await api.post(f"/v1/timebanks/{tb['slug']}/webhooks", json={"url": url})
        assert r.status_code == 422, url
        body = r.json()
        assert body["errors"][0]["field"] == "url"
    assert "TIMEBANK_WEBHOOKS_ALLOW_PRIVATE" in body["detail"] or "http" in body["detail"]
    assert await api.ok("get", f"/v1/timebanks/{tb['slug']}/webhooks") == {"items": []}


async def test_a_dispatcher_without_the_setting_sends_nothing_to_a_private_address(
    hooked: Hooked, receiver: Receiver, session_maker: Maker
) -> None:
    """Checked again at each delivery: an address that has come to resolve privately."""
    made = await hooked.endpoint(receiver.url)
    await hooked.record()
    strict = Dispatcher(session_maker, allow_private=False, clock=hooked.clock)
    try:
        assert await strict.tick() == 1
    finally:
        await strict.close()
    assert receiver.got == []
    (d,) = await hooked.deliveries(made)
    assert d["status"] == "pending" and "private" in d["last_error"]


# --- deliveries -----------------------------------------------------------------------------


async def test_a_real_receiver_gets_the_confirmation_signed_as_standard_webhooks(
    hooked: Hooked, receiver: Receiver
) -> None:
    made = await hooked.endpoint(receiver.url, ["exchange.confirmed"])
    ann_key = hooked.api.as_key(
        await hooked.api.key(hooked.slug, "member", member_id=hooked.ann["id"])
    )
    bob_key = hooked.api.as_key(
        await hooked.api.key(hooked.slug, "member", member_id=hooked.bob["id"])
    )
    p = await ann_key.ok("post", hooked.path("/exchanges"), simple(hooked.ann, hooked.bob, 20))
    await bob_key.ok("post", hooked.path(f"/exchanges/{p['id']}/confirm"), {}, status=200)
    await hooked.record()  # exchange.recorded: not subscribed
    assert await hooked.dispatcher.tick() == 1
    (body,) = receiver.verified(made["secret"])
    assert body["type"] == "exchange.confirmed" and body["timebank"] == hooked.slug
    assert body["data"] == {"exchange_id": p["id"], "status": "recorded"}
    feed = await hooked.api.ok("get", hooked.path("/events"))
    (event,) = [e for e in feed["items"] if e["type"] == "exchange.confirmed"]
    assert receiver.got[0].headers["webhook-id"] == event["id"] == body["id"]
    with pytest.raises(Exception, match="signature"):
        Webhook(made["secret"]).verify(receiver.got[0].body + b" ", receiver.got[0].headers)
    (d,) = await hooked.deliveries(made)
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("succeeded", 1, 200)
    assert await hooked.dispatcher.tick() == 0 and len(receiver.got) == 1


async def test_a_receiver_that_fails_first_gets_the_event_when_the_clock_reaches_the_retry(
    hooked: Hooked, receiver: Receiver
) -> None:
    made = await hooked.endpoint(receiver.url)
    receiver.answers = [500]
    ex = await hooked.record()
    assert await hooked.dispatcher.tick() == 1
    (d,) = await hooked.deliveries(made)
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("pending", 1, 500)
    assert await hooked.dispatcher.tick() == 0  # not due yet: nothing sent, nothing slept
    hooked.clock.advance(seconds=SCHEDULE[1].total_seconds())
    assert await hooked.dispatcher.tick() == 1
    first, second = receiver.verified(made["secret"])
    assert first == second and second["data"]["exchange_id"] == ex["id"]
    assert receiver.got[0].headers["webhook-id"] == receiver.got[1].headers["webhook-id"]
    (d,) = await hooked.deliveries(made)
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("succeeded", 2, 200)


async def test_retries_follow_the_schedule_then_the_delivery_fails_and_can_be_redelivered(
    hooked: Hooked, receiver: Receiver, session_maker: Maker
) -> None:
    made = await hooked.endpoint(receiver.url)
    receiver.answers = [503] * len(SCHEDULE)
    await hooked.record()
    gaps = []
    for attempt in range(len(SCHEDULE)):
        assert await hooked.dispatcher.tick() == 1, attempt
        async with session_maker() as s:
            d = (await s.execute(select(WebhookDelivery))).scalar_one()
        if d.next_attempt_at is not None:
            gaps.append(d.next_attempt_at - hooked.clock.now())
            hooked.clock.advance(seconds=gaps[-1].total_seconds())
    assert gaps == SCHEDULE[1:]
    assert d.status is DeliveryStatus.failed and d.attempts == len(SCHEDULE)
    hooked.clock.advance(hours=48)
    assert await hooked.dispatcher.tick() == 0
    again = await hooked.api.ok(
        "post", hooked.path(f"/webhooks/{made['id']}/deliveries/{d.id}/redeliver"), status=200
    )
    assert again["status"] == "pending" and again["attempts"] == 0
    assert await hooked.dispatcher.tick() == 1
    assert len(receiver.verified(made["secret"])) == len(SCHEDULE) + 1
    (d2,) = await hooked.deliveries(made)
    assert d2["status"] == "succeeded"


async def test_a_redirect_is_not_followed(hooked: Hooked, receiver: Receiver) -> None:
    made = await hooked.endpoint(receiver.url.replace("/hook", "/redirect"))
    await hooked.record()
    assert await hooked.dispatcher.tick() == 1
    assert [r.path for r in receiver.got] == ["/redirect"]  # never /elsewhere
    (d,) = await hooked.deliveries(made)
    assert d["status"] == "pending" and d["last_status_code"] == 302
    assert "redirect" in d["last_error"]


async def test_an_endpoint_failing_for_days_is_disabled_and_an_event_says_so(
    hooked: Hooked, receiver: Receiver
) -> None:
    made = await hooked.endpoint(receiver.url)
    other = await hooked.endpoint(receiver.url.replace("/hook", "/other"), ["webhook.disabled"])
    receiver.answers = [500] * 100
    await hooked.record()
    assert await hooked.dispatcher.tick() == 1
    hooked.clock.advance(seconds=DISABLE_AFTER.total_seconds() - 60)
    await hooked.record()
    await hooked.dispatcher.tick()
    listed = {e["id"]: e for e in (await hooked.api.ok("get", hooked.path("/webhooks")))["items"]}
    assert listed[made["id"]]["disabled_at"] is None
    assert listed[made["id"]]["failing_since"] is not None
    hooked.clock.advance(seconds=120)
    await hooked.record()
    await hooked.dispatcher.tick()
    listed = {e["id"]: e for e in (await hooked.api.ok("get", hooked.path("/webhooks")))["items"]}
    assert listed[made["id"]]["disabled_at"] is not None
    feed = await hooked.api.ok("get", hooked.path("/events"))
    (disabled,) = [e for e in feed["items"] if e["type"] == "webhook.disabled"]
    assert disabled["data"]["endpoint_id"] == made["id"]
    # a disabled endpoint is sent nothing more; the other endpoint hears of it
    receiver.answers = []
    before = len([r for r in receiver.got if r.path == "/hook"])
    hooked.clock.advance(days=1)
    await hooked.record()
    await hooked.dispatcher.tick()
    await hooked.dispatcher.tick()
    assert len([r for r in receiver.got if r.path == "/hook"]) == before
    (told,) = [r for r in receiver.got if r.path == "/other"]
    assert Webhook(other["secret"]).verify(told.body, told.headers)["type"] == "webhook.disabled"


async def test_timebank_webhooks_run_once_delivers_from_the_command_line(
    hooked: Hooked, receiver: Receiver, db_url: str, tmp_path: Path
) -> None:
    made = await hooked.endpoint(receiver.url)
    await hooked.record()
    done = subprocess.run(
        [TIMEBANK_CLI, "webhooks", "run", "--once"],
        env=server_env(db_url, TIMEBANK_WEBHOOKS_ALLOW_PRIVATE="true"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (body,) = receiver.verified(made["secret"])
    assert body["type"] == "exchange.recorded"


@pytest.mark.slow
def test_timebank_serve_runs_a_dispatcher_and_two_workers_send_each_event_once(
    db_url: str, tmp_path: Path, receiver: Receiver, admin_secret: str
) -> None:
    with running_server(db_url, tmp_path, workers=2, TIMEBANK_WEBHOOKS_ALLOW_PRIVATE="true") as srv:
        h = {"Authorization": f"Bearer {admin_secret}"}
        with httpx.Client(base_url=srv.base_url, headers=h, timeout=30) as c:
            slug = f"tb-{uuid.uuid4().hex[:8]}"
            assert c.post("/v1/timebanks", json={"slug": slug, "name": "Served"}).status_code == 201
            made = c.post(f"/v1/timebanks/{slug}/webhooks", json={"url": receiver.url}).json()
            for name in ("Ann", "Bob", "Cai"):
                r = c.post(f"/v1/timebanks/{slug}/members", json={"display_name": name})
                assert r.status_code == 201
            deadline = time.monotonic() + 60
            while len(receiver.got) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)  # waiting for a state (three deliveries), bounded
            time.sleep(2)  # and for any duplicate a second worker might send
    bodies = receiver.verified(made["secret"])
    assert sorted(b["type"] for b in bodies) == ["member.created"] * 3
    assert len({b["id"] for b in bodies}) == 3


# --- the console ------------------------------------------------------------------------------


async def test_an_admin_adds_views_and_removes_a_webhook_in_the_console(
    allowing: Settings,
    settings: Settings,
    admin_secret: str,
    session_maker: Maker,
    receiver: Receiver,
) -> None:
    clock = ConsoleClock()
    for app_settings, allowed in ((settings, False), (allowing, True)):
        app = create_app(app_settings)
        app.state.clock = clock
        async with AsyncTestClient(app=app, timeout=60) as browser:
            api = Api(browser, admin_secret)
            tb = await api.timebank()
            slug = tb["slug"]
            email = f"admin-{slug}@example.org"
            await make_user(session_maker, email, Role.admin, [tb["id"]], clock)
            assert (await sign_in(browser, email)).status_code == 303
            page = await browser.get(f"/console/{slug}/admin/webhooks")
            assert page.status_code == 200 and "Add a webhook" in page.text
            form = {"csrf_token": token(page.text), "url": receiver.url, "events": "member.created"}
            r = await browser.post(f"/console/{slug}/admin/webhooks", data=form)
            if not allowed:
                assert r.status_code == 422
                assert errors(r.text) == [
                    "This address leads into a private network. Webhooks go to public "
                    "addresses only."
                ]
                cy = await browser.post(
                    f"/console/{slug}/admin/webhooks",
                    data=form,
                    headers={"Accept-Language": "cy"},
                )
                assert cy.status_code == 422 and '<html lang="cy">' in cy.text
                assert [e.removeprefix("Gwall:").strip() for e in errors(cy.text)] == [
                    "Mae&#39;r cyfeiriad hwn yn arwain i rwydwaith preifat. Dim ond i "
                    "gyfeiriadau cyhoeddus yr aiff bachau gwe."
                ]
                continue
            assert r.status_code == 200, r.text
            secret = re.search(r'<code id="secret">([^<]+)</code>', r.text)
            assert secret and secret.group(1).startswith("whsec_")
            listed = await browser.get(f"/console/{slug}/admin/webhooks")
            assert receiver.url in listed.text and "member.created" in listed.text
            (endpoint,) = (await api.ok("get", f"/v1/timebanks/{slug}/webhooks"))["items"]
            assert endpoint["events"] == ["member.created"]
            await api.member(slug, "May")
            dispatcher = Dispatcher(session_maker, allow_private=True)
            try:
                assert await dispatcher.tick() == 1
            finally:
                await dispatcher.close()
            log = await browser.get(f"/console/{slug}/admin/webhooks/{endpoint['id']}")
            assert "member.created" in log.text and "Delivered" in log.text
            (body,) = receiver.verified(secret.group(1))
            assert body["type"] == "member.created"
            removed = await browser.post(
                f"/console/{slug}/admin/webhooks/{endpoint['id']}/remove",
                data={"csrf_token": token(listed.text)},
                follow_redirects=False,
            )
            assert removed.status_code == 303
            assert (await api.ok("get", f"/v1/timebanks/{slug}/webhooks")) == {"items": []}
