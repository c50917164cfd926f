"""Checkpoints and proofs as the API shows them. Hashes are standard base64."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_NOTE = (
    "timebank.local/01937a4e-0000-7000-8000-000000000001\n"
    "3\n"
    "h0XNqGXXDQzNZzFrJG5q0qY0e3gD+3Ge6wXcEZ4VPtc=\n"
    "time 2026-12-07T16:40:00Z\n"
    "chain Vd0fHK3Qq8e5JbQm5dAHq1C3E3qUPh7PzWg2nUxuLMg=\n"
    "\n"
    "\u2014 demo-2026 Bk3G2aVtYq6v0X4v5d1q8Ql6o0Jr3WcE6w4bq9m3m7Ax0zPp2f1G8kqD3W0p6nX5Vq1c8yT2r7Lj"
    "4u9Zs0Ee1K2c3d4E5f6G7h8=\n"
)
EXAMPLE_CHECKPOINT: dict[str, Any] = {
    "origin": "timebank.local/01937a4e-0000-7000-8000-000000000001",
    "tree_size": 3,
    "root_hash": "h0XNqGXXDQzNZzFrJG5q0qY0e3gD+3Ge6wXcEZ4VPtc=",
    "chain_head": "Vd0fHK3Qq8e5JbQm5dAHq1C3E3qUPh7PzWg2nUxuLMg=",
    "time": "2026-12-07T16:40:00Z",
    "key_name": "demo-2026",
    "verifier_key": "demo-2026+1c3d5e7f+AbQ1aXgT1r3D6o5pGq2XWcV0m4y8n2ZkLh7Rt9uYs3Ee",
    "note": EXAMPLE_NOTE,
}


class CheckpointOut(BaseModel):
    """A signed tree head of the bank's chain. ``note`` is the signed text exactly as signed
    (C2SP signed note); the other fields repeat what it says."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_CHECKPOINT]})

    origin: str
    tree_size: int
    root_hash: str
    chain_head: str
    time: datetime
    key_name: str
    verifier_key: str | None = Field(
        description="The signer's verifier key, as this service knows it. Check it against "
        "the one the bank publishes: a key taken from the same answer proves nothing."
    )
    note: str


class ProofEntry(BaseModel):
    leaf_index: int = Field(description="0-based: the chain entry's seq − 1")
    status: str
    leaf: str = Field(
        description="The entry's canonical facts; its leaf hash is SHA-256(0x00 ‖ these bytes)"
    )
    leaf_hash: str
    inclusion_proof: list[str] = Field(description="RFC 9162 audit path, base64")


class ProofOut(BaseModel):
    """An exchange's chain entries (a proposal has two: pending, then its decision) with
    their inclusion proofs against ``checkpoint``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "exchange_id": "01937a52-1c4d-7e8f-9a0b-1c2d3e4f5a6b",
                    "checkpoint": EXAMPLE_CHECKPOINT,
                    "entries": [
                        {
                            "leaf_index": 1,
                            "status": "recorded",
                            "leaf": '{"bank":"01937a4e-0000-7000-8000-000000000001",'
                            '"category":null,"exchange":"01937a52-1c4d-7e8f-9a0b-1c2d3e4f5a6b",'
                            '"kind":"p2p","minutes":60,"occurred_on":"2026-12-01","postings":[],'
                            '"provider":null,"recipient":null,"reverses":null,"seq":2,'
                            '"status":"recorded","v":1}',
                            "leaf_hash": "q6bJ1b8m4ZfC7m8dS2hY0a9FzYq1qj8uY1C8mQm2Vg0=",
                            "inclusion_proof": [
                                "3aWsZr1lWq7oD8Gk0yF2nq3y1h6m8b0Xc5r2p7s9t1U=",
                                "1fJm0qZl7bX6Wc3nQ2r8s5t4u1v0w9x8y7z6A5B4C3D=",
                            ],
                        }
                    ],
                }
            ]
        }
    )

    exchange_id: uuid.UUID
    checkpoint: CheckpointOut
    entries: list[ProofEntry]


class ConsistencyOut(BaseModel):
    """RFC 9162 consistency proof: the tree of ``from_size`` entries is a prefix of the tree
    of ``to_size`` (both signed checkpoints)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "from_size": 2,
                    "to_size": 3,
                    "from_root": "3aWsZr1lWq7oD8Gk0yF2nq3y1h6m8b0Xc5r2p7s9t1U=",
                    "to_root": "h0XNqGXXDQzNZzFrJG5q0qY0e3gD+3Ge6wXcEZ4VPtc=",
                    "proof": ["1fJm0qZl7bX6Wc3nQ2r8s5t4u1v0w9x8y7z6A5B4C3D="],
                }
            ]
        }
    )

    from_size: int
    to_size: int
    from_root: str
    to_root: str
    proof: list[str]
