"""Mempool: admission checks with specific errors, bounds, nonce order, one verify per signature."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consortia import codec
from consortia.node import mempool as mp
from tests.chainkit import Driver, make_consortium


def _org_tx(c, who="exchange-admin", i=0, **kw):  # type: ignore[no-untyped-def]
    return c.tx(
        who, "registry", "register_org", {"org_id": f"o{i}", "name": "N", "kind": "broker"}, **kw
    )


def test_admission_errors_are_specific_and_change_nothing() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    pool = mp.Mempool()
    good = _org_tx(c, i=0)
    pool.add(good, d.state)
    other = c.suite.generate_keypair()
    cases = [
        (good, mp.DuplicateTransactionError),
        (_org_tx(c, i=1, chain_id="elsewhere", nonce=1), mp.WrongChainError),
        (_org_tx(c, other, i=1), mp.UnknownSenderError),
        (_org_tx(c, i=2, nonce=0), mp.NonceTakenError),
        (_org_tx(c, i=3, nonce=5_000), mp.NonceTooFarError),
        (_org_tx(c, other, i=4, sender=c.addr("exchange-admin"), nonce=1), mp.BadSignatureError),
    ]
    for tx, error in cases:
        with pytest.raises(error):
            pool.add(tx, d.state)
    assert len(pool) == 1
    with pytest.raises(mp.MalformedTransactionError):
        pool.add_raw(b"\xa1\x61x\x01", d.state)
    with pytest.raises(mp.MalformedTransactionError):
        pool.add_raw(codec.encode({**codec.to_cbor(good), "extra": 1}), d.state)
    with pytest.raises(mp.TransactionTooLargeError):
        pool.add_raw(b"\x00" * (mp.MempoolLimits().max_tx_bytes + 1), d.state)
    assert len(pool) == 1


def test_bounds_per_sender_and_total() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    pool = mp.Mempool(limits=mp.MempoolLimits(max_txs=5, max_per_sender=3))
    for i in range(3):
        pool.add(_org_tx(c, i=i), d.state)
    with pytest.raises((mp.SenderQuotaError, mp.NonceTooFarError)):
        pool.add(_org_tx(c, i=3), d.state)
    c.nonces[c.addr("exchange-admin")] -= 1
    pool.add(_org_tx(c, "broker-a-admin", i=10), d.state)
    pool.add(_org_tx(c, "broker-b-admin", i=11), d.state)
    with pytest.raises(mp.MempoolFullError):
        pool.add(_org_tx(c, "ccb-admin", i=12), d.state)


def test_reap_orders_by_nonce_and_skips_gaps_then_update_prunes() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    pool = mp.Mempool()
    t0, t1, t2 = (_org_tx(c, i=i) for i in range(3))
    b0 = _org_tx(c, "broker-a-admin", i=9)
    gap = _org_tx(c, "broker-b-admin", i=20, nonce=1)  # nonce 0 missing: not ready
    for tx in (t2, b0, t0, gap, t1):
        pool.add(tx, d.state)
    reaped = pool.reap(d.state, max_txs=100, max_bytes=1 << 20)
    admin_txs = [tx for tx in reaped if tx.sender == c.addr("exchange-admin")]
    assert [tx.nonce for tx in admin_txs] == [0, 1, 2]
    assert gap not in reaped and b0 in reaped
    assert pool.reap(d.state, max_txs=2, max_bytes=1 << 20) == reaped[:2]
    proposal = d.commit(reaped)
    pool.update(d.state, [tx.hash(c.suite) for tx in proposal.block.transactions])
    assert len(pool) == 1 and gap.hash(c.suite) in pool


def test_each_signature_verified_once_per_node() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    pool = mp.Mempool()
    txs = [_org_tx(c, i=i) for i in range(10)]
    for tx in txs:
        pool.add(tx, d.state)
    assert pool.sig_cache.misses == 10
    from consortia.execution.apply import propose_block

    proposer = d.state.validators.validators[0].address
    proposal = propose_block(
        d.state, txs, proposer=proposer, last_commit=None, sig_cache=pool.sig_cache
    )
    assert len(proposal.block.transactions) == 10
    assert pool.sig_cache.misses == 10 and pool.sig_cache.hits == 10
    # A forged copy with the same fields but another signature is a different tx: verified anew.
    forged = replace(txs[0], signature=bytes(64))
    with pytest.raises(mp.DuplicateTransactionError if forged == txs[0] else mp.NonceTakenError):
        pool.add(forged, d.state)


def test_mempool_shares_the_node_signature_cache_even_when_empty() -> None:
    # Regression: an empty cache is falsy (it has __len__); the pool must still share it, or
    # every node verifies each signature twice (admission, then execution).
    from consortia.execution.sigcache import SignatureCache

    shared = SignatureCache()
    assert mp.Mempool(sig_cache=shared).sig_cache is shared
