"""Checkpoints as signed notes (the C2SP signed-note and tlog-checkpoint formats), Ed25519.

A checkpoint's text is ``<origin>\\n<tree size>\\n<base64 root>\\n`` followed by extension
lines (``time …``, ``chain …``); the note is that text, a blank line, and one line per
signature: ``— <key name> <base64(key hash ‖ signature)>``. The key hash is the first four
bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key); the signature is over the text.

Keys are written as the Go ``note`` package writes them: a signer
``PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 ‖ 32-byte seed)>`` and its verifier
``<name>+<hex key hash>+<base64(0x01 ‖ 32-byte public key)>``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = b"\x01"
DASH = "\u2014"
NAME = re.compile(r"^[^\s+]+$")


class SigningKeyError(ValueError):
    """A key string that is not a signer or verifier key of this form."""


def key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    name: str
    key: Ed25519PrivateKey

    @property
    def public(self) -> bytes:
        return _public_bytes(self.key)

    @property
    def hash(self) -> bytes:
        return key_hash(self.name, self.public)

    @property
    def verifier(self) -> str:
        return f"{self.name}+{self.hash.hex()}+{base64.b64encode(ED25519 + self.public).decode()}"

    def encode(self) -> str:
        seed = self.key.private_bytes_raw()
        return (
            f"PRIVATE+KEY+{self.name}+{self.hash.hex()}+{base64.b64encode(ED25519 + seed).decode()}"
        )

    def sign(self, text: str) -> str:
        """The signed note of ``text`` (which ends with a newline)."""
        sig = self.key.sign(text.encode())
        return f"{text}\n{DASH} {self.name} {base64.b64encode(self.hash + sig).decode()}\n"


def new_signer(name: str) -> Signer:
    if not NAME.match(name):
        raise SigningKeyError("a key name has no spaces or '+'")
    return Signer(name, Ed25519PrivateKey.generate())


def parse_signer(text: str) -> Signer:
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise SigningKeyError("not a signing key (PRIVATE+KEY+<name>+<hash>+<key>)")
    try:
        raw = base64.b64decode(parts[4], validate=True)
    except ValueError as exc:
        raise SigningKeyError("the key is not base64") from exc
    if len(raw) != 33 or raw[:1] != ED25519:
        raise SigningKeyError("not an Ed25519 key")
    signer = Signer(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if signer.hash.hex() != parts[3]:
        raise SigningKeyError("the key hash does not match the key")
    return signer


@dataclass(frozen=True)
class Verifier:
    name: str
    hash: bytes
    key: Ed25519PublicKey

    @property
    def text(self) -> str:
        raw = self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.hash.hex()}+{base64.b64encode(ED25519 + raw).decode()}"


def parse_verifier(text: str) -> Verifier:
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise SigningKeyError("not a verifier key (<name>+<hash>+<key>)")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except ValueError as exc:
        raise SigningKeyError("the key is not base64") from exc
    if len(raw) != 33 or raw[:1] != ED25519:
        raise SigningKeyError("not an Ed25519 key")
    if key_hash(parts[0], raw[1:]).hex() != parts[1]:
        raise SigningKeyError("the key hash does not match the key")
    return Verifier(parts[0], bytes.fromhex(parts[1]), Ed25519PublicKey.from_public_bytes(raw[1:]))


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: datetime
    chain: bytes

    def text(self) -> str:
        stamp = self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
            f"time {stamp}\nchain {base64.b64encode(self.chain).decode()}\n"
        )


class NoteError(ValueError):
    """A note that does not parse, or whose signature does not hold."""


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """The signed text and its (name, key hash, signature) lines."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note")
    text, sigs = note[: cut + 1], []
    for line in note[cut + 2 :].splitlines():
        m = re.fullmatch(f"{DASH} (\\S+) (\\S+)", line)
        if m is None:
            raise NoteError("a malformed signature line")
        raw = base64.b64decode(m.group(2))
        if len(raw) != 68:
            raise NoteError("a signature of the wrong length")
        sigs.append((m.group(1), raw[:4], raw[4:]))
    return text, sigs


def open_note(note: str, verifiers: list[Verifier]) -> tuple[Checkpoint, Verifier]:
    """The checkpoint in ``note`` and the trusted key that signed it; NoteError otherwise."""
    text, sigs = split_note(note)
    signed_by = None
    for name, khash, sig in sigs:
        for v in verifiers:
            if v.name == name and v.hash == khash:
                try:
                    v.key.verify(sig, text.encode())
                except InvalidSignature as exc:
                    raise NoteError(f"the signature of key {name} does not hold") from exc
                signed_by = v
    if signed_by is None:
        raise NoteError("signed by no trusted key")
    return parse_checkpoint(text), signed_by


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    try:
        origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
        ext = dict(line.split(" ", 1) for line in lines[3:] if line)
        when = datetime.strptime(ext["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        chain = base64.b64decode(ext["chain"], validate=True)
    except (ValueError, IndexError, KeyError) as exc:
        raise NoteError("not a checkpoint") from exc
    return Checkpoint(origin, size, root, when, chain)
