"""Disclosure control: primary and secondary suppression of report figures.

A **cell** is a group of figures about one population of people (members; organisations
are not people): a category's exchanges, minutes and hours, or a bank's median hours. A
cell over fewer than ``k`` people, but more than none, is suppressed whole (primary).

The figures of a response are tied by linear relations, and every relation in a report is a
**chain**: atoms a₁…aₙ (cells) and prefix sums Cᵢ = a₁+…+aᵢ, some of them published, Cₙ
being the total. "Rows sum to a total" is a chain whose only published prefix is Cₙ;
cumulative hours are a chain whose every prefix is published; the activity report publishes
only prefix sums (members inactive for 12, 6, 3 months) over hidden atoms. Between two
consecutive known prefixes Cₚ and C_q the sum a_{p+1}+…+a_q is known, so secondary
suppression keeps, for every such block:

* no single unknown atom that is a suppressed figure (it would be the known sum minus the
  rest) and no unknown prefix that is the sum of known atoms;
* the unknown atoms, taken together, over none or at least ``k`` people — otherwise their
  sum, which can be worked out, would itself be a figure over too few people. Where rows can
  share people (one member in several categories) a lower bound of that union is used, so
  the rule errs towards suppressing more.

Complements are chosen smallest first (fewest people, then smallest figure), so the least
information is withheld, and never among zero figures (a reader could guess a zero): when a
block has no non-zero figure left to suppress, a prefix (or the total) is suppressed and the
block merges with its neighbour. Repeats until nothing changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Cell:
    """Figures over one population. ``published=False``: an atom that is never shown but
    can be worked out from what is; ``available=False``: not yet observable (null, but not
    suppressed)."""

    figures: dict[str, Any]
    people: int
    size: int = 0  # magnitude (minutes or a count): zero cells make poor complements
    suppressed: bool = False
    published: bool = True
    available: bool = True

    @property
    def known(self) -> bool:
        return self.published and self.available and not self.suppressed


@dataclass(eq=False)
class Chain:
    atoms: list[Cell]
    prefixes: list[Cell | None]  # prefixes[i] publishes a₁+…+a_{i+1}; None: not published
    disjoint: bool  # atoms never share people (a member has one locality), so people add up

    @classmethod
    def total(cls, atoms: list[Cell], total: Cell, *, disjoint: bool) -> Chain:
        return cls(list(atoms), [None] * (len(atoms) - 1) + [total], disjoint)

    @classmethod
    def equal(cls, a: Cell, b: Cell) -> Chain:
        """Two cells that publish the same value: suppressed together."""
        return cls([a], [b], True)

    def __post_init__(self) -> None:
        assert len(self.atoms) == len(self.prefixes) >= 1


@dataclass
class Disclosure:
    """``by_population``: published figures (cell-key perturbed), where a cell's ``people``
    is its population — who could be in it — and a cell under ``threshold`` people,
    none included, is withheld; no secondary suppression (perturbation does that work)."""

    threshold: int
    by_population: bool = False
    cells: list[Cell] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)

    def cell(self, people: int, size: int = 0, **figures: Any) -> Cell:
        c = Cell(dict(figures), people, size)
        self.cells.append(c)
        return c

    def hidden(self, people: int) -> Cell:
        c = Cell({}, people, people, published=False)
        self.cells.append(c)
        return c

    def relate(self, chain: Chain) -> None:
        self.chains.append(chain)

    def apply(self) -> None:
        k = self.threshold
        if self.by_population:
            for c in self.cells:
                c.suppressed = c.published and c.available and c.people < k
            return
        for c in self.cells:
            if c.published and c.available and 0 < c.people < k:
                c.suppressed = True
        while any(_repair(chain, k) for chain in self.chains):
            pass


def _best(cells: Iterable[Cell]) -> Cell:
    """The complement that withholds least: some people but fewest, then smallest figure."""
    return min(cells, key=lambda c: (c.people == 0, c.size == 0, c.people, c.size))


def _prefix_people(chain: Chain, i: int) -> int:
    if i == 0:
        return 0
    cell = chain.prefixes[i - 1]
    assert cell is not None
    return cell.people


def _repair(chain: Chain, k: int) -> bool:
    """Find one way a suppressed figure of ``chain`` could be worked out, suppress one more
    cell to close it, and say so; False when the chain is safe."""
    atoms, prefixes, n = chain.atoms, chain.prefixes, len(chain.atoms)
    known = [0] + [i + 1 for i, c in enumerate(prefixes) if c is not None and c.known]
    bounds: list[tuple[int, int | None]] = list(itertools.pairwise(known))
    if known[-1] < n:
        bounds.append((known[-1], None))
    for p, q in bounds:
        end = n if q is None else q
        for i in range(p + 1, end + 1):
            cell = prefixes[i - 1]
            if cell is None or not (cell.published and cell.available and cell.suppressed):
                continue
            left = atoms[p:i]
            if all(a.known for a in left):
                _best(left).suppressed = True
                return True
            right = atoms[i:end]
            if q is not None and right and all(a.known for a in right):
                _best(right).suppressed = True
                return True
        if q is None:
            continue
        block = atoms[p:q]
        unknown = [a for a in block if not a.known]
        if not unknown:
            continue
        if chain.disjoint:
            people = sum(a.people for a in unknown)
        else:
            shown = sum(a.people for a in block if a.known)
            spread = _prefix_people(chain, q) - _prefix_people(chain, p) - shown
            people = max(max(a.people for a in unknown), spread)
        lone = len(unknown) == 1 and unknown[0].published and unknown[0].suppressed
        if not (0 < people < k or lone):
            continue
        strong = [a for a in block if a.known and a.size > 0]
        if strong:
            _best(strong).suppressed = True
        elif p > 0:
            _suppress(prefixes[p - 1])
        elif q < n:
            _suppress(prefixes[q - 1])
        else:
            _suppress(prefixes[n - 1])
        return True
    return False


def _suppress(cell: Cell | None) -> None:
    assert cell is not None
    cell.suppressed = True
