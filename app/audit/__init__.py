"""The tamper-evident audit ledger: a hash chain of events, a Merkle tree over it, signed heads.

`chain` encodes events canonically and links them; `merkle` hashes the chain's event hashes
into an RFC 6962 tree and makes and checks inclusion and consistency proofs; `heads` signs
tree heads with Ed25519. The byte formats are in `docs/audit.md`.
"""
