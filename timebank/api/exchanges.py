from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.errors import Forbidden, InvalidInput
from timebank.idempotency import Claim
from timebank.ledger import reads
from timebank.ledger.batch import BatchOutcome, record_batch
from timebank.ledger.models import ExchangeKind, ExchangeStatus
from timebank.ledger.proposals import Decision, decide, propose_exchange
from timebank.ledger.record import record_exchange
from timebank.ledger.reversal import reverse_exchange
from timebank.ledger.schemas import (
    BatchError,
    BatchOut,
    BatchRequest,
    BatchResult,
    DecisionRequest,
    ExchangeCreate,
    ExchangeOut,
    ReverseRequest,
)
from timebank.members.service import get_member
from timebank.organisations.service import get_organisation
from timebank.timebanks.service import get_by_slug
from timebank.web.auth import provide_principal, require_bearer
from timebank.web.idempotent import (
    IdempotencyKeyHeader,
    idempotent,
    record_in_one_call,
    session_for,
    write,
)
from timebank.web.pagination import LimitParam, Page, check_limit, encode_cursor, id_cursor
from timebank.web.problems import problems, status_of

DECISION_CONFLICTS = ["not_pending", "balance_limit_exceeded", "party_inactive"]
EXCHANGE_CONFLICTS = [
    "balance_limit_exceeded",
    "party_inactive",
    "duplicate",
    "idempotency_in_flight",
]


def render_batch(outcome: BatchOutcome) -> dict[str, Any]:
    """A batch's answer: each item's own status (201 recorded, else its error's)."""
    return BatchOut(
        results=[
            BatchResult(index=line.index, status=201, exchange=line.exchange)
            if line.error is None
            else BatchResult(
                index=line.index,
                status=status_of(line.error.code),
                error=BatchError(
                    code=line.error.code,
                    title=line.error.title,
                    detail=line.error.detail,
                    errors=line.error.extra.get("errors"),
                ),
            )
            for line in outcome.lines
        ]
    ).model_dump(mode="json")


ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}")  # an ISO 8601 date and time starts with its date


def reversal_at(request: Request[Any, Any, Any], body: bytes) -> str:
    """The reversal is an exchange of the bank: ``…/exchanges/{its id}``."""
    exchanges = request.url.path.rstrip("/").rsplit("/", 2)[0]
    return f"{exchanges}/{json.loads(body)['id']}"


class ExchangeController(Controller):
    path = "/v1/timebanks/{tb:str}/exchanges"
    tags = ["exchanges"]

    @post(
        "/",
        responses=problems(400, 403, 404, 409, 413, 422, conflict=EXCHANGE_CONFLICTS, keyed=True),
        summary="Record an exchange",
        description="Simple form (`provider`, `recipient`, `minutes`) or group form "
        "(`providers`, `recipients`). Providers are credited, recipients debited. "
        "Send `Idempotency-Key` to make retries safe.",
        operation_id="createExchange",
        guards=[require_bearer],
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        tb: str,
        data: ExchangeCreate,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[ExchangeOut]:
        # a hot route: no session until the in-process path needs one (PostgreSQL's
        # two-statement path takes a connection of its own)
        if not data.is_group:
            answered = await record_in_one_call(request, tb, data)
            if answered is not None:
                return answered
        async with session_for(request) as db_session:
            principal = await provide_principal(request, db_session)

            async def use_case(claim: Claim) -> ExchangeOut:
                bank = await get_by_slug(db_session, principal, tb)
                if principal.role is Role.member:
                    return await propose_exchange(db_session, principal, bank, data, claim)
                return await record_exchange(db_session, principal, bank, data, claim)

            return await idempotent(request, db_session, principal, use_case)

    @post(
        "/batch",
        status_code=200,
        responses=problems(400, 403, 404, 409, 413, 422, keyed=True),
        summary="Record up to 1000 exchanges in order",
        description="Each result carries its own status. With `atomic: true` nothing is "
        "recorded unless every item is; refused items carry their error and the others "
        "status 424 `batch_aborted`.",
        operation_id="createExchangeBatch",
    )
    async def batch(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        data: BatchRequest,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[BatchOut]:
        async def use_case(claim: Claim) -> BatchOutcome:
            bank = await get_by_slug(db_session, principal, tb)
            return await record_batch(
                db_session, principal, bank, data.exchanges, data.atomic, claim
            )

        return await idempotent(
            request, db_session, principal, use_case, status=200, render=render_batch
        )

    @get(
        "/",
        responses=problems(403, 404, 422),
        operation_id="listExchanges",
        summary="Exchanges of the bank",
        description="Oldest first (`sort=-created_at`: newest first). Filters combine. A "
        "member key lists its own exchanges only; `awaiting=me` gives the proposals waiting "
        "for its decision, `proposed_by=me` its own proposals. `updated_since` gives those "
        "changed since a moment (proposed, recorded, decided, expired, reversed): keep the "
        "time of your last look and ask again with it. Paged.",
    )
    async def list_(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        member_id: uuid.UUID | None = None,
        organisation_id: uuid.UUID | None = None,
        category: str | None = Parameter(default=None, max_length=63),
        status: ExchangeStatus | None = None,
        kind: ExchangeKind | None = None,
        date_from: date | None = Parameter(query="from", default=None),
        date_to: date | None = Parameter(query="to", default=None),
        awaiting: Literal["me"] | None = Parameter(
            default=None,
            description="`me` (member keys): pending exchanges waiting for this member",
        ),
        proposed_by: Literal["me"] | None = Parameter(
            default=None, description="`me` (member keys): this member's own proposals"
        ),
        updated_since: datetime | None = Parameter(
            default=None,
            description="Only exchanges changed at or after this moment (`updated_at`), "
            "e.g. 2026-11-28T09:30:00Z",
        ),
        sort: Literal["created_at", "-created_at"] | None = Parameter(
            default=None, description="`created_at` (the default) or `-created_at`"
        ),
        limit: int | None = LimitParam,
        cursor: str | None = None,
    ) -> Page[ExchangeOut]:
        bank = await get_by_slug(db_session, principal, tb)
        n = check_limit(limit)
        if updated_since is not None and not ISO_MOMENT.match(
            request.query_params.get("updated_since", "")
        ):  # the parser also takes a number of seconds since 1970, which the document does not
            raise InvalidInput(
                "updated_since", "must be a date and time, like 2026-11-28T09:30:00Z"
            )
        if updated_since is not None and updated_since.tzinfo is None:
            updated_since = updated_since.replace(tzinfo=UTC)
        filters = reads.ExchangeFilters(
            category=category,
            status=status,
            kind=kind,
            date_from=date_from,
            date_to=date_to,
            updated_since=updated_since,
            newest_first=sort == "-created_at",
        )
        if member_id is not None and organisation_id is not None:
            raise InvalidInput("member_id", "filter by a member or an organisation, not both")
        if principal.role is Role.member:
            assert principal.member_id is not None
            if member_id not in (None, principal.member_id) or organisation_id is not None:
                raise Forbidden("A member key lists its own exchanges only")
            member_id = principal.member_id
            if awaiting == "me":
                filters.awaiting_member = principal.member_id
            if proposed_by == "me":
                filters.proposed_by = principal.member_id
        if awaiting not in (None, "me"):
            raise InvalidInput("awaiting", "only 'me' is supported")
        if awaiting == "me" and principal.role is not Role.member:
            raise InvalidInput("awaiting", "awaiting=me is for member keys")
        if proposed_by == "me" and principal.role is not Role.member:
            raise InvalidInput("proposed_by", "proposed_by=me is for member keys")
        if member_id is not None:
            filters.account_id = (await get_member(db_session, bank, member_id)).account_id
        if organisation_id is not None:
            org = await get_organisation(db_session, bank, organisation_id)
            filters.account_id = org.account_id
        after = id_cursor(cursor)
        rows = await reads.list_exchanges(db_session, principal, bank, filters, after, n)
        nxt = None
        if len(rows) > n:
            rows = rows[:n]
            nxt = encode_cursor(rows[-1].id)
        return Page(items=rows, next_cursor=nxt)

    @get(
        "/{exchange_id:uuid}",
        responses=problems(403, 404),
        operation_id="getExchange",
        summary="One exchange with its postings",
        description="Staff keys, or a member key that is a party to it.",
    )
    async def get_one(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        exchange_id: uuid.UUID,
    ) -> ExchangeOut:
        bank = await get_by_slug(db_session, principal, tb)
        return await reads.get_exchange(db_session, principal, bank, exchange_id)

    async def _decide(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        exchange_id: uuid.UUID,
        decision: Decision,
        data: DecisionRequest | None,
    ) -> ExchangeOut:
        if data is None and (await request.body()).strip() == b"null":
            raise InvalidInput("body", 'send a JSON object such as {"reason": "…"}, or no body')

        async def use_case() -> ExchangeOut:
            bank = await get_by_slug(db_session, principal, tb)
            reason = data.reason if data else None
            return await decide(db_session, principal, bank, exchange_id, decision, reason)

        return await write(request, db_session, use_case)

    @post(
        "/{exchange_id:uuid}/confirm",
        status_code=200,
        responses=problems(403, 404, 409, 413, 422, conflict=DECISION_CONFLICTS),
        summary="Confirm a pending exchange (counterparty member or broker)",
        description="Posts it: re-checks party status, limits and category. A refused "
        "confirmation leaves it pending.",
        operation_id="confirmExchange",
    )
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        exchange_id: uuid.UUID,
    ) -> ExchangeOut:
        return await self._decide(
            request, db_session, principal, tb, exchange_id, Decision.confirm, None
        )

    @post(
        "/{exchange_id:uuid}/reject",
        status_code=200,
        responses=problems(403, 404, 409, 413, 422, conflict=["not_pending"]),
        summary="Reject a pending exchange (counterparty member or broker)",
        operation_id="rejectExchange",
        description="The exchange becomes `rejected` and is never posted. The body (a reason) may be left out.",
    )
    async def reject(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        exchange_id: uuid.UUID,
        data: DecisionRequest | None = None,
    ) -> ExchangeOut:
        return await self._decide(
            request, db_session, principal, tb, exchange_id, Decision.reject, data
        )

    @post(
        "/{exchange_id:uuid}/cancel",
        status_code=200,
        responses=problems(403, 404, 409, 413, 422, conflict=["not_pending"]),
        summary="Cancel a pending exchange (its proposer or a broker)",
        operation_id="cancelExchange",
        description="The exchange becomes `cancelled` and is never posted. The body (a reason) may be left out.",
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        exchange_id: uuid.UUID,
        data: DecisionRequest | None = None,
    ) -> ExchangeOut:
        return await self._decide(
            request, db_session, principal, tb, exchange_id, Decision.cancel, data
        )

    @post(
        "/{exchange_id:uuid}/reverse",
        responses=problems(
            400,
            403,
            404,
            409,
            413,
            422,
            conflict=["already_reversed", "not_reversible"],
            keyed=True,
        ),
        summary="Reverse a recorded exchange (broker)",
        description="Posts the mirror image as a new exchange of kind `reversal`; ignores "
        "limits and party status; at most once per exchange.",
        operation_id="reverseExchange",
    )
    async def reverse(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        exchange_id: uuid.UUID,
        data: ReverseRequest,
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[ExchangeOut]:
        async def use_case(claim: Claim) -> ExchangeOut:
            bank = await get_by_slug(db_session, principal, tb)
            return await reverse_exchange(
                db_session, principal, bank, exchange_id, data.reason, claim
            )

        return await idempotent(request, db_session, principal, use_case, location=reversal_at)
