"""Test helpers: an in-memory consortium (keys, genesis) and a certifier for blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consortia.crypto import KeyPair, Suite, get_suite
from consortia.execution.apply import Proposal, propose_block
from consortia.execution.consortium import DEFAULT_ACCOUNTS, DEFAULT_GENESIS_TIME_MS, DEFAULT_ORGS
from consortia.execution.genesis import Genesis, GenesisAccount, GenesisValidator, genesis_state
from consortia.execution.state import ChainState
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    CommitSig,
    Transaction,
    Vote,
    VoteType,
    sign_transaction,
    sign_vote,
)

CHAIN_ID = "test-chain"


@dataclass
class Consortium:
    suite: Suite
    genesis: Genesis
    validators: list[KeyPair]
    accounts: dict[str, KeyPair]
    nonces: dict[bytes, int]

    def addr(self, key: KeyPair | str) -> bytes:
        kp = self.accounts[key] if isinstance(key, str) else key
        return self.suite.address(kp.public_key)

    def tx(
        self,
        who: KeyPair | str,
        module: str,
        method: str,
        args: dict[str, Any],
        *,
        sender: bytes | None = None,
        nonce: int | None = None,
        chain_id: str = CHAIN_ID,
    ) -> Transaction:
        kp = self.accounts[who] if isinstance(who, str) else who
        addr = sender if sender is not None else self.suite.address(kp.public_key)
        n = self.nonces.get(addr, 0) if nonce is None else nonce
        if nonce is None:
            self.nonces[addr] = n + 1
        return sign_transaction(
            self.suite,
            kp,
            chain_id=chain_id,
            nonce=n,
            module=module,
            method=method,
            args=args,
            sender=addr,
        )

    def certify(
        self, block: Block, signers: list[KeyPair] | None = None, time_ms: int | None = None
    ) -> CommitCertificate:
        block_hash = block.hash(self.suite)
        t = time_ms if time_ms is not None else block.header.time_ms + 1000
        sigs = []
        for kp in signers if signers is not None else self.validators:
            vote = Vote(
                CHAIN_ID,
                VoteType.PRECOMMIT,
                block.header.height,
                0,
                block_hash,
                t,
                self.suite.address(kp.public_key),
                b"",
            )
            signed = sign_vote(self.suite, kp, vote)
            sigs.append(CommitSig(signed.validator, signed.time_ms, signed.signature))
        sigs.sort(key=lambda s: s.validator)
        return CommitCertificate(CHAIN_ID, block.header.height, 0, block_hash, tuple(sigs))


def make_consortium(suite_name: str = "intl", validators: int = 4) -> Consortium:
    suite = get_suite(suite_name)
    vkeys = [suite.generate_keypair() for _ in range(validators)]
    akeys = {spec.name: suite.generate_keypair() for spec in DEFAULT_ACCOUNTS}
    genesis = Genesis(
        chain_id=CHAIN_ID,
        suite=suite_name,
        tier="business",
        genesis_time_ms=DEFAULT_GENESIS_TIME_MS,
        orgs=DEFAULT_ORGS,
        accounts=tuple(
            GenesisAccount(spec.name, akeys[spec.name].public_key, spec.org_id, spec.roles)
            for spec in DEFAULT_ACCOUNTS
        ),
        validators=tuple(GenesisValidator(f"v{i}", k.public_key, 10) for i, k in enumerate(vkeys)),
        params={},
    )
    return Consortium(suite, genesis, vkeys, akeys, {})


class Driver:
    """Advances a ChainState block by block, certifying each with all validators."""

    def __init__(self, c: Consortium) -> None:
        self.c = c
        self.state: ChainState = genesis_state(c.genesis)
        self.last_cert: CommitCertificate | None = None

    def propose(self, txs: list[Transaction]) -> Proposal:
        proposer = self.state.validators.validators[0].address
        return propose_block(self.state, txs, proposer=proposer, last_commit=self.last_cert)

    def commit(self, txs: list[Transaction]) -> Proposal:
        p = self.propose(txs)
        self.state = p.state
        self.last_cert = self.c.certify(p.block)
        return p
