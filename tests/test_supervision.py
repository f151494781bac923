"""The business chain's supervision module: a light client of the supervision chain, and orders
applied only with a proof that the supervision chain committed them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from consortia import codec
from consortia.ledger.light import CertifiedHeader
from consortia.ledger.types import Receipt, Transaction, TxStatus
from consortia.modules import supervision
from consortia.modules.enforcement import Freeze, freeze_key
from consortia.modules.governance import ParamValue, param_key
from consortia.modules.investors import SecuritiesAccount, account_key
from consortia.modules.orders import Order, order_key
from consortia.modules.registry import account_key as registry_account_key
from consortia.modules.securities import Security, security_key
from tests.chainkit import CHAIN_ID, Consortium, Driver, make_consortium
from tests.test_securities import balance, issue_tx, listed, world
from tests.tierkit import (
    TierConsortium,
    commit_ok,
    follow,
    make_supervision,
    read,
    register_chain_args,
    register_tx,
)

FAR = 2_000_000_000_000
OTHER_CHAIN = "other-business"


def order_args(order_id: str, kind: str, chain_id: str = CHAIN_ID, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": order_id,
        "chain_id": chain_id,
        "kind": kind,
        "freeze_id": "",
        "code": "",
        "account_id": "",
        "amount": 0,
        "expires_at_ms": 0,
        "to_account": "",
        "param_name": "",
        "param_value": 0,
        "reference": f"CSRC order {order_id}",
    }
    return {**base, **fields}


def trust_args(sup: Consortium) -> dict[str, Any]:
    return register_chain_args(sup)  # the same genesis facts: chain id, suite, hash, time, set


class World:
    """A business chain (``test-chain``, with listed EQ1 held by SA-A) and a supervision chain
    that registered it (and another business chain); every supervision header committed so far
    is kept as a light client receives it."""

    def __init__(self) -> None:
        self.c, self.d = world()
        listed(self.c, self.d, "EQ1")
        commit_ok(self.d, [issue_tx(self.c, "EQ1", "SA-A", 1000)])
        self.sup: TierConsortium = make_supervision()
        self.sd = Driver(self.sup)
        other = make_consortium()
        other = replace(other, genesis=replace(other.genesis, chain_id=OTHER_CHAIN))
        self.headers: list[CertifiedHeader] = []
        self.sup_commit([register_tx(self.sup, self.c), register_tx(self.sup, other)])

    def sup_commit(self, txs: list[Transaction]) -> int:
        """Commit a supervision block (all OK); its height."""
        item = follow(self.sd, txs)
        self.headers.append(item)
        return item.header.height

    def issue(self, order_id: str, kind: str, **fields: Any) -> tuple[Order, int]:
        tx = self.sup.tx("regulator", "orders", "issue_order", order_args(order_id, kind, **fields))
        p = self.sd.propose([tx])
        assert p.receipts[0].status == TxStatus.OK, p.receipts[0]
        height = self.sup_commit([tx])
        raw = self.sd.state.tree.get(order_key(order_id))
        assert raw is not None
        return codec.decode_struct(Order, raw), height

    def proof(self, order_id: str) -> bytes:
        """The order's state proof against the current supervision state root (the last
        committed header's)."""
        return self.sd.state.tree.prove(order_key(order_id)).to_bytes()

    def trust(self) -> None:
        commit_ok(self.d, [self.tx("regulator", "trust_supervision", trust_args(self.sup))])

    def tx(self, who: str, method: str, args: dict[str, Any]) -> Transaction:
        return self.c.tx(who, "supervision", method, args)

    def follow_tx(self, items: list[CertifiedHeader], who: str = "relayer") -> Transaction:
        return self.tx(who, "follow", {"headers": [codec.to_cbor(i) for i in items]})

    def apply_tx(
        self, order: Order, height: int, proof: bytes, who: str = "relayer"
    ) -> Transaction:
        args = {"order": codec.to_cbor(order), "height": height, "proof": proof}
        return self.tx(who, "apply_order", args)

    def fails(self, tx: Transaction, code: str) -> Receipt:
        """Commit ``tx`` alone: it fails with ``code`` and writes nothing but its nonce."""
        p = self.d.commit([tx])
        assert not p.rejected, p.rejected
        (receipt,) = p.receipts
        assert receipt.status == TxStatus.FAILED, receipt
        assert receipt.code == code, (receipt.code, receipt.message)
        assert set(p.writes) <= {registry_account_key(tx.sender)}, sorted(p.writes)
        return receipt


def client(w: World) -> supervision.SupervisionClient:
    found = read(w.d, supervision.CLIENT_KEY, supervision.SupervisionClient)
    assert found is not None
    return found


def test_trust_follow_and_apply_a_freeze_order() -> None:
    w = World()
    order, h = w.issue("ORD-1", "freeze", freeze_id="F-1", account_id="SA-A", expires_at_ms=FAR)
    # Nothing can be followed before the regulator names the supervision chain.
    w.fails(w.follow_tx(w.headers), "NOT_TRUSTED")
    w.fails(w.tx("broker-a-admin", "trust_supervision", trust_args(w.sup)), "NOT_AUTHORIZED")
    w.trust()
    w.fails(w.tx("regulator", "trust_supervision", trust_args(w.sup)), "ALREADY_TRUSTED")
    assert client(w).height == 0 and client(w).chain_id == w.sup.genesis.chain_id
    # Only a relayer follows; headers must come in order, certified by the trusted set.
    w.fails(w.follow_tx(w.headers, who="broker-a-admin"), "NOT_AUTHORIZED")
    w.fails(w.follow_tx(w.headers[1:]), "OUT_OF_ORDER")
    cert = w.headers[0].certificate
    thin = replace(cert, signatures=cert.signatures[:2])  # two of four precommits
    w.fails(w.follow_tx([replace(w.headers[0], certificate=thin)]), "BAD_CERTIFICATE")
    tampered = replace(w.headers[0].header, state_root=bytes(32))
    w.fails(w.follow_tx([replace(w.headers[0], header=tampered)]), "BAD_CERTIFICATE")
    receipts = commit_ok(w.d, [w.follow_tx(w.headers)])
    (event,) = [e for e in receipts[0].events if e.kind == "supervision_followed"]
    assert (event.attributes["from_height"], event.attributes["to_height"]) == (1, h)
    assert client(w).height == h
    stored = read(w.d, supervision.header_key(h), supervision.FollowedHeader)
    assert stored.state_root == w.headers[-1].header.state_root
    w.fails(w.follow_tx(w.headers[-1:]), "OUT_OF_ORDER")  # a replay

    # The order applies with its proof under the followed state root of height h.
    receipts = commit_ok(w.d, [w.apply_tx(order, h, w.proof("ORD-1"))])
    f = read(w.d, freeze_key("F-1"), Freeze)
    assert f is not None and f.status == "active" and f.scope == "account"
    assert f.reference == "CSRC order ORD-1" and f.authority == order.issued_by
    acct = read(w.d, account_key("SA-A"), SecuritiesAccount)
    assert acct.frozen and acct.freeze_reference == "CSRC order ORD-1"
    kinds = [(e.module, e.kind) for e in receipts[0].events]
    assert ("enforcement", "frozen") in kinds and ("supervision", "order_applied") in kinds
    applied = next(e for e in receipts[0].events if e.kind == "order_applied").attributes
    assert applied["order_id"] == "ORD-1" and applied["reference"] == "CSRC order ORD-1"
    record = read(w.d, supervision.applied_key("ORD-1"), supervision.AppliedOrder)
    assert record.supervision_height == h
    # ... once.
    w.fails(w.apply_tx(order, h, w.proof("ORD-1")), "ORDER_ALREADY_APPLIED")


def test_orders_without_a_valid_proof_are_refused() -> None:
    w = World()
    w.trust()
    o1, h1 = w.issue("ORD-1", "freeze", freeze_id="F-1", account_id="SA-A", expires_at_ms=FAR)
    o2, h2 = w.issue("ORD-2", "trading_halt", code="EQ1")
    o3, h3 = w.issue(
        "ORD-3",
        "freeze",
        chain_id=OTHER_CHAIN,
        freeze_id="F-9",
        account_id="SA-A",
        expires_at_ms=FAR,
    )
    commit_ok(w.d, [w.follow_tx(w.headers[:h2])])  # followed up to h2, not h3
    p1, p2 = w.proof("ORD-1"), w.proof("ORD-2")
    # A proof of another key (and value) than the order's.
    w.fails(w.apply_tx(o1, h2, p2), "ORDER_PROOF_INVALID")
    # A tampered order with a genuine proof of the original.
    w.fails(w.apply_tx(replace(o1, account_id="SA-B"), h2, p1), "ORDER_PROOF_INVALID")
    w.fails(w.apply_tx(replace(o1, chain_id=OTHER_CHAIN), h2, p1), "ORDER_PROOF_INVALID")
    # A proof taken at a later state than the root of the followed height it names.
    w.fails(w.apply_tx(o2, h1, p2), "ORDER_PROOF_INVALID")
    # Garbage, and a flipped byte.
    w.fails(w.apply_tx(o1, h2, b"\x00"), "ORDER_PROOF_INVALID")
    w.fails(w.apply_tx(o1, h2, p1[:-1] + bytes([p1[-1] ^ 1])), "ORDER_PROOF_INVALID")
    # A height not followed (yet), or none at all.
    w.fails(w.apply_tx(o3, h3, w.proof("ORD-3")), "UNKNOWN_SUPERVISION_HEIGHT")
    w.fails(w.apply_tx(o1, 0, p1), "UNKNOWN_SUPERVISION_HEIGHT")
    # Only a relayer carries orders.
    w.fails(w.apply_tx(o1, h3, p1, who="regulator"), "NOT_AUTHORIZED")
    # Followed now: a genuine order for the other chain is refused here.
    commit_ok(w.d, [w.follow_tx(w.headers[h2:])])
    w.fails(w.apply_tx(o3, h3, w.proof("ORD-3")), "WRONG_TARGET_CHAIN")
    # The proofs of this chain's orders hold against the latest followed root, too.
    commit_ok(w.d, [w.apply_tx(o1, h3, w.proof("ORD-1")), w.apply_tx(o2, h3, w.proof("ORD-2"))])
    sec = read(w.d, security_key("EQ1"), Security)
    assert sec.halted and sec.halt_reason == "CSRC order ORD-2"


def test_every_order_kind_and_a_retryable_business_failure() -> None:
    w = World()
    w.trust()
    issued = [
        w.issue("O-BAD", "freeze", freeze_id="F-1", account_id="SA-NONE", expires_at_ms=FAR),
        w.issue(
            "O-FRZ",
            "freeze",
            freeze_id="F-2",
            code="EQ1",
            account_id="SA-A",
            amount=400,
            expires_at_ms=FAR,
        ),
        w.issue("O-FT", "forced_transfer", freeze_id="F-2", to_account="SA-B"),
        w.issue(
            "O-FRZ2",
            "freeze",
            freeze_id="F-3",
            code="EQ1",
            account_id="SA-A",
            amount=100,
            expires_at_ms=FAR,
        ),
        w.issue("O-UNF", "unfreeze", freeze_id="F-3"),
        w.issue("O-HALT", "trading_halt", code="EQ1"),
        w.issue("O-RES", "trading_resume", code="EQ1"),
        w.issue("O-PARAM", "param_change", param_name="ecny.large_value_fen", param_value=12345),
    ]
    commit_ok(w.d, [w.follow_tx(w.headers)])
    top = w.headers[-1].header.height

    def apply(order_id: str) -> Transaction:
        order = next(o for o, _ in issued if o.order_id == order_id)
        return w.apply_tx(order, top, w.proof(order_id))

    # A business failure fails the application with the operation's code and marks nothing.
    w.fails(apply("O-BAD"), "UNKNOWN_ACCOUNT")
    w.fails(apply("O-FT"), "UNKNOWN_FREEZE")  # its freeze is not there yet: retry later
    for order_id in ("O-FRZ", "O-FT", "O-FRZ2", "O-UNF", "O-HALT", "O-RES", "O-PARAM"):
        commit_ok(w.d, [apply(order_id)])
    assert read(w.d, freeze_key("F-2"), Freeze).status == "enforced"
    assert read(w.d, freeze_key("F-3"), Freeze).status == "lifted"
    assert (balance(w.d, "EQ1", "SA-A"), balance(w.d, "EQ1", "SA-B")) == (600, 400)
    assert not read(w.d, security_key("EQ1"), Security).halted
    assert read(w.d, param_key("ecny.large_value_fen"), ParamValue) == ParamValue(12345)
    assert read(w.d, supervision.applied_key("O-BAD"), supervision.AppliedOrder) is None


def test_trust_checks_the_genesis_facts() -> None:
    w = World()
    good = trust_args(w.sup)
    own = {**good, "chain_id": CHAIN_ID}
    w.fails(w.tx("regulator", "trust_supervision", own), "INVALID_ARGUMENT")
    w.fails(w.tx("regulator", "trust_supervision", {**good, "suite": "rot13"}), "INVALID_ARGUMENT")
    w.fails(
        w.tx("regulator", "trust_supervision", {**good, "genesis_hash": b"\x01"}),
        "INVALID_ARGUMENT",
    )
    vset = good["validators"]
    first = {**vset["validators"][0], "public_key": w.sup.suite.generate_keypair().public_key}
    forged = {"validators": [first, *vset["validators"][1:]]}
    w.fails(
        w.tx("regulator", "trust_supervision", {**good, "validators": forged}), "INVALID_ARGUMENT"
    )
    w.trust()
    assert client(w).next_validators == w.sup.genesis.validator_set()
