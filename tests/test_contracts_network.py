"""Contracts on a real network of 4 validator processes: gas bombs stop at their limits, their
blocks commit with the ordinary transactions beside them, and every node agrees on the state."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from consortia.contracts import keys, toolchain
from consortia.crypto import KeyPair, decrypt_key_file, get_suite
from consortia.ledger.state_tree import StateProof, verify_state_proof
from consortia.ledger.types import decode_block, decode_receipts, sign_transaction
from consortia.modules import contracts
from consortia.node.local import load_genesis
from tests.govkit import approvals_needed, voters, voting_orgs
from tests.netkit import PASSWORD, LocalNet
from tests.test_contracts_module import BOMB_SOL, call_data, word

CHAIN_ID = "consortia-local"
DEPLOYER = "broker-a-admin"
BOMB_GAS = 300_000


def test_gas_bombs_commit_beside_ordinary_transactions_and_all_validators_agree(
    tmp_path: Path,
) -> None:
    bomb = toolchain.compile_solidity(BOMB_SOL, "Bomb")
    suite = get_suite("intl")
    net = LocalNet(tmp_path / "net", validators=4)
    try:
        net.start_all()
        net.wait_for(net.names, 2)
        genesis = load_genesis(net.home)
        votes = voters(genesis.orgs, genesis.accounts)
        need = approvals_needed(len(voting_orgs(genesis.orgs)))
        names = sorted({*votes[:need], DEPLOYER, "exchange-admin"})
        signers: dict[str, KeyPair] = {
            n: decrypt_key_file((net.home / "accounts" / f"{n}.key").read_bytes(), PASSWORD)
            for n in names
        }
        nonces: dict[str, int] = defaultdict(int)

        def tx(who: str, module: str, method: str, args: dict[str, Any]) -> bytes:
            signed = sign_transaction(
                suite,
                signers[who],
                chain_id=CHAIN_ID,
                nonce=nonces[who],
                module=module,
                method=method,
                args=args,
            )
            nonces[who] += 1
            return signed.encode()

        def submit(*txs: bytes) -> list[dict[str, Any]]:
            reply = net.request(
                "validator-0", "tx.submit_many", {"txs": list(txs), "wait": True}, timeout_s=90
            )
            assert reply["ok"] is True, reply
            return list(reply["results"])

        def ok(raw: bytes) -> dict[str, Any]:
            (result,) = submit(raw)
            assert result["ok"] is True and result["code"] == "", result
            return result

        # Governance approves the contract's code hash; then it deploys.
        code_hash = contracts.code_hash(suite, bomb.init_code)
        proposal = {"action": "approve_code", "subject": code_hash, "reason": "reviewed"}
        ok(tx(votes[0], "governance", "propose_contract", proposal))
        for who in votes[1:need]:
            ok(tx(who, "governance", "approve", {"proposal_id": 1}))
        deployer = suite.address(signers[DEPLOYER].public_key)
        address = keys.create_address(deployer, nonces[DEPLOYER])
        deploy = {"code": bomb.init_code, "args": word(0), "gas_limit": 1_000_000, "abi": ""}
        ok(tx(DEPLOYER, "contracts", "deploy", deploy))

        def call(data: bytes, gas: int = BOMB_GAS) -> bytes:
            args = {"address": address, "data": data, "gas_limit": gas}
            return tx(DEPLOYER, "contracts", "call", args)

        # One batch: an infinite loop, a deep recursion, a huge memory expansion, and ordinary
        # transactions (a registry change, a successful contract call) among them.
        org = {"org_id": "fund-x", "name": "Xin Fund", "kind": "fund_manager"}
        results = submit(
            call(call_data("spin()")),
            tx("exchange-admin", "registry", "register_org", org),
            call(call_data("recurse(uint256)", 0)),
            call(call_data("allocate(uint256)", 10**9)),
            call(call_data("bump()"), 1_000_000),
        )
        codes = [r["code"] for r in results]
        assert codes == ["EVM_OUT_OF_GAS", "", "EVM_REVERTED", "EVM_OUT_OF_GAS", ""], results
        assert "EVM_OUT_OF_GAS" in results[2]["message"]  # where the recursion ended
        heights = sorted({int(r["height"]) for r in results})
        # Submitted in one request, they enter every mempool together: one block.
        assert len(heights) == 1, heights

        top = heights[-1] + 1
        net.wait_for(net.names, top)
        # Every validator stores the same blocks and receipts, and (having applied each block
        # and checked its header) the same state root at every height.
        for h in range(1, top + 1):
            replies = {n: net.block(n, h) for n in net.names}
            assert len({r["block"] for r in replies.values()}) == 1, f"blocks differ at {h}"
            assert len({r["receipts"] for r in replies.values()}) == 1, f"receipts differ at {h}"
        (bombed,) = heights
        block = decode_block(net.block("validator-1", bombed)["block"])
        receipts = decode_receipts(net.block("validator-2", bombed)["receipts"]).receipts
        assert [r.code for r in receipts] == codes and len(block.transactions) == len(codes)
        # The contract's storage, read from each node with a proof against that node's root.
        slot = keys.storage_key(address, 0)
        roots: dict[int, set[bytes]] = defaultdict(set)
        for name in net.names:
            reply = net.request(name, "state.get", {"key": slot})
            proof = StateProof.from_bytes(reply["proof"])
            assert proof.key == slot
            value = verify_state_proof(suite.hash, reply["state_root"], proof)
            assert value == reply["value"] == word(1)
            header = decode_block(net.block("validator-3", int(reply["height"]))["block"]).header
            assert header.state_root == reply["state_root"]
            roots[int(reply["height"])].add(reply["state_root"])
        assert all(len(r) == 1 for r in roots.values())
    finally:
        net.stop_all()
