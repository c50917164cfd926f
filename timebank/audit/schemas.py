from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 1207,
                    "key_id": "01937a40-0000-7000-8000-00000000beef",
                    "user_id": None,
                    "role": "broker",
                    "action": "exchange.record",
                    "target_type": "exchange",
                    "target_id": "01937a52-1c4d-7e8f-9a0b-1c2d3e4f5a6b",
                    "request_id": "6f1c2a9e0b7d4e3f8a5c1d2e3f4a5b6c",
                    "reason": None,
                    "details": {"minutes": 90},
                    "created_at": "2026-11-30T10:15:00Z",
                }
            ]
        },
    )

    id: int
    key_id: uuid.UUID | None
    user_id: uuid.UUID | None
    role: str
    action: str
    target_type: str
    target_id: str
    request_id: str | None
    reason: str | None
    details: dict[str, Any] | None
    created_at: datetime
