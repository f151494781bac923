"""apply_block: determinism, receipts with stable codes, whole-block rejection, the registry."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from consortia import codec
from consortia.execution import errors as errs
from consortia.execution.apply import apply_block, check_admission
from consortia.execution.genesis import genesis_state
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    TxStatus,
    decode_transaction,
)
from consortia.modules.registry import Account, account_key
from tests.chainkit import Consortium, Driver, make_consortium


@pytest.fixture(params=["intl", "gm"])
def consortium(request: pytest.FixtureRequest) -> Consortium:
    return make_consortium(request.param)


def _account(driver: Driver, address: bytes) -> Account:
    raw = driver.state.tree.get(account_key(address))
    assert raw is not None
    return codec.decode_struct(Account, raw)


def _open_investor(c: Consortium, d: Driver) -> tuple[bytes, object]:
    kp = c.suite.generate_keypair()
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "registry",
                "register_account",
                {"public_key": kp.public_key, "org_id": "broker-a", "roles": ["investor"]},
            )
        ]
    )
    assert p.receipts[0].status == TxStatus.OK, p.receipts[0]
    return c.suite.address(kp.public_key), kp


def test_same_blocks_same_state_root_on_independent_replays(consortium: Consortium) -> None:
    c = consortium
    d = Driver(c)
    blocks: list[Block] = []
    txs = [
        c.tx(
            "exchange-admin",
            "registry",
            "register_org",
            {"org_id": f"firm-{i}", "name": f"Firm {i}", "kind": "broker"},
        )
        for i in range(5)
    ]
    blocks.append(d.commit(txs[:3]).block)
    blocks.append(d.commit(txs[3:]).block)
    blocks.append(d.commit([]).block)
    # Two fresh replicas replay the same blocks and agree on every root.
    for _ in range(2):
        state = genesis_state(c.genesis)
        for blk in blocks:
            state, receipts = apply_block(state, blk)
            assert all(r.status == TxStatus.OK for r in receipts)
        assert state.state_root == d.state.state_root
        assert state.last_block_hash == d.state.last_block_hash


def test_failing_transaction_gets_stable_code_and_changes_only_the_nonce(
    consortium: Consortium,
) -> None:
    c = consortium
    d = Driver(c)
    before = d.state
    sender = c.addr("broker-a-admin")
    # A broker may not admit organizations: only the consortium admin may.
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "registry",
                "register_org",
                {"org_id": "x", "name": "X", "kind": "broker"},
            )
        ]
    )
    receipt = p.receipts[0]
    assert receipt.status == TxStatus.FAILED
    assert receipt.code == "NOT_AUTHORIZED"
    assert receipt.events == ()
    assert d.state.tree.get(b"registry/org/x") is None
    # Exactly one key changed: the sender's account, and only its nonce.
    old = codec.decode_struct(Account, before.tree.get(account_key(sender)) or b"")
    new = _account(d, sender)
    assert new == replace(old, nonce=old.nonce + 1)
    changed = {k for k, v in d.state.tree.items() if before.tree.get(k) != v}
    assert changed == {account_key(sender)}


@pytest.mark.parametrize(
    ("method", "args", "code"),
    [
        ("no_such_method", {}, "UNKNOWN_METHOD"),
        ("register_org", {"org_id": "a"}, "BAD_ARGUMENTS"),
        (
            "register_org",
            {"org_id": "a", "name": "A", "kind": "broker", "x": 1},
            "BAD_ARGUMENTS",
        ),
        ("register_org", {"org_id": 5, "name": "A", "kind": "broker"}, "BAD_ARGUMENTS"),
        (
            "register_org",
            {"org_id": "bad id!", "name": "A", "kind": "broker"},
            "INVALID_ARGUMENT",
        ),
        (
            "register_org",
            {"org_id": "r2", "name": "R", "kind": "regulator"},
            "INVALID_ARGUMENT",
        ),
        (
            "register_org",
            {"org_id": "exchange", "name": "dup", "kind": "broker"},
            "ORGANIZATION_EXISTS",
        ),
    ],
)
def test_bad_arguments_fail_with_specific_codes(
    method: str, args: dict[str, object], code: str
) -> None:
    c = make_consortium("intl")
    d = Driver(c)
    p = d.commit([c.tx("exchange-admin", "registry", method, args)])
    assert (p.receipts[0].status, p.receipts[0].code) == (TxStatus.FAILED, code)


def test_unknown_module_fails() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    p = d.commit([c.tx("exchange-admin", "nosuch", "x", {})])
    assert p.receipts[0].code == "UNKNOWN_MODULE"


def _next_block(c: Consortium) -> tuple[Driver, Block]:
    d = Driver(c)
    d.commit([])
    block = d.propose(
        [
            c.tx(
                "exchange-admin",
                "registry",
                "register_org",
                {"org_id": "z", "name": "Z", "kind": "broker"},
            )
        ]
    ).block
    return d, block


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (
            lambda c, b: replace(b, header=replace(b.header, state_root=bytes(32))),
            errs.WrongStateRootError,
        ),
        (
            lambda c, b: replace(b, header=replace(b.header, receipts_root=bytes(32))),
            errs.WrongReceiptsRootError,
        ),
        (
            lambda c, b: replace(b, header=replace(b.header, transactions_root=bytes(32))),
            errs.WrongTransactionsRootError,
        ),
        (
            lambda c, b: replace(b, header=replace(b.header, parent_hash=bytes(32))),
            errs.WrongParentHashError,
        ),
        (lambda c, b: replace(b, header=replace(b.header, height=5)), errs.WrongHeightError),
        (
            lambda c, b: replace(b, header=replace(b.header, chain_id="other")),
            errs.WrongChainIdError,
        ),
        (
            lambda c, b: replace(b, header=replace(b.header, time_ms=b.header.time_ms + 1)),
            errs.WrongTimeError,
        ),
        (
            lambda c, b: replace(b, header=replace(b.header, proposer=bytes(20))),
            errs.WrongProposerError,
        ),
        (
            lambda c, b: replace(b, header=replace(b.header, validator_set_hash=bytes(32))),
            errs.WrongValidatorSetError,
        ),
        (lambda c, b: replace(b, last_commit=None), errs.BadLastCommitError),
    ],
)
def test_invalid_block_rejected_whole(mutate: object, error: type[Exception]) -> None:
    c = make_consortium("intl")
    d, block = _next_block(c)
    root = d.state.state_root
    bad = mutate(c, block)  # type: ignore[operator]
    with pytest.raises(error):
        apply_block(d.state, bad)
    assert d.state.state_root == root
    apply_block(d.state, block)  # the untouched block is fine


def _with_cert(block: Block, cert: CommitCertificate, c: Consortium) -> Block:
    from consortia.execution.apply import last_commit_hash

    return replace(
        block,
        last_commit=cert,
        header=replace(block.header, last_commit_hash=last_commit_hash(c.suite, cert)),
    )


def test_last_commit_needs_a_quorum_of_valid_signatures() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    first = d.commit([]).block
    block = d.propose([]).block
    # Two of four validators: 20 of 40 power, no quorum.
    weak = c.certify(first, signers=c.validators[:2])
    with pytest.raises(errs.BadLastCommitError, match="power"):
        apply_block(d.state, _with_cert(block, weak, c))
    # A signature by an outsider.
    outsider = c.certify(first, signers=[*c.validators[:3], c.suite.generate_keypair()])
    with pytest.raises(errs.BadLastCommitError, match="not a validator"):
        apply_block(d.state, _with_cert(block, outsider, c))
    # A forged signature.
    good = c.certify(first)
    sigs = list(good.signatures)
    sigs[0] = replace(sigs[0], signature=bytes(len(sigs[0].signature)))
    forged = replace(good, signatures=tuple(sigs))
    with pytest.raises(errs.BadLastCommitError, match="signature"):
        apply_block(d.state, _with_cert(block, forged, c))


def test_block_with_inadmissible_transaction_is_rejected_whole(consortium: Consortium) -> None:
    c = consortium
    d = Driver(c)
    d.commit([])
    good = c.tx(
        "exchange-admin",
        "registry",
        "register_org",
        {"org_id": "ok1", "name": "OK", "kind": "broker"},
    )
    other_key = c.suite.generate_keypair()
    cases = {
        "wrong key": c.tx(
            other_key,
            "registry",
            "register_org",
            {"org_id": "k", "name": "K", "kind": "broker"},
            sender=c.addr("exchange-admin"),
        ),
        "other chain": c.tx(
            "exchange-admin",
            "registry",
            "register_org",
            {"org_id": "k", "name": "K", "kind": "broker"},
            chain_id="other-chain",
            nonce=1,
        ),
        "replayed nonce": c.tx(
            "exchange-admin",
            "registry",
            "register_org",
            {"org_id": "k", "name": "K", "kind": "broker"},
            nonce=0,
        ),
        "unknown sender": c.tx(
            other_key, "registry", "register_org", {"org_id": "k", "name": "K", "kind": "broker"}
        ),
    }
    for name, bad in cases.items():
        block = d.propose([good]).block
        forged = replace(block, transactions=(good, bad))
        from consortia.execution.apply import transactions_root

        forged = replace(
            forged,
            header=replace(
                forged.header, transactions_root=transactions_root(c.suite, forged.transactions)
            ),
        )
        with pytest.raises(errs.InvalidTransactionError) as info:
            apply_block(d.state, forged)
        assert info.value.index == 1, name
        # The proposer would have dropped it, with the reason.
        proposal = d.propose([good, bad])
        assert [tx for tx, _ in proposal.rejected] == [bad], name


def test_signature_from_another_chain_id_is_rejected(consortium: Consortium) -> None:
    c = consortium
    d = Driver(c)
    tx = c.tx(
        "exchange-admin",
        "registry",
        "register_org",
        {"org_id": "q", "name": "Q", "kind": "broker"},
        chain_id="chain-b",
        nonce=0,
    )
    replayed = replace(tx, chain_id="test-chain")
    with pytest.raises(ValueError, match="signature"):
        check_admission(d.state, {}, replayed)
    with pytest.raises(ValueError, match="chain"):
        check_admission(d.state, {}, tx)


def test_tampered_transaction_encoding_is_rejected() -> None:
    c = make_consortium("intl")
    tx = c.tx(
        "exchange-admin", "registry", "register_org", {"org_id": "q", "name": "Q", "kind": "broker"}
    )
    raw = tx.encode()
    assert decode_transaction(raw) == tx
    # Non-canonical: nonce 0 re-encoded in a two-byte form.
    tampered = raw.replace(b"\x65nonce\x00", b"\x65nonce\x18\x00")
    assert tampered != raw
    with pytest.raises(codec.NonCanonicalError):
        decode_transaction(tampered)
    with pytest.raises(codec.UnknownFieldError):
        decode_transaction(codec.encode({**codec.to_cbor(tx), "memo": "x"}))
    with pytest.raises(codec.OversizeInputError):
        decode_transaction(codec.encode({**codec.to_cbor(tx), "args": {"blob": b"x" * 70_000}}))


def test_registry_key_rotation_roles_and_freezes() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    alice, alice_key = _open_investor(c, d)
    bob, bob_key = _open_investor(c, d)
    new_key = c.suite.generate_keypair()
    p = d.commit(
        [c.tx(alice_key, "registry", "rotate_key", {"new_public_key": new_key.public_key})]
    )  # type: ignore[arg-type]
    assert p.receipts[0].status == TxStatus.OK
    assert _account(d, alice).public_key == new_key.public_key
    assert _account(d, alice).key_version == 2
    # The old key no longer signs for alice; the new one does.
    stale = c.tx(
        alice_key,
        "registry",
        "rotate_key",
        {"new_public_key": c.suite.generate_keypair().public_key},
    )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="signature"):
        check_admission(d.state, {}, stale)
    c.nonces[alice] -= 1
    ok = d.commit(
        [
            c.tx(
                new_key,
                "registry",
                "set_roles",
                {"address": bob, "roles": ["investor"]},
                sender=alice,
            )
        ]
    )
    assert ok.receipts[0].code == "NOT_AUTHORIZED"  # an investor cannot set roles
    # Org admin may change roles of its own accounts, but not grant admin or regulator.
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "registry",
                "set_roles",
                {"address": bob, "roles": ["investor", "custodian"]},
            ),
            c.tx("broker-a-admin", "registry", "set_roles", {"address": bob, "roles": ["admin"]}),
            c.tx(
                "broker-a-admin", "registry", "set_roles", {"address": bob, "roles": ["regulator"]}
            ),
            c.tx(
                "exchange-admin", "registry", "set_roles", {"address": bob, "roles": ["regulator"]}
            ),
            c.tx(
                "broker-b-admin", "registry", "set_roles", {"address": bob, "roles": ["investor"]}
            ),
            c.tx("broker-a-admin", "registry", "set_roles", {"address": bob, "roles": ["wizard"]}),
        ]
    )
    assert [r.code for r in p.receipts] == [
        "",
        "NOT_AUTHORIZED",
        "INVALID_ROLE",
        "INVALID_ROLE",
        "NOT_AUTHORIZED",
        "INVALID_ROLE",
    ]
    assert _account(d, bob).roles == ("custodian", "investor")
    # Freezes: the regulator may; a foreign broker may not; a frozen sender is refused.
    p = d.commit(
        [
            c.tx("broker-b-admin", "registry", "freeze_account", {"address": bob, "reason": "x"}),
            c.tx(
                "regulator",
                "registry",
                "freeze_account",
                {"address": bob, "reason": "court order 7"},
            ),
            c.tx("regulator", "registry", "freeze_account", {"address": bob, "reason": "again"}),
            c.tx(
                bob_key,
                "registry",
                "rotate_key",
                {"new_public_key": c.suite.generate_keypair().public_key},
            ),  # type: ignore[arg-type]
            c.tx(
                "broker-a-admin",
                "registry",
                "freeze_account",
                {"address": c.addr("regulator"), "reason": "no"},
            ),
        ]
    )
    assert [r.code for r in p.receipts] == [
        "NOT_AUTHORIZED",
        "",
        "ALREADY_FROZEN",
        "ACCOUNT_FROZEN",
        "NOT_AUTHORIZED",
    ]
    assert _account(d, bob).frozen and _account(d, bob).freeze_reason == "court order 7"
    assert p.receipts[1].events[0].kind == "account_frozen"
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "registry",
                "unfreeze_account",
                {"address": bob, "reason": "lifted"},
            )
        ]
    )
    assert p.receipts[0].status == TxStatus.OK
    assert not _account(d, bob).frozen
    # Org admin resets a lost key.
    lost = c.suite.generate_keypair()
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "registry",
                "reset_key",
                {"address": bob, "new_public_key": lost.public_key},
            )
        ]
    )
    assert p.receipts[0].status == TxStatus.OK
    assert _account(d, bob).public_key == lost.public_key


def test_register_account_checks_key_org_and_duplicates(consortium: Consortium) -> None:
    c = consortium
    d = Driver(c)
    kp = c.suite.generate_keypair()
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "registry",
                "register_account",
                {"public_key": b"\x04" + bytes(64), "org_id": "broker-a", "roles": ["investor"]},
            ),
            c.tx(
                "broker-a-admin",
                "registry",
                "register_account",
                {"public_key": kp.public_key, "org_id": "nope", "roles": ["investor"]},
            ),
            c.tx(
                "exchange-admin",
                "registry",
                "register_account",
                {"public_key": kp.public_key, "org_id": "nope", "roles": ["investor"]},
            ),
            c.tx(
                "broker-a-admin",
                "registry",
                "register_account",
                {"public_key": kp.public_key, "org_id": "broker-a", "roles": ["investor"]},
            ),
            c.tx(
                "broker-a-admin",
                "registry",
                "register_account",
                {"public_key": kp.public_key, "org_id": "broker-a", "roles": ["investor"]},
            ),
        ]
    )
    assert [r.code for r in p.receipts] == [
        "INVALID_KEY",
        "NOT_AUTHORIZED",
        "UNKNOWN_ORGANIZATION",
        "",
        "ACCOUNT_ALREADY_REGISTERED",
    ]


def test_an_unrepresentable_result_fails_one_transaction_not_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler whose result cannot be encoded (an event attribute beyond 64 bits, an
    arithmetic fault) fails its own transaction with UNREPRESENTABLE_RESULT, the same on every
    node; the block is still built and the next transaction runs."""
    from dataclasses import dataclass as _dataclass

    from consortia import modules
    from consortia.execution.module import Method, Module

    @_dataclass(frozen=True)
    class ProbeArgs:
        what: str

    def probe(ctx: Any, args: ProbeArgs) -> None:
        if args.what == "event":
            ctx.emit("probe", "huge", amount=1 << 70)
        elif args.what == "divide":
            ctx.put(b"probe/x", bytes([1 // len("")]))
        else:
            ctx.put(b"probe/ok", b"1")

    module = Module("probe", {"run": Method(ProbeArgs, probe)})
    monkeypatch.setitem(modules.NATIVE_MODULES, "probe", module)
    monkeypatch.setitem(
        modules.TIER_MODULES, "business", modules.TIER_MODULES["business"] | {"probe"}
    )
    c = make_consortium()
    d = Driver(c)
    p = d.commit(
        [
            c.tx("broker-a-admin", "probe", "run", {"what": "event"}),
            c.tx("broker-a-admin", "probe", "run", {"what": "divide"}),
            c.tx("broker-a-admin", "probe", "run", {"what": "fine"}),
        ]
    )
    assert [r.code for r in p.receipts] == ["UNREPRESENTABLE_RESULT", "UNREPRESENTABLE_RESULT", ""]
    assert d.state.tree.get(b"probe/x") is None and d.state.tree.get(b"probe/ok") == b"1"
