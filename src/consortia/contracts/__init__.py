"""Smart contracts: a deterministic EVM over consortia's authenticated state (first slice).

``evm.execute`` runs one deployment or call; ``keys`` documents where contract accounts, code and
storage live in the state tree; ``toolchain`` compiles Vyper and Solidity for tests and tools.
Not yet wired into ``apply_block`` (see docs/contracts.md).
"""
