"""Published figures, cached per process (SPEC §7.9).

Published figures count the ledger **as of the start of a UTC day** (:func:`periods.resolve_period`
rounds ``as_of`` down), but they also read the banks' people as they are now (consent,
status, erasure, demographic fields) and the banks' settings. So the key is (banks and
their suppression thresholds, period, day, report, parameters, and the latest change to
the banks' members, organisations and settings — :func:`version_of`, one query): a cached
answer then equals a fresh one in every worker, and a member who withdraws consent or is
erased leaves the figures at once, as in the API. Who asked is not in the key: the figures
are the same for every role and user allowed to see those banks, and whether they may see
them is checked before the cache is asked. Old days and versions fall out of the LRU.

What may be older in a cached answer: a category's name (categories keep no change time)
and the ``generated_at`` of JSON/XLSX (the first build's).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.members.models import Member
from timebank.organisations.models import Organisation
from timebank.reports import run
from timebank.reports.periods import Period
from timebank.reports.service import Built, Options
from timebank.timebanks.models import TimeBank

ENTRIES = 512  # a dashboard view is 10 entries; ~50 views of (banks, period) per process


@dataclass(frozen=True)
class Key:
    banks: tuple[tuple[uuid.UUID, int], ...]  # (id, suppression threshold), in order
    start: date
    end: date
    as_of: datetime
    report: str
    options: Options
    version: Any = None  # version_of the banks' people and settings


@dataclass(frozen=True)
class Report:
    """A built report and the metadata every rendering starts with (JSON, CSV, XLSX)."""

    meta: dict[str, Any]
    built: Built


class PublishedCache:
    """A least-recently-used map of published reports, with hit and miss counts."""

    def __init__(self, entries: int = ENTRIES) -> None:
        self.entries = entries
        self.items: OrderedDict[Key, Report] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.builds = 0  # calls of run.build_many
        self._building: dict[tuple[Key, ...], tuple[asyncio.Lock, list[int]]] = {}

    def get(self, key: Key) -> Report | None:
        found = self.items.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self.items.move_to_end(key)
        return found

    def put(self, key: Key, report: Report) -> None:
        self.items[key] = report
        self.items.move_to_end(key)
        while len(self.items) > self.entries:
            self.items.popitem(last=False)

    def clear(self) -> None:
        self.items.clear()

    def building(self, keys: tuple[Key, ...]) -> _Building:
        """One build at a time per set of missing keys in this process: a second request
        for the same cold view waits for the first and reads its answer."""
        return _Building(self, keys)


class _Building:
    def __init__(self, cache: PublishedCache, keys: tuple[Key, ...]) -> None:
        self.cache, self.keys = cache, keys

    async def __aenter__(self) -> None:
        lock, users = self.cache._building.setdefault(self.keys, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: __aexit__ will not run
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.cache._building[self.keys][0].release()
        self._leave()

    def _leave(self) -> None:
        users = self.cache._building[self.keys][1]
        users[0] -= 1
        if not users[0]:
            del self.cache._building[self.keys]


def key_of(
    banks: list[TimeBank], period: Period, name: str, options: Options, version: Any = None
) -> Key:
    midnight = datetime.combine(period.as_of.astimezone(UTC).date(), time(0), tzinfo=UTC)
    if period.as_of != midnight:
        raise ValueError("published figures are cached only as of the start of a UTC day")
    return Key(
        tuple((b.id, b.suppression_threshold) for b in banks),
        period.start,
        period.end,
        period.as_of,
        name,
        options,
        version,
    )


async def version_of(session: AsyncSession, banks: list[TimeBank]) -> Any:
    """The latest change to what the published figures read besides the ledger: the banks'
    members (consent, status, erasure, the demographic fields), organisations and settings.
    In the key, so an answer is never served after such a change: a cached figure must
    equal a fresh one, or the two together would tell the difference a member made."""
    ids = [b.id for b in banks]
    latest = [
        select(func.max(model.updated_at)).where(where).scalar_subquery()
        for model, where in (
            (Member, Member.timebank_id.in_(ids)),
            (Organisation, Organisation.timebank_id.in_(ids)),
            (TimeBank, TimeBank.id.in_(ids)),
        )
    ]
    row = (await session.execute(select(*latest))).one()
    return max((v for v in row if v is not None), default=None)


async def published(
    session: AsyncSession,
    cache: PublishedCache,
    wanted: list[tuple[str, Options]],
    banks: list[TimeBank],
    period: Period,
    *,
    timeout_ms: int,
) -> list[Report]:
    """The published reports ``wanted`` (in order), from the cache, the missing ones built
    together in one snapshot by :func:`run.build_many` (the same builders the API runs)."""
    version = await version_of(session, banks)
    keys = [key_of(banks, period, name, options, version) for name, options in wanted]
    found = {k: r for k in keys if (r := cache.get(k)) is not None}
    missing = [(k, w) for k, w in zip(keys, wanted, strict=True) if k not in found]
    if missing:
        async with cache.building(tuple(k for k, _ in missing)):
            await _build(session, cache, missing, found, banks, period, timeout_ms)
    return [found[k] for k in keys]


async def _build(
    session: AsyncSession,
    cache: PublishedCache,
    missing: list[tuple[Key, tuple[str, Options]]],
    found: dict[Key, Report],
    banks: list[TimeBank],
    period: Period,
    timeout_ms: int,
) -> None:
    for k, _ in missing:  # built meanwhile by a request this one waited for
        if (ready := cache.items.get(k)) is not None:
            found[k] = ready
    missing = [(k, w) for k, w in missing if k not in found]
    if missing:
        cache.builds += 1
        built, threshold = await run.build_many(
            session,
            [w for _, w in missing],
            banks,
            period,
            timeout_ms=timeout_ms,
            published=True,
        )
        for (k, (name, _)), b in zip(missing, built, strict=True):
            report = Report(run.meta_of(name, banks, period, threshold, published=True), b)
            cache.put(k, report)
            found[k] = report
