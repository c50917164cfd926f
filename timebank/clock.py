"""Time for the code that waits (the feed's long poll, the webhook dispatcher's retries):
passed in, so a test moves it on instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from timebank.db import utcnow


class Clock:
    """The real clock: wall time, a monotonic time for deadlines, and sleeping."""

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = Clock()
