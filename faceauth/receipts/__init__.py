"""Signed decision receipts: a compact JWS (EdDSA, Ed25519) of what was decided, verifiable offline."""
