"""Test helpers for the two-tier architecture: a supervision-tier consortium (the regulator and a
securities association run its validators; a relayer account submits business headers), business
headers turned into what a light client receives, and the transactions of the supervision
modules (anchoring, reports, orders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consortia import codec
from consortia.crypto import KeyPair, Suite, get_suite
from consortia.execution.consortium import DEFAULT_GENESIS_TIME_MS
from consortia.execution.genesis import Genesis, GenesisAccount, GenesisOrg, GenesisValidator
from consortia.ledger.light import CertifiedHeader
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    CommitSig,
    Header,
    Receipt,
    Transaction,
    TxStatus,
    Vote,
    VoteType,
    sign_vote,
)
from tests.chainkit import Consortium, Driver, make_consortium

SUPERVISION_CHAIN_ID = "supervision-test"

SUPERVISION_ORGS: tuple[GenesisOrg, ...] = (
    GenesisOrg("csrc", "Securities Regulator", "regulator"),
    GenesisOrg("sac", "Securities Association", "association"),
)
# (name, org, roles): the regulator, the association's admin, the relayer, and a plain member
# account of the regulator's organization (not a regulator: it may not register or order).
SUPERVISION_ACCOUNTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("regulator", "csrc", ("regulator",)),
    ("sac-admin", "sac", ("admin", "org_admin")),
    ("relayer", "sac", ("relayer",)),
    ("clerk", "csrc", ("investor",)),
)


@dataclass
class TierConsortium(Consortium):
    """A ``Consortium`` whose transactions and certificates name its own genesis chain id."""

    def tx(
        self,
        who: KeyPair | str,
        module: str,
        method: str,
        args: dict[str, Any],
        *,
        sender: bytes | None = None,
        nonce: int | None = None,
        chain_id: str | None = None,
    ) -> Transaction:
        return super().tx(
            who,
            module,
            method,
            args,
            sender=sender,
            nonce=nonce,
            chain_id=self.genesis.chain_id if chain_id is None else chain_id,
        )

    def certify(
        self, block: Block, signers: list[KeyPair] | None = None, time_ms: int | None = None
    ) -> CommitCertificate:
        keys = signers if signers is not None else self.validators
        return certify_header(self.suite, block.header, keys, time_ms)


def certify_header(
    suite: Suite, header: Header, signers: list[KeyPair], time_ms: int | None = None
) -> CommitCertificate:
    """A commit certificate for ``header`` signed by ``signers`` (whoever they are: forging one
    takes nothing more)."""
    block_hash = header.hash(suite)
    t = time_ms if time_ms is not None else header.time_ms + 1000
    sigs = []
    for kp in signers:
        vote = Vote(
            header.chain_id,
            VoteType.PRECOMMIT,
            header.height,
            0,
            block_hash,
            t,
            suite.address(kp.public_key),
            b"",
        )
        signed = sign_vote(suite, kp, vote)
        sigs.append(CommitSig(signed.validator, signed.time_ms, signed.signature))
    sigs.sort(key=lambda s: s.validator)
    return CommitCertificate(header.chain_id, header.height, 0, block_hash, tuple(sigs))


def make_supervision(
    suite_name: str = "intl", chain_id: str = SUPERVISION_CHAIN_ID
) -> TierConsortium:
    """A supervision-tier genesis: validators of the regulator (2) and the association (2)."""
    suite = get_suite(suite_name)
    vkeys = [suite.generate_keypair() for _ in range(4)]
    akeys = {name: suite.generate_keypair() for name, _, _ in SUPERVISION_ACCOUNTS}
    genesis = Genesis(
        chain_id=chain_id,
        suite=suite_name,
        tier="supervision",
        genesis_time_ms=DEFAULT_GENESIS_TIME_MS,
        orgs=SUPERVISION_ORGS,
        accounts=tuple(
            GenesisAccount(name, akeys[name].public_key, org, roles)
            for name, org, roles in SUPERVISION_ACCOUNTS
        ),
        validators=tuple(
            GenesisValidator(f"{'csrc' if i < 2 else 'sac'}-v{i}", k.public_key, 10)
            for i, k in enumerate(vkeys)
        ),
        params={},
    )
    return TierConsortium(suite, genesis, vkeys, akeys, {})


def commit(d: Driver, txs: list[Transaction]) -> list[Receipt]:
    """Commit one block of ``txs`` (all included) and return their receipts."""
    p = d.commit(txs)
    assert not p.rejected, p.rejected
    return list(p.receipts)


def commit_ok(d: Driver, txs: list[Transaction]) -> list[Receipt]:
    receipts = commit(d, txs)
    failed = [(r.code, r.message) for r in receipts if r.status != TxStatus.OK]
    assert not failed, failed
    return receipts


SUPERVISION_PREFIXES = (b"anchoring/", b"reports/", b"orders/")


def commit_fails(d: Driver, tx: Transaction, code: str) -> Receipt:
    """Commit ``tx`` alone; it must fail with ``code`` and write nothing of the supervision
    modules (only its sender's nonce advances)."""
    p = d.commit([tx])
    assert not p.rejected, p.rejected
    (receipt,) = p.receipts
    assert receipt.status == TxStatus.FAILED, receipt
    assert receipt.code == code, (receipt.code, receipt.message)
    touched = [k for k in p.writes if k.startswith(SUPERVISION_PREFIXES)]
    assert not touched, touched
    return receipt


def read(d: Driver, key: bytes, cls: type[Any]) -> Any:
    raw = d.state.tree.get(key)
    return None if raw is None else codec.decode_struct(cls, raw)


# ---------------------------------------------------------------------------------------------
# Business headers as a light client receives them


def follow(d: Driver, txs: list[Transaction] | None = None) -> CertifiedHeader:
    """Commit one business block; return its certified header (with the new validator set when
    the header announces one: the set its *parent* state had as next)."""
    announced = d.state.next_validators
    p = d.commit(txs or [])
    assert d.last_cert is not None
    h = p.block.header
    changed = h.next_validator_set_hash != h.validator_set_hash
    return CertifiedHeader(h, d.last_cert, announced if changed else None)


def register_chain_args(business: Consortium) -> dict[str, Any]:
    g = business.genesis
    return {
        "chain_id": g.chain_id,
        "suite": g.suite,
        "genesis_hash": g.hash(),
        "genesis_time_ms": g.genesis_time_ms,
        "validators": codec.to_cbor(g.validator_set()),
    }


def anchor_args(chain_id: str, items: list[CertifiedHeader]) -> dict[str, Any]:
    return {"chain_id": chain_id, "headers": [codec.to_cbor(i) for i in items]}


def register_tx(sup: Consortium, business: Consortium, who: str = "regulator") -> Transaction:
    return sup.tx(who, "anchoring", "register_chain", register_chain_args(business))


def anchor_tx(
    sup: Consortium, chain_id: str, items: list[CertifiedHeader], who: str = "relayer"
) -> Transaction:
    return sup.tx(who, "anchoring", "anchor", anchor_args(chain_id, items))


# ---------------------------------------------------------------------------------------------
# Both tiers together


@dataclass
class TwoTiers:
    sup: TierConsortium  # the supervision chain
    sd: Driver
    biz: Consortium  # a business chain (chainkit's "test-chain")
    bd: Driver

    @property
    def chain_id(self) -> str:
        return self.biz.genesis.chain_id


def two_tiers(
    business_suite: str = "intl", supervision_suite: str = "intl", *, register: bool = True
) -> TwoTiers:
    """A supervision chain and a business chain, the latter registered by the regulator."""
    sup = make_supervision(supervision_suite)
    biz = make_consortium(business_suite)
    t = TwoTiers(sup, Driver(sup), biz, Driver(biz))
    if register:
        commit_ok(t.sd, [register_tx(sup, biz)])
    return t


def anchor_through(t: TwoTiers, blocks: int) -> list[CertifiedHeader]:
    """Commit ``blocks`` business blocks and anchor them in one transaction."""
    items = [follow(t.bd) for _ in range(blocks)]
    commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, items)])
    return items
