"""Evidence a time bank's ledger was not changed: signed checkpoints, an exchange's inclusion
proof, consistency proofs between checkpoints (docs/evidence.md)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.evidence import service
from timebank.evidence.schemas import CheckpointOut, ConsistencyOut, ProofOut
from timebank.timebanks.service import get_by_slug
from timebank.web.problems import problems


class EvidenceController(Controller):
    path = "/v1/timebanks/{tb:str}"
    tags = ["evidence"]

    @get(
        "/checkpoints/latest",
        responses=problems(403, 404, 409, conflict=["not_checkpointed"]),
        operation_id="getLatestCheckpoint",
        summary="The bank's latest signed checkpoint",
        description="A signed Merkle tree head over the bank's hash chain (staff and funders). "
        "409 `not_checkpointed` until the first is signed.",
    )
    async def latest(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
    ) -> CheckpointOut:
        bank = await get_by_slug(db_session, principal, tb)
        return await service.get_checkpoint(
            db_session, principal, bank, request.app.state.settings, None
        )

    @get(
        "/checkpoints/{size:int}",
        responses=problems(403, 404, 422),
        operation_id="getCheckpoint",
        summary="The bank's latest signed checkpoint of this many entries",
        description="Staff and funders. 404 `not_found` when no checkpoint has that size.",
    )
    async def by_size(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        size: int = Parameter(ge=0, description="The tree size (number of chain entries)"),
    ) -> CheckpointOut:
        bank = await get_by_slug(db_session, principal, tb)
        return await service.get_checkpoint(
            db_session, principal, bank, request.app.state.settings, size
        )

    @get(
        "/checkpoints/{size:int}/consistency",
        responses=problems(403, 404, 422),
        operation_id="getCheckpointConsistency",
        summary="Proof that an older checkpoint's tree is a prefix of this one's",
        description="RFC 9162 consistency proof from the checkpoint of `from` entries to the "
        "checkpoint of `size` entries. 422 `validation_error` when `from` is missing, larger "
        "than `size`, or no checkpoint has that size.",
    )
    async def consistency(
        self,
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        size: int = Parameter(ge=0, description="The newer checkpoint's tree size"),
        from_size: int | None = Parameter(
            query="from", default=None, description="The older checkpoint's tree size (required)"
        ),
    ) -> ConsistencyOut:
        bank = await get_by_slug(db_session, principal, tb)
        return await service.consistency(db_session, principal, bank, size, from_size)

    @get(
        "/exchanges/{exchange_id:uuid}/proof",
        responses=problems(403, 404, 409, 422, conflict=["not_checkpointed"]),
        operation_id="getExchangeProof",
        summary="An exchange's inclusion proof against a signed checkpoint",
        description="Staff, or a member key of a party to the exchange. Against the latest "
        "checkpoint unless `size` names one. 409 `not_checkpointed` until a checkpoint covers "
        "the exchange.",
    )
    async def proof(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        exchange_id: uuid.UUID,
        size: int | None = Parameter(
            default=None,
            ge=0,
            # Litestar leaves a bound of 0 out of the document (it tests the bound's truth)
            schema_extra={"minimum": 0},
            description="A checkpoint's tree size (default: latest)",
        ),
    ) -> ProofOut:
        bank = await get_by_slug(db_session, principal, tb)
        return await service.exchange_proof(
            db_session, principal, bank, request.app.state.settings, exchange_id, size
        )
