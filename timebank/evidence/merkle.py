"""RFC 6962 / RFC 9162 Merkle trees, written out by hand: leaf and node hashes, tree heads,
inclusion and consistency proofs, and their verification. Pure functions.

A tree is read through ``node(level, index)``: the hash of the *perfect* subtree of
``2**level`` leaves starting at leaf ``index * 2**level`` (level 0: the leaf hashes). Every
hash an RFC 6962 proof needs is a perfect subtree or is built from perfect subtrees, so a
store of perfect subtrees (``evidence_nodes``) answers any proof in O(log n) look-ups;
:func:`needed` finds which, before they are read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

Node = Callable[[int, int], bytes]
ZERO = bytes(32)


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree(node: Node, start: int, size: int) -> bytes:
    """MTH(D[start : start + size]) for a range the RFC's recursion produces."""
    if size & (size - 1) == 0 and start % size == 0:
        return node(size.bit_length() - 1, start // size)
    k = split(size)
    return node_hash(subtree(node, start, k), subtree(node, start + k, size - k))


def root(node: Node, size: int) -> bytes:
    """The tree head of the first ``size`` leaves; the empty tree's is SHA-256("")."""
    return hashlib.sha256(b"").digest() if size == 0 else subtree(node, 0, size)


def inclusion_proof(node: Node, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")
    path: list[bytes] = []
    start = 0
    while size > 1:
        k = split(size)
        if index < k:
            path.append(subtree(node, start + k, size - k))
            size = k
        else:
            path.append(subtree(node, start, k))
            start, index, size = start + k, index - k, size - k
    return path[::-1]


def consistency_proof(node: Node, old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1); empty when ``old`` is 0 or ``new``."""
    if not 0 <= old <= new:
        raise ValueError("the old size must be between 0 and the new size")
    if old in (0, new):
        return []
    out: list[bytes] = []
    start, m, n, whole = 0, old, new, True
    while m != n:
        k = split(n)
        if m <= k:
            out.append(subtree(node, start + k, n - k))
            n = k
        else:
            out.append(subtree(node, start, k))
            start, m, n, whole = start + k, m - k, n - k, False
    if not whole:
        out.append(subtree(node, start, m))
    return out[::-1]


def needed(fn: Callable[[Node], object]) -> set[tuple[int, int]]:
    """The perfect subtrees ``fn`` reads (which do not depend on their values)."""
    seen: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        seen.add((level, index))
        return ZERO

    fn(record)
    return seen


def inclusion_nodes(index: int, size: int) -> set[tuple[int, int]]:
    return needed(lambda node: inclusion_proof(node, index, size))


def consistency_nodes(old: int, new: int) -> set[tuple[int, int]]:
    return needed(lambda node: consistency_proof(node, old, new))


def reader(store: dict[tuple[int, int], bytes]) -> Node:
    """``node`` over a dict of (level, index) → hash (KeyError for one not there)."""
    return lambda level, index: store[level, index]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2); ValueError if malformed."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree of ``old`` leaves is a prefix of the
    tree of ``new``?"""
    if not 0 <= old <= new:
        return False
    if old == new:
        return old_root == new_root and not proof
    if old == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


class Frontier:
    """The right edge of a growing tree: the perfect subtrees covering its leaves, largest
    first. Appending a leaf yields the perfect subtrees it completes, to be stored."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        self.size = size
        levels = [level for level, _ in self.keys(size)]
        self.stack: list[tuple[int, bytes]] = list(zip(levels, hashes, strict=True))

    @staticmethod
    def keys(size: int) -> list[tuple[int, int]]:
        """The (level, index) of the perfect subtrees covering ``size`` leaves, largest first."""
        out, start = [], 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; the (level, index, hash) of every perfect subtree it completes
        (the leaf's own first)."""
        made = [(0, self.size, leaf)]
        self.stack.append((0, leaf))
        self.size += 1
        while len(self.stack) > 1 and self.stack[-1][0] == self.stack[-2][0]:
            (level, right), (_, left) = self.stack.pop(), self.stack.pop()
            h = node_hash(left, right)
            self.stack.append((level + 1, h))
            made.append((level + 1, (self.size >> (level + 1)) - 1, h))
        return made

    def root(self) -> bytes:
        if not self.stack:
            return hashlib.sha256(b"").digest()
        r = self.stack[-1][1]
        for _, h in reversed(self.stack[:-1]):
            r = node_hash(h, r)
        return r


def tree_of(leaves: Iterable[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of the leaf hashes given, by (level, index)."""
    out: dict[tuple[int, int], bytes] = {}
    f = Frontier()
    for leaf in leaves:
        for level, index, h in f.append(leaf):
            out[level, index] = h
    return out
