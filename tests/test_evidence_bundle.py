"""Offline evidence bundles: export from real stores, verify with nothing but two genesis files.

The world (tests/evidencekit.py): a business chain ran the demo's business story plus an owner's
securities transfer; a supervision chain registered it and anchored every header through
``anchoring.anchor`` transactions. Bundles for an e-CNY payment, a securities transfer, a fund
confirmation, a holding and a wallet must verify; any altered byte, another genesis, or a
tampered part must fail naming the check that broke.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia import codec
from consortia.cli import app
from consortia.crypto import get_suite
from consortia.evidence.bundle import (
    AnchorProofError,
    BundleFormatError,
    EvidenceBundle,
    EvidenceError,
    GenesisMismatchError,
    HeaderCertificateError,
    Proven,
    ReceiptInclusionError,
    StateProofError,
    SupervisionCertificateError,
    TxInclusionError,
    ValidatorHistoryError,
    Verifier,
    bundle_to_json,
    parse_bundle,
    verify_bundle,
)
from consortia.evidence.export import ExportError, export_state, export_transaction
from consortia.ledger import light
from consortia.ledger.state_tree import StateProof
from consortia.ledger.types import TxStatus
from consortia.modules import anchoring
from consortia.modules.anchoring import Anchor
from consortia.modules.securities import Holding
from tests.evidencekit import TRANSFER_AMOUNT, World, build_world, make_home

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("evidence"))


@pytest.fixture(scope="module")
def bundles(world: World) -> dict[str, EvidenceBundle]:
    b, s = world.business_home, world.supervision_home
    return {
        "payment": export_transaction(b, s, world.payment),
        "transfer": export_transaction(b, s, world.transfer),
        "confirmation": export_transaction(b, s, world.confirmation),
        "holding": export_state(
            b, s, account="SA-BOB", asset="000001", height=world.transfer_height
        ),
        "wallet": export_state(b, s, account="W-ALICE", asset="ecny", height=world.business_head),
    }


def verify(world: World, bundle: EvidenceBundle | str | bytes) -> Proven:
    return verify_bundle(bundle, world.business_genesis, world.supervision_genesis)


def reserialized(world: World, bundle: EvidenceBundle) -> Proven:
    """Verify the canonical file of ``bundle`` (a tampered bundle that is well formed)."""
    return verify(world, bundle_to_json(bundle))


# ---------------------------------------------------------------------------------------------
# What verifies, and what it says


@pytest.mark.parametrize("name", ["payment", "transfer", "confirmation", "holding", "wallet"])
def test_bundles_verify_offline_from_their_files(
    world: World, bundles: dict[str, EvidenceBundle], name: str
) -> None:
    bundle = bundles[name]
    text = bundle_to_json(bundle)
    assert parse_bundle(text) == bundle
    proven = verify(world, text)
    assert proven == verify(world, bundle)
    header = bundle.business.header
    assert (proven.chain_id, proven.height) == (world.business_genesis.chain_id, header.height)
    assert proven.block_hash == header.hash(get_suite(world.business_genesis.suite))
    assert proven.when.endswith("CST (UTC+8)")
    assert 0 < proven.anchored_height <= proven.supervision_height
    assert proven.supervision_chain_id == world.supervision_genesis.chain_id
    assert all(proven.lines())


def test_what_the_transaction_bundles_prove(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    expected = {
        "payment": "ecny.pay(",
        "transfer": "securities.transfer(",
        "confirmation": "funds.confirm(",
    }
    for name, call in expected.items():
        bundle = bundles[name]
        assert bundle.transaction is not None
        assert bundle.transaction.receipt.status == TxStatus.OK
        proven = verify(world, bundle)
        assert call in proven.what and "succeeded" in proven.what
        assert bundle.transaction.transaction.sender.hex() in proven.who
    transfer = verify(world, bundles["transfer"])
    assert (
        f'"amount": {TRANSFER_AMOUNT}' in transfer.what
        and '"to_account": "SA-BOB"' in transfer.what
    )


def test_what_the_state_bundles_prove(world: World, bundles: dict[str, EvidenceBundle]) -> None:
    holding = bundles["holding"]
    assert holding.state is not None and holding.state.proof.value is not None
    record = codec.decode_struct(Holding, holding.state.proof.value)
    proven = verify(world, holding)
    assert proven.height == world.transfer_height
    assert "SA-BOB" in proven.who and f"holds {record.balance} of security 000001" in proven.what
    assert record.balance >= TRANSFER_AMOUNT
    wallet = verify(world, bundles["wallet"])
    assert "e-CNY wallet W-ALICE" in wallet.who and "fen" in wallet.what


def test_a_holding_at_an_older_height_is_replayed_and_differs(world: World) -> None:
    """The store keeps only the latest state; older heights are replayed from genesis."""
    before = export_state(
        world.business_home,
        world.supervision_home,
        account="SA-BOB",
        asset="000001",
        height=world.transfer_height - 1,
    )
    after = export_state(
        world.business_home,
        world.supervision_home,
        account="SA-BOB",
        asset="000001",
        height=world.transfer_height,
    )
    assert before.state is not None and after.state is not None
    assert before.state.proof.value is not None and after.state.proof.value is not None
    old = codec.decode_struct(Holding, before.state.proof.value)
    new = codec.decode_struct(Holding, after.state.proof.value)
    assert new.balance - old.balance == TRANSFER_AMOUNT
    verify(world, before)
    verify(world, after)


def test_export_refuses_what_it_cannot_prove(world: World) -> None:
    b, s = world.business_home, world.supervision_home
    with pytest.raises(ExportError, match="not in"):
        export_transaction(b, s, bytes(32))
    with pytest.raises(ExportError, match="outside"):
        export_state(b, s, account="SA-BOB", asset="000001", height=world.business_head + 1)
    with pytest.raises(ExportError, match="no holding"):
        export_state(b, s, account="SA-NOBODY", asset="000001", height=world.business_head)
    with pytest.raises(ExportError, match="not a supervision chain"):
        export_transaction(b, b, world.transfer)
    with pytest.raises(ExportError, match="not a business chain"):
        export_transaction(s, s, world.transfer)


# ---------------------------------------------------------------------------------------------
# Any altered byte fails


def _flip_every_byte(world: World, text: str) -> dict[str, int]:
    data = text.encode()
    verifier = Verifier(world.business_genesis, world.supervision_genesis)
    verifier.verify(data)
    failures: dict[str, int] = {}
    for i in range(len(data)):
        altered = bytearray(data)
        altered[i] ^= 0x01
        try:
            verifier.verify(bytes(altered))
        except EvidenceError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
        else:
            context = data[max(0, i - 60) : i + 20].decode(errors="replace")
            pytest.fail(f"flipping byte {i} still verifies: ...{context}")
    return failures


def test_flipping_any_single_byte_of_a_bundle_fails(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    text = bundle_to_json(bundles["holding"])
    started = time.monotonic()
    failures = _flip_every_byte(world, text)
    assert sum(failures.values()) == len(text)
    # Most flips land in a readable copy or the layout; proofs without copies fail their check.
    assert {"BundleFormatError", "AnchorProofError", "StateProofError"} <= set(failures)
    assert time.monotonic() - started < 120


def test_flipping_bytes_of_a_transaction_bundle_fails_sampled(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    """Every 7th byte of a transaction bundle (the slow test flips them all)."""
    data = bundle_to_json(bundles["transfer"]).encode()
    verifier = Verifier(world.business_genesis, world.supervision_genesis)
    for i in range(0, len(data), 7):
        altered = bytearray(data)
        altered[i] ^= 0x20
        with pytest.raises(EvidenceError):
            verifier.verify(bytes(altered))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["payment", "transfer", "confirmation", "wallet"])
def test_flipping_any_single_byte_of_every_bundle_fails(
    world: World, bundles: dict[str, EvidenceBundle], name: str
) -> None:
    text = bundle_to_json(bundles[name])
    assert sum(_flip_every_byte(world, text).values()) == len(text)


def test_non_canonical_spellings_of_the_same_bundle_fail(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    text = bundle_to_json(bundles["transfer"])
    obj = json.loads(text)
    for variant in (
        json.dumps(obj),  # another layout
        text.rstrip("\n"),
        text.replace('"format"', '"format" '),
        text.replace(
            text[text.index('"cbor":"') + 8 : text.index('"cbor":"') + 12],
            text[text.index('"cbor":"') + 8 : text.index('"cbor":"') + 12].upper(),
        ),
    ):
        assert variant != text
        with pytest.raises(BundleFormatError):
            verify(world, variant)


# ---------------------------------------------------------------------------------------------
# Another genesis


def test_a_bundle_checked_against_another_genesis_fails(
    world: World, bundles: dict[str, EvidenceBundle], tmp_path: Path
) -> None:
    text = bundle_to_json(bundles["transfer"])
    # The same chain id with other keys: a different genesis hash.
    forged = make_home(tmp_path / "forged", world.business_genesis.chain_id)
    other_chain = make_home(tmp_path / "other", "biz-other")
    other_sup = make_home(tmp_path / "sup", world.supervision_genesis.chain_id, tier="supervision")
    cases = [
        (forged, world.supervision_genesis, "genesis hash"),
        (other_chain, world.supervision_genesis, "chain is"),
        (world.business_genesis, other_sup, "genesis hash"),
        (world.supervision_genesis, world.business_genesis, "tier"),
        (world.business_genesis, world.business_genesis, "tier"),
    ]
    for business, supervision, why in cases:
        with pytest.raises(GenesisMismatchError, match=why):
            verify_bundle(text, business, supervision)


# ---------------------------------------------------------------------------------------------
# Tampered parts, re-serialized canonically: the named check fails


def _with_anchor_value(bundle: EvidenceBundle, value: bytes) -> EvidenceBundle:
    proof = dataclasses.replace(bundle.anchor.anchor_proof, value=value)
    return dataclasses.replace(
        bundle, anchor=dataclasses.replace(bundle.anchor, anchor_proof=proof)
    )


def test_a_tampered_anchor_fails_naming_the_anchor_check(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    bundle = bundles["transfer"]
    value = bundle.anchor.anchor_proof.value
    assert value is not None
    anchor = codec.decode_struct(Anchor, value)
    forged = dataclasses.replace(anchor, block_hash=bytes(32))
    with pytest.raises(AnchorProofError, match=r"anchor: .*root mismatch"):
        reserialized(world, _with_anchor_value(bundle, codec.encode_struct(forged)))
    # The anchor of another height, with its own valid proof: the key gives it away.
    other = export_transaction(world.business_home, world.supervision_home, world.confirmation)
    swapped = dataclasses.replace(bundle, anchor=other.anchor)
    with pytest.raises(AnchorProofError, match=r"anchor: .*expected"):
        reserialized(world, swapped)
    # The proof of the registration in place of the anchor's.
    wrong = dataclasses.replace(
        bundle,
        anchor=dataclasses.replace(bundle.anchor, anchor_proof=bundle.anchor.registration_proof),
    )
    with pytest.raises(AnchorProofError):
        reserialized(world, wrong)
    # An absence proof.
    absent = StateProof(anchoring.anchor_key("biz-evidence", 10**9), None, ())
    with pytest.raises(AnchorProofError):
        reserialized(
            world,
            dataclasses.replace(
                bundle, anchor=dataclasses.replace(bundle.anchor, anchor_proof=absent)
            ),
        )


def test_a_tampered_subject_fails_its_inclusion_check(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    bundle = bundles["transfer"]
    t = bundle.transaction
    assert t is not None
    args = {**t.transaction.args, "amount": t.transaction.args["amount"] + 1}
    forged_tx = dataclasses.replace(t, transaction=dataclasses.replace(t.transaction, args=args))
    with pytest.raises(TxInclusionError, match="root mismatch"):
        reserialized(world, dataclasses.replace(bundle, transaction=forged_tx))
    failed = dataclasses.replace(t.receipt, status=TxStatus.FAILED, code="X")
    forged_receipt = dataclasses.replace(t, receipt=failed)
    with pytest.raises(ReceiptInclusionError, match="root mismatch"):
        reserialized(world, dataclasses.replace(bundle, transaction=forged_receipt))
    holding = bundles["holding"]
    s = holding.state
    assert s is not None and s.proof.value is not None
    more = dataclasses.replace(codec.decode_struct(Holding, s.proof.value), balance=10**12)
    forged_state = dataclasses.replace(
        s, proof=dataclasses.replace(s.proof, value=codec.encode_struct(more))
    )
    with pytest.raises(StateProofError, match="root mismatch"):
        reserialized(world, dataclasses.replace(holding, state=forged_state))
    other_account = dataclasses.replace(s, account="SA-ALICE")
    with pytest.raises(StateProofError, match="expected"):
        reserialized(world, dataclasses.replace(holding, state=other_account))


def test_certificates_and_history_are_checked_from_genesis(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    bundle = bundles["payment"]
    cert = bundle.business.certificate
    under = dataclasses.replace(cert, signatures=cert.signatures[:2])  # 20 of 40: no quorum
    with pytest.raises(HeaderCertificateError, match="power"):
        reserialized(
            world,
            dataclasses.replace(
                bundle, business=dataclasses.replace(bundle.business, certificate=under)
            ),
        )
    sup = bundle.anchor.supervision
    sup_under = dataclasses.replace(
        sup, certificate=dataclasses.replace(sup.certificate, signatures=())
    )
    with pytest.raises(SupervisionCertificateError):
        reserialized(
            world,
            dataclasses.replace(
                bundle, anchor=dataclasses.replace(bundle.anchor, supervision=sup_under)
            ),
        )
    # A history item that announces no change (only set changes belong in the history).
    first = export_transaction(world.business_home, world.supervision_home, world.payment)
    h1 = bundles["holding"]
    item = light.CertifiedHeader(first.business.header, first.business.certificate, None)
    padded = dataclasses.replace(h1.business, history=(item,))
    with pytest.raises(ValidatorHistoryError, match="announces no validator-set change"):
        reserialized(world, dataclasses.replace(h1, business=padded))


def test_the_validator_history_carries_the_set_change(
    world: World, bundles: dict[str, EvidenceBundle]
) -> None:
    before = bundles["transfer"].business
    assert before.header.height < world.vset_change_height and before.history == ()
    bundle = bundles["wallet"]  # at the head, after the change
    history = bundle.business.history
    assert [item.header.height for item in history] == [world.vset_change_height]
    assert history[0].next_validators is not None
    assert history[0].next_validators != world.business_genesis.validator_set()
    verify(world, bundle_to_json(bundle))
    # Omitting the change: the header names a set the genesis set never handed over to.
    omitted = dataclasses.replace(bundle.business, history=())
    with pytest.raises(HeaderCertificateError, match="validator set other than"):
        reserialized(world, dataclasses.replace(bundle, business=omitted))
    # Announcing another set than the header committed to.
    genesis_set = world.business_genesis.validator_set()
    wrong = (dataclasses.replace(history[0], next_validators=genesis_set),)
    with pytest.raises(ValidatorHistoryError, match="does not match"):
        reserialized(
            world,
            dataclasses.replace(
                bundle, business=dataclasses.replace(bundle.business, history=wrong)
            ),
        )


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_exports_and_verifies_offline(world: World, tmp_path: Path) -> None:
    b, s = str(world.business_home), str(world.supervision_home)
    bg, sg = str(world.business_home / "genesis.json"), str(world.supervision_home / "genesis.json")
    out = tmp_path / "transfer.json"
    r = runner.invoke(
        app,
        [
            "evidence",
            "export",
            "--home",
            b,
            "--supervision-home",
            s,
            "--tx",
            world.transfer.hex(),
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evidence", "verify", str(out), "--genesis", bg, "--genesis", sg])
    assert r.exit_code == 0, r.output
    assert "VERIFIED" in r.output and "securities.transfer" in r.output and "CST" in r.output
    # The genesis files in either order (told apart by their tier).
    r = runner.invoke(app, ["evidence", "verify", str(out), "--genesis", sg, "--genesis", bg])
    assert r.exit_code == 0, r.output
    holding = tmp_path / "holding.json"
    r = runner.invoke(
        app,
        [
            "evidence",
            "holding",
            "--home",
            b,
            "--supervision-home",
            s,
            "--account",
            "SA-BOB",
            "--asset",
            "000001",
            "--height",
            str(world.transfer_height),
            "-o",
            str(holding),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["evidence", "verify", str(holding), "--genesis", bg, "--genesis", sg, "--json"]
    )
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["ok"] and result["block"]["height"] == world.transfer_height


def test_cli_verify_failure_exits_1_naming_the_check(world: World, tmp_path: Path) -> None:
    b, s = str(world.business_home), str(world.supervision_home)
    bg, sg = str(world.business_home / "genesis.json"), str(world.supervision_home / "genesis.json")
    out = tmp_path / "payment.json"
    r = runner.invoke(
        app,
        [
            "evidence",
            "export",
            "--home",
            b,
            "--supervision-home",
            s,
            "--tx",
            world.payment.hex(),
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    bundle = parse_bundle(out.read_text())
    value = bundle.anchor.anchor_proof.value
    assert value is not None
    forged = dataclasses.replace(codec.decode_struct(Anchor, value), time_ms=1)
    bad = tmp_path / "bad.json"
    bad.write_text(bundle_to_json(_with_anchor_value(bundle, codec.encode_struct(forged))))
    r = runner.invoke(app, ["evidence", "verify", str(bad), "--genesis", bg, "--genesis", sg])
    assert r.exit_code == 1
    assert "NOT VERIFIED" in r.output and "AnchorProofError" in r.output
    assert "Traceback" not in r.output
    truncated = tmp_path / "truncated.json"
    truncated.write_text(out.read_text()[:-10])
    r = runner.invoke(app, ["evidence", "verify", str(truncated), "--genesis", bg, "--genesis", sg])
    assert r.exit_code == 1 and "BundleFormatError" in r.output
    r = runner.invoke(app, ["evidence", "verify", str(out), "--genesis", bg])
    assert r.exit_code == 2
    r = runner.invoke(
        app,
        [
            "evidence",
            "export",
            "--home",
            b,
            "--supervision-home",
            s,
            "--tx",
            "00" * 32,
            "-o",
            str(tmp_path / "none.json"),
        ],
    )
    assert r.exit_code == 1 and "not in" in r.output
