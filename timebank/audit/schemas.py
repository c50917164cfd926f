from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key_id: uuid.UUID | None
    role: str
    action: str
    target_type: str
    target_id: str
    request_id: str | None
    reason: str | None
    details: dict[str, Any] | None
    created_at: datetime
