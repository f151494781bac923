"""The supervision chain's anchoring module: a light client per registered business chain, driven
by signed transactions in committed blocks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from consortia import codec
from consortia.ledger.light import CertifiedHeader
from consortia.ledger.types import (
    MAX_TX_BYTES,
    CommitCertificate,
    Transaction,
    TxStatus,
    Validator,
    ValidatorSet,
    decode_transaction,
)
from consortia.modules.anchoring import (
    MAX_BATCH,
    RELAY_BATCH,
    Anchor,
    AnchoredChain,
    anchor_key,
    chain_key,
    vset_key,
)
from tests.chainkit import Driver, make_consortium
from tests.govkit import approvals_needed, voters
from tests.tierkit import (
    TwoTiers,
    anchor_args,
    anchor_tx,
    certify_header,
    commit,
    commit_fails,
    commit_ok,
    follow,
    read,
    register_chain_args,
    register_tx,
    two_tiers,
)


def head(t: TwoTiers) -> AnchoredChain:
    chain = read(t.sd, chain_key(t.chain_id), AnchoredChain)
    assert isinstance(chain, AnchoredChain)
    return chain


def assert_anchored(t: TwoTiers, items: list[CertifiedHeader], anchored_height: int) -> None:
    for item in items:
        h = item.header
        got = read(t.sd, anchor_key(t.chain_id, h.height), Anchor)
        assert got == Anchor(
            chain_id=t.chain_id,
            height=h.height,
            block_hash=h.hash(t.biz.suite),
            time_ms=h.time_ms,
            state_root=h.state_root,
            transactions_root=h.transactions_root,
            receipts_root=h.receipts_root,
            anchored_height=anchored_height,
        )


# ---------------------------------------------------------------------------------------------
# Registration


def test_register_chain_starts_the_light_client_at_genesis() -> None:
    t = two_tiers(register=False)
    g = t.biz.genesis
    (receipt,) = commit_ok(t.sd, [register_tx(t.sup, t.biz)])
    chain = head(t)
    assert chain == AnchoredChain(
        chain_id=g.chain_id,
        suite=g.suite,
        genesis_hash=g.hash(),
        genesis_time_ms=g.genesis_time_ms,
        height=0,
        block_hash=g.hash(),
        time_ms=g.genesis_time_ms,
        state_root=bytes(32),
        next_validators=g.validator_set(),
        registered_height=1,
        registered_by=t.sup.addr("regulator"),
    )
    assert read(t.sd, vset_key(g.chain_id, 1), ValidatorSet) == g.validator_set()
    (event,) = receipt.events
    assert (event.module, event.kind) == ("anchoring", "chain_registered")
    assert event.attributes["chain_id"] == g.chain_id


def test_register_chain_refusals() -> None:
    t = two_tiers(register=False)
    for who in ("relayer", "sac-admin", "clerk"):
        commit_fails(t.sd, register_tx(t.sup, t.biz, who), "NOT_AUTHORIZED")

    def reg(**change: Any) -> Transaction:
        return t.sup.tx(
            "regulator", "anchoring", "register_chain", {**register_chain_args(t.biz), **change}
        )

    commit_fails(t.sd, reg(suite="rsa"), "UNKNOWN_SUITE")
    commit_fails(t.sd, reg(chain_id=t.sup.genesis.chain_id), "INVALID_ARGUMENT")
    commit_fails(t.sd, reg(chain_id="bad id!"), "INVALID_ARGUMENT")
    commit_fails(t.sd, reg(genesis_hash=bytes(20)), "INVALID_ARGUMENT")
    # A validator whose address is not that of its public key.
    vs = t.biz.genesis.validator_set().validators
    other = t.biz.suite.generate_keypair().public_key
    bad = (replace(vs[0], public_key=other), *vs[1:])
    commit_fails(t.sd, reg(validators=codec.to_cbor(ValidatorSet(bad))), "INVALID_VALIDATOR_SET")
    # A malformed set (unsorted) is not even decodable arguments.
    unsorted = codec.to_cbor(ValidatorSet(vs))
    unsorted["validators"].reverse()
    commit_fails(t.sd, reg(validators=unsorted), "BAD_ARGUMENTS")
    assert read(t.sd, chain_key(t.chain_id), AnchoredChain) is None
    commit_ok(t.sd, [register_tx(t.sup, t.biz)])
    commit_fails(t.sd, register_tx(t.sup, t.biz), "CHAIN_EXISTS")


# ---------------------------------------------------------------------------------------------
# Anchoring


def test_anchors_batches_in_order() -> None:
    t = two_tiers()
    done: list[CertifiedHeader] = []
    for size in (1, 4, 2):
        items = [follow(t.bd) for _ in range(size)]
        (receipt,) = commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, items)])
        assert_anchored(t, items, t.sd.state.height)
        (event,) = receipt.events
        assert (event.module, event.kind) == ("anchoring", "anchored")
        assert event.attributes == {
            "chain_id": t.chain_id,
            "from_height": len(done) + 1,
            "to_height": len(done) + size,
            "block_hash": items[-1].header.hash(t.biz.suite),
        }
        done += items
    chain = head(t)
    last = done[-1].header
    assert (chain.height, chain.block_hash) == (7, last.hash(t.biz.suite))
    assert (chain.time_ms, chain.state_root) == (last.time_ms, last.state_root)
    assert chain.next_validators == t.biz.genesis.validator_set()
    # No validator-set change: the history holds only the genesis set.
    assert all(read(t.sd, vset_key(t.chain_id, h), ValidatorSet) is None for h in range(2, 9))
    # The relayer resumes from the anchored height; a replay of any anchored header is refused.
    commit_fails(t.sd, anchor_tx(t.sup, t.chain_id, done[-2:]), "OUT_OF_ORDER")
    commit_fails(t.sd, anchor_tx(t.sup, t.chain_id, done), "OUT_OF_ORDER")
    assert head(t) == chain


def test_a_business_chain_of_another_suite() -> None:
    """The light client checks a gm chain's certificates with SM2/SM3 on an intl supervision
    chain (and the other way round)."""
    for biz_suite, sup_suite in (("gm", "intl"), ("intl", "gm")):
        t = two_tiers(biz_suite, sup_suite)
        items = [follow(t.bd) for _ in range(3)]
        commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, items)])
        assert head(t).height == 3 and head(t).suite == biz_suite
        assert_anchored(t, items, t.sd.state.height)


def _thin(cert: CommitCertificate, keep: int) -> CommitCertificate:
    return replace(cert, signatures=cert.signatures[:keep])


def test_rejected_submissions_change_nothing() -> None:
    t = two_tiers()
    anchored = [follow(t.bd) for _ in range(2)]
    commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, anchored)])
    before = head(t)
    nxt, after = follow(t.bd), follow(t.bd)
    h = nxt.header
    strangers = [t.biz.suite.generate_keypair() for _ in range(4)]

    def fails(items: list[CertifiedHeader], code: str, who: str = "relayer") -> str:
        receipt = commit_fails(t.sd, anchor_tx(t.sup, t.chain_id, items, who), code)
        assert head(t) == before
        assert read(t.sd, anchor_key(t.chain_id, 3), Anchor) is None
        return receipt.message

    # Forged: the right header, certified by keys that are not the chain's validators.
    forged = certify_header(t.biz.suite, h, strangers)
    msg = fails([replace(nxt, certificate=forged)], "BAD_CERTIFICATE")
    assert "height 3" in msg and "not a validator" in msg
    # Mis-signed: a validator's signature moved onto another validator's entry.
    sigs = nxt.certificate.signatures
    swapped = (replace(sigs[0], signature=sigs[1].signature), *sigs[1:])
    fails(
        [replace(nxt, certificate=replace(nxt.certificate, signatures=swapped))], "BAD_CERTIFICATE"
    )
    # Under quorum: two of four precommits (and three of four still suffice below).
    msg = fails([replace(nxt, certificate=_thin(nxt.certificate, 2))], "BAD_CERTIFICATE")
    assert "power" in msg
    # Tampered: a header altered after certification no longer matches its certificate.
    fails([replace(nxt, header=replace(h, state_root=bytes(32)))], "BAD_CERTIFICATE")
    # A certificate for another height of the same chain.
    fails([replace(nxt, certificate=after.certificate)], "BAD_CERTIFICATE")
    # Wrong chain: a header of another chain id (re-certified by the same validators).
    other = replace(h, chain_id="other-chain")
    msg = fails(
        [CertifiedHeader(other, certify_header(t.biz.suite, other, t.biz.validators), None)],
        "WRONG_CHAIN",
    )
    assert "height 3" in msg
    # Broken link: a certified header that does not link to the anchored block.
    unlinked = replace(h, parent_hash=bytes(32))
    fails(
        [CertifiedHeader(unlinked, certify_header(t.biz.suite, unlinked, t.biz.validators), None)],
        "BROKEN_LINK",
    )
    # A smuggled validator set alongside a header that announces none.
    their = ValidatorSet(
        tuple(
            sorted(
                (Validator(t.biz.suite.address(k.public_key), k.public_key, 10) for k in strangers),
                key=lambda v: v.address,
            )
        )
    )
    fails([replace(nxt, next_validators=their)], "VALIDATOR_SET_MISMATCH")
    # Gap and replay.
    msg = fails([after], "OUT_OF_ORDER")
    assert "height 4" in msg
    fails([anchored[-1]], "OUT_OF_ORDER")
    fails([nxt, nxt], "OUT_OF_ORDER")
    # One bad header fails the whole batch, the good one before it included.
    msg = fails([nxt, replace(after, certificate=_thin(after.certificate, 2))], "BAD_CERTIFICATE")
    assert "height 4" in msg
    # Only a relayer anchors; a batch holds 1..MAX_BATCH headers; the chain must be registered.
    fails([nxt], "NOT_AUTHORIZED", who="regulator")
    fails([nxt], "NOT_AUTHORIZED", who="sac-admin")
    fails([], "INVALID_ARGUMENT")
    too_many = anchor_args(t.chain_id, [nxt] * (MAX_BATCH + 1))
    commit_fails(t.sd, t.sup.tx("relayer", "anchoring", "anchor", too_many), "INVALID_ARGUMENT")
    commit_fails(t.sd, anchor_tx(t.sup, "unregistered", [nxt]), "UNKNOWN_CHAIN")
    # Malformed arguments never reach the light client.
    bad = anchor_args(t.chain_id, [nxt])
    bad["headers"][0]["header"]["state_root"] = b"short"
    commit_fails(t.sd, t.sup.tx("relayer", "anchoring", "anchor", bad), "BAD_ARGUMENTS")
    assert head(t) == before
    # Three of four validators are a quorum; the chain then goes on from there.
    commit_ok(
        t.sd, [anchor_tx(t.sup, t.chain_id, [replace(nxt, certificate=_thin(nxt.certificate, 3))])]
    )
    commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, [after])])
    assert head(t).height == 4


def test_validator_set_change_is_anchored_through() -> None:
    t = two_tiers()
    c = t.biz
    newcomer = c.suite.generate_keypair()
    args = {
        "action": "add_validator",
        "name": "validator-4",
        "public_key": newcomer.public_key,
        "power": 10,
        "reason": "a new member runs a validator",
    }
    voting = voters()
    need = approvals_needed(len(voting))
    txs = [c.tx(voting[0], "governance", "propose", args)]
    txs += [c.tx(v, "governance", "approve", {"proposal_id": 1}) for v in voting[1:need]]
    items = [follow(t.bd, txs)]
    while len(t.bd.state.validators.validators) == 4:
        items.append(follow(t.bd))
    c.validators.append(newcomer)  # the new validator signs from now on
    items += [follow(t.bd) for _ in range(3)]
    (announcing,) = [i for i in items if i.next_validators is not None]
    changed_at = announcing.header.height + 1
    new_set = announcing.next_validators
    assert new_set is not None and len(new_set.validators) == 5
    split = items.index(announcing)
    commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, items[:split])])
    # The announcing header without its set, or with another set, is refused.
    commit_fails(
        t.sd,
        anchor_tx(t.sup, t.chain_id, [replace(announcing, next_validators=None)]),
        "VALIDATOR_SET_MISMATCH",
    )
    commit_fails(
        t.sd,
        anchor_tx(
            t.sup, t.chain_id, [replace(announcing, next_validators=t.biz.genesis.validator_set())]
        ),
        "VALIDATOR_SET_MISMATCH",
    )
    # The header after the change certified by the old set only (without the newcomer): 4 of 5
    # validators (40 of 50) still make a quorum, so cut to the 3 old ones (30 < 34).
    rest = items[split:]
    first_new = rest[1]
    old_only = [k for k in t.biz.validators if k is not newcomer][:3]
    weak = replace(first_new, certificate=certify_header(c.suite, first_new.header, old_only))
    commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, rest[:1])])
    commit_fails(t.sd, anchor_tx(t.sup, t.chain_id, [weak]), "BAD_CERTIFICATE")
    commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, rest[1:])])
    assert read(t.sd, vset_key(t.chain_id, changed_at), ValidatorSet) == new_set
    assert read(t.sd, vset_key(t.chain_id, 1), ValidatorSet) == t.biz.genesis.validator_set()
    heights = [h for h in range(2, items[-1].header.height + 2) if h != changed_at]
    assert all(read(t.sd, vset_key(t.chain_id, h), ValidatorSet) is None for h in heights)
    chain = head(t)
    assert chain.height == items[-1].header.height and chain.next_validators == new_set
    assert_anchored(t, rest[1:], t.sd.state.height)


def test_a_relayer_granted_by_an_org_admin_anchors() -> None:
    t = two_tiers()
    kp = t.sup.suite.generate_keypair()
    t.sup.accounts["relayer-2"] = kp
    grant = {"public_key": kp.public_key, "org_id": "sac", "roles": ["relayer"]}
    commit_ok(t.sd, [t.sup.tx("sac-admin", "registry", "register_account", grant)])
    commit_ok(t.sd, [anchor_tx(t.sup, t.chain_id, [follow(t.bd)], who="relayer-2")])
    assert head(t).height == 1


def test_batch_size_fits_a_transaction() -> None:
    """RELAY_BATCH headers with certificates of up to 10 validators fit MAX_TX_BYTES and anchor
    in one transaction."""
    biz = make_consortium("gm", validators=10)
    t = two_tiers(register=False)
    t = TwoTiers(t.sup, t.sd, biz, Driver(biz))
    commit_ok(t.sd, [register_tx(t.sup, biz)])
    items = [follow(t.bd) for _ in range(RELAY_BATCH)]
    tx = anchor_tx(t.sup, t.chain_id, items)
    size = len(tx.encode())
    assert size <= MAX_TX_BYTES, size
    assert decode_transaction(tx.encode()) == tx
    (receipt,) = commit(t.sd, [tx])
    assert receipt.status == TxStatus.OK, receipt
    assert head(t).height == RELAY_BATCH


def test_modules_of_each_tier() -> None:
    """The supervision chain runs no business module; a business chain no supervision module."""
    t = two_tiers()
    commit_fails(t.sd, t.sup.tx("regulator", "ecny", "issue", {}), "UNKNOWN_MODULE")
    commit_fails(t.sd, t.sup.tx("regulator", "securities", "apply", {}), "UNKNOWN_MODULE")
    (receipt,) = commit(t.bd, [t.biz.tx("regulator", "anchoring", "register_chain", {})])
    assert receipt.code == "UNKNOWN_MODULE"
    for module, method in (("reports", "submit_report"), ("orders", "issue_order")):
        (receipt,) = commit(t.bd, [t.biz.tx("regulator", module, method, {})])
        assert receipt.code == "UNKNOWN_MODULE"
