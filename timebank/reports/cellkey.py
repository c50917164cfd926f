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

**Magnitudes** (minutes) are perturbed in proportion to their two largest contributions,
per party (the ABS method): published = true + f × (c₁ + c₂), c₁ ≥ c₂ the two largest
parties' minutes in the cell, f taken from the cell key with 5 % ≤ |f| ≤ 15 % and either
sign with equal chance. A cell of one person's hours is therefore always 5–15 % off, and a
large cell is off by at most 15 % of its two largest contributions — a small fraction of a
total spread over many people. A zero stays zero and a positive figure never publishes its
true value or less than one minute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

METHOD = "cellkey-1"
MODULUS = 2**32
MAX_COUNT_CHANGE = 4
SMALL = 10  # counts below this never publish their true value
MAGNITUDE_MIN, MAGNITUDE_MAX = 0.05, 0.15


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
    return n + count_change(n, key)


def _uniform(key: int, purpose: bytes) -> float:
    """A number in [0, 1) fixed by the cell key, independent of the count table's column."""
    digest = hashlib.blake2b(key.to_bytes(4, "big"), digest_size=8, person=purpose).digest()
    return int.from_bytes(digest, "big") / 2**64


def magnitude_factor(key: int) -> float:
    u = _uniform(key, b"cellkey1-minute")
    sign = 1.0 if u < 0.5 else -1.0
    fraction = (u * 2) % 1.0
    return sign * (MAGNITUDE_MIN + (MAGNITUDE_MAX - MAGNITUDE_MIN) * fraction)


def publish_minutes(total: int, contributions: Iterable[int], key: int) -> int:
    """Published minutes of a cell: ``total`` perturbed by its two largest contributions."""
    if total <= 0:
        return 0
    top = sorted((c for c in contributions if c > 0), reverse=True)[:2]
    f = magnitude_factor(key)
    value = round(total + f * sum(top))
    if value == total:  # a tiny cell: still never its true value
        value = total + (1 if f > 0 else -1)
    return max(1, value)


def clip_share(part: int | None, whole: int | None) -> float | None:
    """A share of published figures, clipped to [0, 1] (they are not additive)."""
    if part is None or not whole:
        return None
    return round(min(1.0, max(0.0, part / whole)), 4)
