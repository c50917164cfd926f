"""Paper time sheets over HTTP: upload (a preview), read it again, commit it, discard it."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import UploadFile
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.errors import InvalidInput
from timebank.idempotency import Claim
from timebank.imports import service
from timebank.imports.models import SheetImport
from timebank.imports.schemas import CommitRequest, ImportOut, LineChoice
from timebank.imports.sheet import MAX_BYTES, XLSX_MEDIA_TYPE, sheet_name_of
from timebank.timebanks.service import get_by_slug
from timebank.web.idempotent import IdempotencyKeyHeader, as_json, idempotent, write
from timebank.web.openapi import UPLOAD
from timebank.web.problems import UPLOAD_LIMIT, problems


def import_view(found: SheetImport, slug: str) -> ImportOut:
    return ImportOut.model_validate(
        {
            "id": found.id,
            "timebank": slug,
            "sheet": found.sheet,
            "filename": found.filename,
            "status": found.status.value,
            "date_formats": service.DATE_FORMATS,
            "columns": found.columns,
            "created_at": found.created_at,
            "committed_at": found.committed_at,
            "summary": service.summary(found.lines),
            "lines": found.lines,
        }
    )


async def _upload(request: Request[Any, Any, Any]) -> tuple[bytes, str | None]:
    """The sheet's bytes and file name: a multipart form's ``file``, or the body itself."""
    if request.content_type[0] == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("file", "attach the sheet as the form field 'file'")
        return await upload.read(), upload.filename
    return await request.body(), None


class ImportController(Controller):
    path = "/v1/timebanks/{tb:str}/imports"
    tags = ["imports"]

    @post(
        "/",
        responses=problems(400, 403, 404, 409, 413, 422, keyed=True, upload_limit=MAX_BYTES),
        request_max_body_size=MAX_BYTES + 65_536,
        opt={UPLOAD: ["text/csv", XLSX_MEDIA_TYPE], UPLOAD_LIMIT: MAX_BYTES},
        operation_id="createImport",
        summary="Upload a paper time sheet: a preview of every line",
        description="The body is the sheet: CSV (UTF-8, with or without BOM; comma or "
        "semicolon) or XLSX, or a multipart form with the file as `file`. Up to 10 000 lines "
        "and 5 MiB. Columns: date, provider, recipient, hours (1.5, 1:30 or 90m) or minutes, "
        "category, description, reference; headers are matched forgivingly (`Giver`, "
        "`Receiver`, …). Each line is resolved (a membership number, an email unique in the "
        "bank, a display name unique in the bank, or `Pool`) and judged as a batch would "
        "judge it — limits in line order — without recording anything. Its reference is "
        "`<sheet>/<reference>` or `<sheet>/<line number>`.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        sheet: str | None = Parameter(
            default=None,
            max_length=100,
            description="The sheet's name, the prefix of its lines' references (default: the "
            "file name without its extension)",
        ),
        idempotency_key: str | None = IdempotencyKeyHeader,
    ) -> Response[ImportOut]:
        content, filename = await _upload(request)
        name = sheet or (sheet_name_of(filename) if filename else None)
        if not name:
            raise InvalidInput("sheet", "name the sheet: ?sheet=november-2026 (or upload a file)")

        async def use_case(claim: Claim) -> SheetImport:
            bank = await get_by_slug(db_session, principal, tb)
            return await service.preview(
                db_session, principal, bank, content, sheet=name, filename=filename, claim=claim
            )

        return await idempotent(
            request,
            db_session,
            principal,
            use_case,
            render=lambda found: as_json(import_view(found, tb)),
        )

    @get(
        "/{import_id:uuid}",
        responses=problems(403, 404),
        operation_id="getImport",
        summary="A sheet import: its lines and their verdicts",
        description="As the upload answered (a preview), or as committed.",
    )
    async def get_one(
        self, db_session: AsyncSession, principal: Principal, tb: str, import_id: uuid.UUID
    ) -> ImportOut:
        bank = await get_by_slug(db_session, principal, tb)
        return import_view(await service.get_import(db_session, principal, bank, import_id), tb)

    @patch(
        "/{import_id:uuid}/lines/{line:int}",
        responses=problems(400, 403, 404, 409, 413, 422, conflict=["import_closed"]),
        operation_id="chooseImportParty",
        summary="Choose who a line's provider or recipient is, or say it is a separate exchange",
        description="For a name that matched several parties, or none: pick one (e.g. from "
        "the line's `candidates`) by id. For a `repeat` line (the same date, people, minutes "
        "and category as an earlier line of the sheet or an exchange already in the ledger): "
        '`{"separate": true}` says it is a separate exchange, to be recorded; `false` takes '
        "that back. The whole preview is judged again, limits in line order.",
    )
    async def choose(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        import_id: uuid.UUID,
        line: int,
        data: LineChoice,
    ) -> ImportOut:
        async def use_case() -> ImportOut:
            bank = await get_by_slug(db_session, principal, tb)
            if data.separate is not None:
                found = await service.mark_separate(
                    db_session, principal, bank, import_id, line, data.separate
                )
            else:
                side, party_id = data.choice()
                found = await service.choose_party(
                    db_session, principal, bank, import_id, line, side, party_id
                )
            return import_view(found, tb)

        return await write(request, db_session, use_case)

    @post(
        "/{import_id:uuid}/commit",
        status_code=200,
        responses=problems(400, 403, 404, 409, 413, 422, conflict=["import_closed"]),
        operation_id="commitImport",
        summary="Record a sheet's ready lines as one batch",
        description="In line order, limits checked as the batch does. With `atomic: true` "
        "nothing is recorded unless every ready line can be. Committing again records "
        "nothing new and answers as before.",
    )
    async def commit(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        import_id: uuid.UUID,
        data: CommitRequest | None = None,
    ) -> ImportOut:
        async def use_case() -> ImportOut:
            bank = await get_by_slug(db_session, principal, tb)
            atomic = data.atomic if data else False
            found = await service.commit(db_session, principal, bank, import_id, atomic=atomic)
            return import_view(found, tb)

        return await write(request, db_session, use_case)

    @delete(
        "/{import_id:uuid}",
        status_code=200,
        responses=problems(403, 404, 409, conflict=["import_closed"]),
        operation_id="discardImport",
        summary="Discard a preview",
        description="Nothing was recorded from it; a committed import cannot be discarded.",
    )
    async def discard(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        principal: Principal,
        tb: str,
        import_id: uuid.UUID,
    ) -> ImportOut:
        async def use_case() -> ImportOut:
            bank = await get_by_slug(db_session, principal, tb)
            return import_view(await service.discard(db_session, principal, bank, import_id), tb)

        return await write(request, db_session, use_case)
