"""The anchor for GET balance: a bare Litestar handler that returns the same JSON bytes.

No database, no auth, no middleware: the route has the same shape as the product's
``GET /v1/timebanks/{tb}/members/{id}/balance`` and answers with the bytes of a real
balance response (read once from ``BENCH_BARE_BODY``). ``serve.py`` serves it with the same
uvicorn settings as ``timebank serve``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from litestar import Litestar, Response, get


def create_app() -> Litestar:
    body = Path(os.environ["BENCH_BARE_BODY"]).read_bytes()

    @get("/v1/timebanks/{tb:str}/members/{member_id:uuid}/balance")
    async def balance(tb: str, member_id: uuid.UUID) -> Response[bytes]:
        return Response(body, media_type="application/json")

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[balance, health], logging_config=None)
