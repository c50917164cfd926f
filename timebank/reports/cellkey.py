"""The cell-key method (SPEC §3.7 "Disclosure control", §7.4): how a published figure is
made from a true one. Pure arithmetic; no database, no HTTP.

Every member, organisation and exchange carries a permanent random 32-bit **record key**.
A **cell** is a measure over a set of records (the members who took part in a category,
the exchanges of a month); its **cell key** is the sum of its records' keys mod 2³². It
does not depend on the report, the row label, the format or the time of asking, so the
same cell always publishes the same value and asking again reveals nothing new. Two cells
that differ by one record have unrelated cell keys, so differencing them gives noise, not
the record.

**Counts** (people, organisations, exchanges) get a perturbation ``d`` read from a fixed
table: its row is the true count (counts from :data:`SMALL` on share one row), its column
the cell key. ``d`` lies in −4…+4; a zero stays zero; a positive count never publishes 0
or less; a count under :data:`SMALL` never publishes its true value; the mean of ``d`` is
zero for every count from 2 on (a count of 1 can only move up, to 2…5).

**Magnitudes** (minutes) get noise drawn from the cell key over a window whose half-width
has a floor: ``w = max(MINUTES_FLOOR, ⌊total × MINUTES_SHARE⌋)`` — four hours for every
cell under eighty hours, 5 % of the total above. The published value is uniform over the
``2w + 1`` whole minutes ``total − w … total + w`` (the window starts at 1 minute instead
when that would reach zero, keeping its width), leaving out only the true value. People
record whole or half hours, so a window of four hours each way holds about eight candidate
hours, sixteen half hours, thirty-two quarters: rounding the published minutes to 60, 30
or 15 gives the true value about one time in eight, sixteen, thirty-two, and an attacker who
knows this method and that values lie on such a grid has as many equally likely candidates
(the windows have the same width for every total, so none is favoured). The noise does not
depend on the contributions, so they cannot be read back from it. A large cell (eighty hours
or more) is off by at most 5 %; a cell of four hours or less publishes somewhere in 1 … 481
minutes whatever its size — biased upwards by design, since any noise whose mean follows
the true value near zero would tell the small values apart. A zero stays zero and a
positive figure never publishes its true value or less than one minute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from contextvars import ContextVar

METHOD = "cellkey-2"
MODULUS = 2**32
MAX_COUNT_CHANGE = 4
SMALL = 10  # counts below this never publish their true value
MINUTES_FLOOR = 240  # half-width of the noise window for cells under 80 hours
MINUTES_SHARE = 0.05  # … and its share of the total for larger cells


# Off only in the parity test (tests/test_report_parity.py), which checks that published
# figures with no noise are the exact figures: each report is defined once.
NOISE: ContextVar[bool] = ContextVar("cellkey_noise", default=True)


def cell_key(keys: Iterable[int]) -> int:
    """Σ record keys mod 2³² (a set of records: each record once)."""
    return sum(keys) % MODULUS


def _weights(n: int) -> dict[int, float]:
    """The distribution of ``d`` for a true count ``n`` ≥ 1 (before scaling to 2³²).

    Triangular weights 5 − |d| on −4…+4; for small counts 0 is left out, and any ``d``
    that would publish ≤ 0 is left out, the negative side then scaled up so the mean stays
    zero (possible for every ``n`` ≥ 2)."""
    small = n < SMALL
    w = {
        d: float(MAX_COUNT_CHANGE + 1 - abs(d))
        for d in range(-MAX_COUNT_CHANGE, MAX_COUNT_CHANGE + 1)
        if n + d >= 1 and not (small and d == 0)
    }
    up = sum(d * x for d, x in w.items() if d > 0)
    down = -sum(d * x for d, x in w.items() if d < 0)
    if down and up != down:
        w = {d: x * up / down if d < 0 else x for d, x in w.items()}
    return w


def _table_row(n: int) -> list[tuple[int, int]]:
    """(upper bound in cell-key units, d): the column of the table the cell key falls in."""
    w = _weights(n)
    total = sum(w.values())
    out, running = [], 0.0
    for d in sorted(w):
        running += w[d]
        out.append((round(running / total * MODULUS), d))
    out[-1] = (MODULUS, out[-1][1])
    return out


# The perturbation table, fixed for this method version: rows 1 … SMALL (SMALL and above
# share the last row).
TABLE: dict[int, list[tuple[int, int]]] = {n: _table_row(n) for n in range(1, SMALL + 1)}


def count_change(n: int, key: int) -> int:
    """``d`` for a true count ``n`` and cell key ``key``."""
    if n <= 0:
        return 0
    for bound, d in TABLE[min(n, SMALL)]:
        if key < bound:
            return d
    raise AssertionError("a cell key is below 2³²")


def publish_count(n: int, key: int) -> int:
    if not NOISE.get():
        return n
    return n + count_change(n, key)


def _uniform(key: int, purpose: bytes) -> float:
    """A number in [0, 1) fixed by the cell key, independent of the count table's column."""
    digest = hashlib.blake2b(key.to_bytes(4, "big"), digest_size=8, person=purpose).digest()
    return int.from_bytes(digest, "big") / 2**64


def minutes_window(total: int) -> tuple[int, int]:
    """(lowest, highest) minutes a positive ``total`` can publish: 2w + 1 values around it,
    w = max(MINUTES_FLOOR, ⌊MINUTES_SHARE × total⌋), moved up to start at 1 where needed."""
    w = max(MINUTES_FLOOR, int(total * MINUTES_SHARE))
    low = max(1, total - w)
    return low, low + 2 * w


def publish_minutes(total: int, key: int) -> int:
    """Published minutes of a cell: uniform over its window, never ``total`` itself."""
    if total <= 0:
        return 0
    if not NOISE.get():
        return total
    low, high = minutes_window(total)
    value = low + int(_uniform(key, b"cellkey2-minute") * (high - low))
    return value + 1 if value >= total else value


def clip_share(part: int | None, whole: int | None) -> float | None:
    """A share of published figures, clipped to [0, 1] (they are not additive)."""
    if part is None or not whole:
        return None
    return round(min(1.0, max(0.0, part / whole)), 4)
