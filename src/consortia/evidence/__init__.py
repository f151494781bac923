"""Offline evidence: bundles proving a transaction or a holding, anchored on the supervision chain
(``bundle``: the format and the pure verifier; ``export``: building bundles from node stores)."""
