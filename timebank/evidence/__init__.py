"""Evidence that the ledger was not changed behind the service's back: a hash chain per bank
over the canonical facts of its exchanges, RFC 6962 Merkle tree heads over that chain signed
as notes (checkpoints), inclusion and consistency proofs, and the verifier. See
docs/evidence.md."""
