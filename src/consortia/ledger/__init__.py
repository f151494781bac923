"""Ledger layer: wire types (``types``), RFC 6962 Merkle trees (``merkle``) and the authenticated
state tree with membership proofs (``state_tree``). Imports only ``codec`` and ``crypto``."""
