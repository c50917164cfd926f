"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from sqlalchemy.ext.asyncio import async_sessionmaker

from timebank.api import reports
from timebank.api.audit import audit_events
from timebank.api.events import WebhookController, list_events
from timebank.api.evidence import EvidenceController
from timebank.api.exchanges import ExchangeController
from timebank.api.imports import ImportController
from timebank.api.keys import ApiKeyController, GlobalApiKeyController
from timebank.api.me import console_me, me
from timebank.api.members import MemberController, directory
from timebank.api.organisations import OrganisationController
from timebank.api.timebanks import TimeBankController
from timebank.config import Settings, get_settings
from timebank.console.router import console_router
from timebank.db import DriverPool, Replica, create_engine
from timebank.events.dispatch import Dispatcher
from timebank.evidence.seal import start_sealer
from timebank.logs import configure_logging
from timebank.web.allow import complete_allow_header
from timebank.web.auth import provide_principal
from timebank.web.openapi import docs_assets, render_plugins
from timebank.web.ops import health, problem_page, ready
from timebank.web.problems import exception_handlers
from timebank.web.query import refuse_null_queries
from timebank.web.ratelimit import RateLimiter, RateLimitMiddleware
from timebank.web.requestid import RequestIdMiddleware
from timebank.web.security import add_security_headers, cors_config
from timebank.web.server import BodyTimeoutMiddleware

GC_THRESHOLD = 50_000  # allocations between collections of the youngest generation

API_DESCRIPTION = """A time-banking ledger: one hour of anyone's time earns one time credit.

All amounts are integer minutes. Every error is `application/problem+json` with a stable
`code`. Authenticate with `Authorization: Bearer <api key>`.
"""


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    engine = create_engine(settings)
    # advanced-alchemy keeps every config's state keys in a process-wide registry and finds a
    # free one by recursing once per taken name: after ~950 apps in one process (the test
    # suite) that is a RecursionError. Keys of this app's own are free at once.
    own = uuid.uuid4().hex
    alchemy = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_scope_key=f"_sqlalchemy_db_session_{own}",
        engine_app_state_key=f"db_engine_{own}",
        session_maker_app_state_key=f"session_maker_class_{own}",
        session_config=AsyncSessionConfig(expire_on_commit=False, autoflush=False),
        session_dependency_key="db_session",
        engine_dependency_key="db_engine",
        set_default_exception_handler=False,
        enable_touch_updated_timestamp_listener=False,
        create_all=False,
    )
    middleware: list[Any] = [RequestIdMiddleware]
    if settings.rate_limit_per_minute:
        middleware.append(
            DefineMiddleware(
                RateLimitMiddleware, limiter=RateLimiter(settings.rate_limit_per_minute)
            )
        )
    middleware.append(
        DefineMiddleware(BodyTimeoutMiddleware, seconds=settings.body_timeout_seconds)
    )
    driver_pool = (
        DriverPool(engine, settings.db_pool_size, settings.db_connect_timeout_seconds)
        if not settings.is_sqlite
        else None
    )

    replica = Replica(settings) if settings.replica_database_url else None

    async def close_driver_pool() -> None:
        if driver_pool is not None:
            await driver_pool.close()
        if replica is not None:
            await replica.close()

    return Litestar(
        route_handlers=[
            health,
            ready,
            problem_page,
            TimeBankController,
            MemberController,
            directory,
            audit_events,
            *reports.ROUTES,
            OrganisationController,
            ExchangeController,
            EvidenceController,
            ImportController,
            ApiKeyController,
            GlobalApiKeyController,
            me,
            console_me,
            list_events,
            WebhookController,
            docs_assets(),
            console_router,
        ],
        plugins=[SQLAlchemyPlugin(config=alchemy)],
        dependencies={"principal": Provide(provide_principal)},
        exception_handlers=exception_handlers,
        middleware=middleware,
        state=State(
            {
                "settings": settings,
                "driver_pool": driver_pool,
                "replica": replica,
                "sessions": async_sessionmaker(engine, expire_on_commit=False, autoflush=False),
            }
        ),
        on_shutdown=[close_driver_pool],
        before_send=[add_security_headers, complete_allow_header],
        before_request=refuse_null_queries,
        cors_config=cors_config(settings),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Timebank ledger API",
            version="1.0.0",
            description=API_DESCRIPTION,
            path="/schema",
            render_plugins=render_plugins(),
        ),
        debug=settings.debug,
        logging_config=None,
    )


async def tune_gc() -> None:
    """A served worker's collector: everything loaded by start-up lives as long as the
    process, so it is moved out of the collector's way (``gc.freeze``), and young objects
    are collected less often — a 1000-item batch makes ~200 000 of them, and at the default
    threshold (700) about a third of its Python was the collector (measured: 185 → 119 ms
    per batch)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def with_sealer(app: Litestar) -> None:
    """The evidence sealer in a thread of this worker (docs/evidence.md): every worker runs
    one, and a lock per bank lets one work at a time."""
    halt = start_sealer(app.state.settings)

    async def stop_sealer() -> None:
        await asyncio.to_thread(halt)

    app.on_shutdown.insert(0, stop_sealer)


def create_server_app() -> Litestar:
    """The app as ``timebank serve`` runs it in each worker: :func:`create_app` with the
    collector tuned for serving (not for the test suite's thousand apps in one process),
    the evidence sealer (unless TIMEBANK_SEALER=false) and a webhook dispatcher
    (``TIMEBANK_WEBHOOKS_DISPATCHER``; the workers' dispatchers share the work without
    taking a delivery twice, see :mod:`timebank.events.dispatch`)."""
    app = create_app()
    app.on_startup.append(tune_gc)
    settings: Settings = app.state.settings
    if settings.sealer:
        app.on_startup.append(with_sealer)
    if settings.webhooks_dispatcher:
        app.on_startup.append(start_dispatcher)
        app.on_shutdown.append(stop_dispatcher)
    return app


async def start_dispatcher(app: Litestar) -> None:
    dispatcher = Dispatcher(
        app.state.sessions, allow_private=app.state.settings.webhooks_allow_private
    )
    app.state.dispatcher = dispatcher
    app.state.dispatcher_task = asyncio.get_running_loop().create_task(dispatcher.run())


async def stop_dispatcher(app: Litestar) -> None:
    task = app.state.get("dispatcher_task")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app.state.dispatcher.close()
