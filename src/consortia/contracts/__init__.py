"""Smart contracts: a deterministic EVM over consortia's authenticated state.

``evm.execute`` runs one deployment, call or read-only query (py-evm, Cancun, gas-bounded, no
fees); ``overlay`` is the journaled write buffer it runs against; ``keys`` documents where
contract accounts, code and storage live in the state tree; ``precompiles`` expose the native
modules (registry, e-CNY, securities) to contracts under the modules' own rules; ``abi`` encodes
calls and decodes results, reverts and events; ``toolchain`` compiles Vyper and Solidity. The
``contracts`` native module (``consortia.modules.contracts``) runs them inside ``apply_block``.
See docs/contracts.md.
"""
