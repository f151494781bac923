"""Smart-contract call throughput on this machine; prints one JSON object as its last line.

    .venv/bin/python bench/contracts.py            # full run (about a minute on the 2-core dev box)
    .venv/bin/python bench/contracts.py --quick    # smaller counts, for a smoke run

Figures (contract calls per second, one process, one core):
- ERC-20 transfer, for the example tokens of ``examples/contracts/erc20/`` (Vyper and Solidity),
  from the holder to 1,000 recipients in turn (each first credit writes a new storage slot, as
  real payments do), measured two ways:
  ``engine``: the EVM engine alone (``consortia.contracts.evm.execute`` over a state tree, each
  call's writes applied to the tree before the next call);
  ``chain``: signed ``contracts.call`` transactions committed by the single-process chain in
  blocks (``LocalChain.commit``: propose = execute, re-validate with ``apply_block`` as a peer
  would, certify with 4 precommit signatures, one fsync'd store commit), as ``bench/ledger.py``
  measures native transactions. Transactions are signed beforehand, as clients would.
- escrow release (chain): the prepaid-funds escrow ``examples/contracts/prepaid/PrepaidEscrow.sol``
  releasing money to the merchant as the card holder confirms a service (``release``): each call
  pays 1 fen from the contract's own e-CNY wallet through the e-CNY precompile (every wallet rule
  checked), in blocks as above.

Deployments go through governance: an ``approve_code`` proposal passed by the voting members.
The compilers come from ``scripts/toolchain.sh``; compiling and setting up are not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from consortia.cli.progress import stages
from consortia.contracts import evm, keys, toolchain
from consortia.contracts.precompiles import abi_encode
from consortia.crypto import KeyPair, get_suite
from consortia.execution.context import decode_record
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import Transaction, TxStatus, sign_transaction
from consortia.modules import contracts
from consortia.modules.ecny import Wallet, wallet_key
from consortia.modules.investors import seal_identity
from consortia.modules.registry import NON_VOTING_KINDS
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "contracts"
ERC20_DIR = EXAMPLES / "erc20"
ESCROW_SOURCE = EXAMPLES / "prepaid" / "PrepaidEscrow.sol"
INTERFACES_IMPORT = 'import "../interfaces/IConsortia.sol";'
PASSWORD = "bench"
SUITE = get_suite("intl")
BLOCK = evm.BlockContext("bench-contracts", 1, 1_700_000_000_000, SUITE.hash(b"parent"))
SUPPLY = 10**27
CALL_GAS = 200_000


def word(value: int | bytes) -> bytes:
    return value.rjust(32, b"\0") if isinstance(value, bytes) else value.to_bytes(32, "big")


def call_data(signature: str, *args: int | bytes) -> bytes:
    return keccak(signature.encode())[:4] + b"".join(word(a) for a in args)


def token_constructor(name: str, symbol: str, decimals: int, supply: int) -> bytes:
    """ABI encoding of the example tokens' ``(string, string, uint8, uint256)`` arguments."""
    texts = [name.encode(), symbol.encode()]
    tails = [word(len(t)) + t + bytes(-len(t) % 32) for t in texts]
    head = word(4 * 32) + word(4 * 32 + len(tails[0])) + word(decimals) + word(supply)
    return head + tails[0] + tails[1]


def compile_token(language: str) -> toolchain.CompiledContract:
    if language == "vyper":
        return toolchain.compile_vyper((ERC20_DIR / "Token.vy").read_text(), name="Token")
    return toolchain.compile_solidity((ERC20_DIR / "Token.sol").read_text(), "Token")


class EngineChain:
    """A state tree that takes each successful message's writes, as a block would."""

    def __init__(self) -> None:
        self.tree = StateTree.empty(SUITE.hash)
        self.nonce = 0

    def run(self, message: evm.EvmMessage) -> evm.ExecutionResult:
        result = evm.execute(self.tree, message, BLOCK)
        if not result.ok:
            raise RuntimeError(f"{result.code}: {result.message}")
        self.tree = self.tree.update(result.writes)
        return result


def bench_engine_transfer(language: str, calls: int) -> dict[str, float]:
    contract = compile_token(language)
    chain = EngineChain()
    holder = SUITE.hash(b"holder")[:20]
    init = contract.init_code + token_constructor("Bench Token", "BT", 18, SUPPLY)
    created = chain.run(evm.EvmMessage(holder, None, init, 3_000_000, nonce=0)).created
    assert created is not None
    recipients = [SUITE.hash(b"recipient %d" % i)[:20] for i in range(1_000)]
    messages = [
        evm.EvmMessage(
            holder,
            created,
            call_data("transfer(address,uint256)", recipients[i % len(recipients)], 1 + i % 7),
            CALL_GAS,
            nonce=1 + i,
        )
        for i in range(calls)
    ]
    gas = 0
    start = time.perf_counter()
    for message in messages:
        gas += chain.run(message).gas_used
    elapsed = time.perf_counter() - start
    return {
        f"erc20_transfer_{language}_engine_calls_per_s": round(calls / elapsed),
        f"erc20_transfer_{language}_gas_per_call": round(gas / calls),
    }


def compile_escrow() -> toolchain.CompiledContract:
    """PrepaidEscrow with its import of the interfaces inlined (the toolchain compiles one
    source)."""
    source = ESCROW_SOURCE.read_text()
    interfaces = (EXAMPLES / "interfaces" / "IConsortia.sol").read_text().splitlines()
    inlined = "\n".join(x for x in interfaces if not x.startswith(("// SPDX", "pragma ")))
    return toolchain.compile_solidity(source.replace(INTERFACES_IMPORT, inlined), "PrepaidEscrow")


class Members:
    """A fresh single-process chain (the demo genesis of ``init_home``) and its member accounts,
    each signing with its own nonce."""

    def __init__(self, chain: LocalChain, accounts: dict[str, KeyPair]) -> None:
        self.chain = chain
        self.accounts = accounts
        self.nonces: dict[str, int] = {}

    def addr(self, name: str) -> bytes:
        return self.chain.suite.address(self.accounts[name].public_key)

    def tx(self, name: str, module: str, method: str, args: dict[str, Any]) -> Transaction:
        nonce = self.nonces.get(name, 0)
        self.nonces[name] = nonce + 1
        return sign_transaction(
            self.chain.suite,
            self.accounts[name],
            chain_id=self.chain.state.chain_id,
            nonce=nonce,
            module=module,
            method=method,
            args=args,
        )

    def commit_ok(self, txs: Sequence[Transaction]) -> list[dict[str, Any]]:
        """Commit ``txs`` in one block; every one must succeed. Returns their events."""
        committed = self.chain.commit(txs)
        events: list[dict[str, Any]] = []
        for receipt in committed.receipts:
            if receipt.status != TxStatus.OK:
                raise RuntimeError(f"{receipt.code}: {receipt.message}")
            events.extend({"kind": e.kind, **e.attributes} for e in receipt.events)
        return events

    def voters(self) -> list[str]:
        """One org_admin account per voting organization of the genesis."""
        kinds = {o.org_id: o.kind for o in self.chain.genesis.orgs}
        seen: dict[str, str] = {}
        for account in self.chain.genesis.accounts:
            voting = kinds.get(account.org_id) not in NON_VOTING_KINDS
            if voting and "org_admin" in account.roles and account.name in self.accounts:
                seen.setdefault(account.org_id, account.name)
        return list(seen.values())

    def approve_code(self, code: bytes) -> None:
        """Pass a governance ``approve_code`` proposal: votes until the threshold is reached."""
        code_hash = contracts.code_hash(self.chain.suite, code)
        first, *others = self.voters()
        args = {"action": "approve_code", "subject": code_hash, "reason": "benchmark"}
        events = self.commit_ok([self.tx(first, "governance", "propose_contract", args)])
        (pid,) = [e["proposal_id"] for e in events if e["kind"] == "proposal_opened"]
        for who in others:
            if contracts.is_approved(self.chain.state.tree, code_hash):
                break
            self.commit_ok([self.tx(who, "governance", "approve", {"proposal_id": pid})])
        if not contracts.is_approved(self.chain.state.tree, code_hash):
            raise RuntimeError("the approve_code proposal did not pass")

    def deploy(self, name: str, compiled: toolchain.CompiledContract, args: bytes) -> bytes:
        self.approve_code(compiled.init_code)
        nonce = self.nonces.get(name, 0)
        tx_args = {"code": compiled.init_code, "args": args, "gas_limit": 5_000_000, "abi": ""}
        self.commit_ok([self.tx(name, "contracts", "deploy", tx_args)])
        return keys.create_address(self.addr(name), nonce)


def fresh_chain(tmp: str) -> Members:
    home = Path(tmp) / "node"
    init_home(home, suite_name="intl", password=PASSWORD, scrypt_n=1 << 10)
    chain = LocalChain(home, load_key_dir(home / VALIDATORS_DIR, PASSWORD))
    return Members(chain, load_key_dir(home / ACCOUNTS_DIR, PASSWORD))


def time_blocks(m: Members, work: list[list[Transaction]]) -> float:
    """Commit the pre-signed blocks; every transaction must succeed. Returns calls/s."""
    start = time.perf_counter()
    for block_txs in work:
        committed = m.chain.commit(block_txs)
        assert len(committed.block.transactions) == len(block_txs)
        for receipt in committed.receipts:
            if receipt.status != TxStatus.OK:
                raise RuntimeError(f"{receipt.code}: {receipt.message}")
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in work) / elapsed


def bench_chain_transfer(language: str, blocks: int, per_block: int) -> dict[str, float]:
    contract = compile_token(language)
    with tempfile.TemporaryDirectory() as tmp:
        m = fresh_chain(tmp)
        try:
            holder = "broker-a-admin"
            ctor = token_constructor("Bench Token", "BT", 18, SUPPLY)
            token = m.deploy(holder, contract, ctor)
            recipients = [SUITE.hash(b"recipient %d" % i)[:20] for i in range(1_000)]
            work = [
                [
                    m.tx(
                        holder,
                        "contracts",
                        "call",
                        {
                            "address": token,
                            "data": call_data(
                                "transfer(address,uint256)",
                                recipients[(b * per_block + i) % len(recipients)],
                                1,
                            ),
                            "gas_limit": CALL_GAS,
                        },
                    )
                    for i in range(per_block)
                ]
                for b in range(blocks)
            ]
            rate = time_blocks(m, work)
        finally:
            m.chain.close()
    return {f"erc20_transfer_{language}_chain_calls_per_s": round(rate)}


def bench_chain_escrow_release(blocks: int, per_block: int) -> dict[str, float]:
    contract = compile_escrow()
    with tempfile.TemporaryDirectory() as tmp:
        m = fresh_chain(tmp)
        try:
            merchant, holder = "broker-a-admin", "broker-b-admin"
            far_future_s = 4_000_000_000  # the cards never expire during the run
            ctor = abi_encode(
                ["address", "string", "string", "uint256"],
                [m.addr(merchant), "W-ESC", "W-MERCHANT", far_future_s],
            )
            escrow = m.deploy(merchant, contract, ctor)
            calls = blocks * per_block
            m.commit_ok(
                [
                    m.tx(
                        "pboc-admin",
                        "ecny",
                        "issue",
                        {"operator_org": "bank-ccb", "amount": 10**9, "reserve_reference": "RR-1"},
                    )
                ]
            )
            # The escrow wallet is the contract's own; both wallets are corporate category 1
            # (no per-payment or daily limit), opened by the operator bank.
            m.commit_ok(
                [
                    open_wallet_tx(m, "W-ESC", escrow),
                    open_wallet_tx(m, "W-MERCHANT", m.addr(merchant)),
                ]
            )
            load = {"wallet_id": "W-ESC", "amount": calls}
            m.commit_ok([m.tx("ccb-admin", "ecny", "load", load)])
            issue = keccak(b"issueCard(string,address,string,uint256)")[:4] + abi_encode(
                ["string", "address", "string", "uint256"],
                ["CARD-1", m.addr(holder), "W-MERCHANT", calls],
            )
            call = {"address": escrow, "data": issue, "gas_limit": 1_000_000}
            m.commit_ok([m.tx(merchant, "contracts", "call", call)])
            release = keccak(b"release(string,uint256)")[:4] + abi_encode(
                ["string", "uint256"], ["CARD-1", 1]
            )
            work = [
                [
                    m.tx(
                        holder,
                        "contracts",
                        "call",
                        {"address": escrow, "data": release, "gas_limit": 1_000_000},
                    )
                    for _ in range(per_block)
                ]
                for _ in range(blocks)
            ]
            rate = time_blocks(m, work)
            # Every release paid the merchant 1 fen out of the contract's wallet.
            paid = wallet_balance(m, "W-MERCHANT"), wallet_balance(m, "W-ESC")
            if paid != (calls, 0):
                raise RuntimeError(f"unexpected wallet balances after the releases: {paid}")
        finally:
            m.chain.close()
    return {"escrow_release_chain_calls_per_s": round(rate)}


def wallet_balance(m: Members, wallet_id: str) -> int:
    raw = m.chain.state.tree.get(wallet_key(wallet_id))
    if raw is None:
        raise RuntimeError(f"no wallet {wallet_id}")
    return decode_record(Wallet, raw).balance


def open_wallet_tx(m: Members, wallet_id: str, owner: bytes) -> Transaction:
    identity = {
        "name": f"Holder of {wallet_id}",
        "id_type": "business_license",
        "id_number": f"91310000{sum(map(ord, wallet_id)):010d}",
        "phone": "13900139000",
    }
    commitment, sealed, _ = seal_identity(
        m.chain.suite,
        identity,
        m.accounts["ccb-admin"].public_key,
        m.accounts["regulator"].public_key,
    )
    args = {
        "wallet_id": wallet_id,
        "owner": owner,
        "kind": "corporate",
        "category": 1,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    return m.tx("ccb-admin", "ecny", "open_wallet", args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    args = parser.parse_args()
    q = args.quick
    started = time.perf_counter()
    results: dict[str, float | str] = {"machine_cores": os.cpu_count() or 0}
    # Progress on stderr (a bar on a terminal); stdout is a summary, then the JSON result.
    blocks, per_block = (1, 50) if q else (5, 200)
    with stages("contract benchmarks", 5) as stage:
        for language in ("vyper", "solidity"):
            stage(f"ERC-20 transfer ({language}, engine)")
            results.update(bench_engine_transfer(language, 200 if q else 3_000))
            stage(f"ERC-20 transfer ({language}, chain)")
            results.update(bench_chain_transfer(language, blocks, per_block))
        stage("escrow release (chain)")
        results.update(bench_chain_escrow_release(blocks, per_block))
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    for language in ("vyper", "solidity"):
        print(
            f"ERC-20 transfer ({language}): "
            f"{results[f'erc20_transfer_{language}_chain_calls_per_s']} calls/s through "
            f"apply_block, {results[f'erc20_transfer_{language}_engine_calls_per_s']} calls/s "
            "engine alone"
        )
    print(
        f"escrow release: {results['escrow_release_chain_calls_per_s']} calls/s through apply_block"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
