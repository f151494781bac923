"""Real node processes on loopback: agreement, crash tolerance, catch-up, halting without quorum."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from consortia.crypto import decrypt_key_file, get_suite
from consortia.ledger.types import decode_certificate, sign_transaction
from consortia.node.local import load_genesis
from consortia.storage import ChainStore
from tests.govkit import approvals_needed, voters, voting_orgs
from tests.netkit import PASSWORD, LocalNet

VALIDATORS = ["validator-0", "validator-1", "validator-2", "validator-3"]


@pytest.fixture
def net(tmp_path: Path):  # type: ignore[no-untyped-def]
    network = LocalNet(tmp_path / "net", validators=4, observers=1)
    yield network
    network.stop_all()


def _same_blocks(net: LocalNet, names: list[str], upto: int) -> None:
    for h in range(1, upto + 1):
        blocks = {n: net.block(n, h)["block"] for n in names}
        assert len(set(blocks.values())) == 1, f"nodes disagree at height {h}"


def _no_double_signing(net: LocalNet) -> None:
    """From every node's stored certificates: no validator precommitted two blocks at one
    height/round (and no node saw evidence of it)."""
    seen: dict[tuple[int, int, bytes], set[bytes]] = defaultdict(set)
    for name in net.names:
        with ChainStore.open(net.home / name / "data", readonly=True) as store:
            head = store.head()
            for h in range(1, (head[0] if head else 0) + 1):
                raw = store.certificate(h)
                assert raw is not None
                cert = decode_certificate(raw)
                for sig in cert.signatures:
                    seen[(cert.height, cert.round, sig.validator)].add(cert.block_hash)
    assert all(len(hashes) == 1 for hashes in seen.values())


def test_validators_agree_survive_kill_and_catch_up(net: LocalNet) -> None:
    net.start_all()
    net.wait_for(net.names, 3)
    # A transaction submitted to one node is committed everywhere.
    suite = get_suite("intl")
    admin = decrypt_key_file((net.home / "accounts" / "exchange-admin.key").read_bytes(), PASSWORD)
    tx = sign_transaction(
        suite,
        admin,
        chain_id="consortia-local",
        nonce=0,
        module="registry",
        method="register_org",
        args={"org_id": "fund-x", "name": "Xin Fund", "kind": "fund_manager"},
    )
    reply = net.request("validator-2", "tx.submit", {"tx": tx.encode(), "wait": True})
    assert reply["ok"] is True and reply["code"] == "", reply
    # Bad input gets a specific error and changes nothing.
    # (On the node that reported the commit: another node may still be a block behind.)
    bad = net.request("validator-2", "tx.submit", {"tx": tx.encode()})
    assert bad["ok"] is False and bad["code"] == "STALE_NONCE", bad
    junk = net.request("validator-1", "tx.submit", {"tx": b"\x00garbage"})
    assert junk == {"ok": False, "code": "MALFORMED_TRANSACTION", "message": junk["message"]}

    # kill -9 one validator: the other three keep committing.
    net.kill("validator-3")
    h = max(net.heights(["validator-0"]).values())
    net.wait_for(["validator-0", "validator-1", "validator-2", "observer-0"], h + 3)
    # It restarts and catches up to the same chain.
    net.start("validator-3")
    target = max(net.heights(["validator-0"]).values())
    net.wait_for(VALIDATORS, target + 1)
    top = min(net.heights(net.names).values())
    _same_blocks(net, net.names, top)
    net.stop_all()
    _no_double_signing(net)


def test_no_commits_without_quorum_then_resume(net: LocalNet) -> None:
    net.start_all()
    net.wait_for(net.names, 2)
    net.kill("validator-2")
    net.kill("validator-3")
    time.sleep(1.0)  # let in-flight heights settle
    stalled = net.heights(["validator-0", "validator-1"])
    time.sleep(5.0)
    assert net.heights(["validator-0", "validator-1"]) == stalled, "committed without a quorum"
    net.start("validator-3")
    net.wait_for(["validator-0", "validator-1", "validator-3"], max(stalled.values()) + 2, 90)
    net.stop_all()
    _no_double_signing(net)


def test_validator_restarted_right_after_voting_never_double_signs(net: LocalNet) -> None:
    net.start_all()
    for _ in range(3):
        net.wait_for(["validator-0"], max(net.heights(["validator-0"]).values()) + 1)
        net.kill("validator-1")  # right after it voted for the block just committed
        net.start("validator-1")
    net.wait_for(VALIDATORS, max(net.heights(["validator-0"]).values()) + 2, 90)
    statuses = [net.status(n) for n in net.names]
    assert all(st is not None and st["evidence"] == 0 for st in statuses)
    net.stop_all()
    _no_double_signing(net)


def test_validator_added_then_removed_by_governance_on_a_running_network(tmp_path: Path) -> None:
    net = LocalNet(tmp_path / "gov", validators=4, standby=1)
    try:
        net.start_all()
        net.wait_for(net.names, 2)
        suite = get_suite("intl")

        def key(path: Path):  # type: ignore[no-untyped-def]
            return decrypt_key_file(path.read_bytes(), PASSWORD)

        newcomer = key(net.home / "validator-4" / "validator.key")
        new_addr = suite.address(newcomer.public_key)
        # Two thirds of the genesis's voting organizations (the member firm of the standby
        # validator votes too but has no account): the proposer and NEED - 1 approvers.
        genesis = load_genesis(net.home)
        need = approvals_needed(len(voting_orgs(genesis.orgs)))
        approvers = [v for v in voters(genesis.orgs, genesis.accounts) if v != "broker-a-admin"]
        assert len(approvers) >= need - 1
        approvers = approvers[: need - 1]
        admins = {
            n: key(net.home / "accounts" / f"{n}.key") for n in ("broker-a-admin", *approvers)
        }
        nonces: dict[str, int] = defaultdict(int)

        def send(who: str, method: str, args: dict[str, object]) -> dict[str, object]:
            tx = sign_transaction(
                suite,
                admins[who],
                chain_id="consortia-local",
                nonce=nonces[who],
                module="governance",
                method=method,
                args=args,
            )
            nonces[who] += 1
            reply = net.request("validator-0", "tx.submit", {"tx": tx.encode(), "wait": True})
            # Every vote counts (an approval after the decision would be PROPOSAL_CLOSED).
            assert reply["ok"] is True and reply["code"] == "", reply
            return reply

        def vote(action: str, proposal_id: int) -> int:
            send(
                "broker-a-admin",
                "propose",
                {
                    "action": action,
                    "name": "validator-4",
                    "public_key": newcomer.public_key,
                    "power": 10,
                    "reason": "membership change",
                },
            )
            last = {}
            for who in approvers:
                last = send(who, "approve", {"proposal_id": proposal_id})
            return int(last["height"])  # type: ignore[call-overload]

        decided = vote("add_validator", 1)
        net.wait_for(net.names, decided + 2)

        def members(height: int) -> set[str]:
            st = net.status("validator-0")
            assert st is not None
            return set(st["validators"])

        def signers(height: int) -> set[bytes]:
            cert = decode_certificate(net.block("validator-0", height)["certificate"])
            return {s.validator for s in cert.signatures}

        # Decided in block H: the set of H + 1 is unchanged, from H + 2 on it includes the
        # newcomer, whose precommits then appear in certificates (a certificate holds the first
        # 2f+1 precommits a node collected, so look over a window of blocks).
        assert new_addr.hex() in members(decided + 2)
        assert all(new_addr not in signers(h) for h in range(1, decided + 2))
        deadline = time.monotonic() + 90
        h = decided + 2
        while new_addr not in signers(h):
            assert time.monotonic() < deadline, "the new validator never signed a certificate"
            h += 1
            net.wait_for(["validator-0"], h)
        removed = vote("remove_validator", 2)
        net.wait_for(net.names, removed + 4)
        assert new_addr.hex() not in members(removed + 2)
        assert all(new_addr not in signers(h) for h in range(removed + 2, removed + 5))
        _same_blocks(net, net.names, removed + 4)
    finally:
        net.stop_all()
