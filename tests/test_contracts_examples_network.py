"""The example contracts of examples/contracts/ on a real network of 4 validator processes.

Governance approves each example's code hash (votes from the voting organizations), the issuer
deploys it, and ordinary signed transactions set up what it needs: e-CNY wallets opened by an
operator bank for the contract's address, a securities account owned by the contract, holdings,
a regulator's wallet freeze, a court's account freeze. Each story then runs end to end through
``contracts.call`` transactions; outcomes are read from the receipts (decoded from the blocks a
node stores) and from the state of several nodes, each value checked against its node's state
root with a proof. Two of the contracts break a native rule — a refund beyond the escrow wallet's
per-payment limit, a release of frozen shares — and the call reverts with the module's code and
changes nothing. Every test ends with all validators holding the same block, hence the same
state root, at the same height.

The in-process twins of these stories are in ``tests/test_contracts_examples.py``; real block
times come from consensus here, so the schedules are set relative to the chain's clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_hash.auto import keccak

from consortia import codec
from consortia.contracts import keys, toolchain
from consortia.contracts.precompiles import abi_decode, abi_encode
from consortia.crypto import KeyPair, decrypt_key_file, get_suite
from consortia.execution.consortium import DEFAULT_ACCOUNTS
from consortia.ledger.state_tree import StateProof, verify_state_proof
from consortia.ledger.types import Event, Receipt, Transaction, decode_block, decode_receipts
from consortia.modules import contracts
from consortia.modules.ecny import Wallet, wallet_key
from consortia.modules.investors import seal_identity
from consortia.modules.securities import Holding, holding_key
from consortia.node.local import load_genesis
from tests.chainkit import Consortium
from tests.ecnykit import open_wallet_tx, wallet_identity
from tests.govkit import approvals_needed, voters, voting_orgs
from tests.netkit import PASSWORD, LocalNet
from tests.test_contracts_examples import coupon_payer, prepaid_escrow, vesting
from tests.test_contracts_precompiles import calldata
from tests.test_investors import identity_of, open_account_tx, open_investor_tx, register
from tests.test_securities import INVESTORS, _org, apply_args

CHAIN_ID = "consortia-local"
GAS = 3_000_000
DAY_S = 86_400
# Restricted shares vest at 1 000 a second, so a release a second later always has some.
VEST_TOTAL = 3_600_000
VEST_DURATION_S = 3_600
# Solidity storage slots (immutables take none): PrepaidEscrow's `outstandingFen` and `cards`,
# RestrictedShareVesting's `released`.
ESCROW_OUTSTANDING_SLOT, ESCROW_CARDS_SLOT, VESTING_RELEASED_SLOT = 3, 4, 3


class NetConsortium(Consortium):
    """``chainkit.Consortium`` signing for the local network's chain id, with the network's own
    account keys, so the transaction builders of the in-process tests serve here too."""

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
        return super().tx(who, module, method, args, sender=sender, nonce=nonce, chain_id=chain_id)


@dataclass(frozen=True)
class Landed:
    """A committed transaction: its block height and its receipt, as a node stores them."""

    height: int
    receipt: Receipt

    @property
    def code(self) -> str:
        return self.receipt.code

    def events(self, module: str, kind: str) -> list[Event]:
        return [e for e in self.receipt.events if (e.module, e.kind) == (module, kind)]

    def logs(self, signature: str) -> list[Event]:
        """The contract's logs whose first topic is ``signature``'s hash."""
        topic = bytes(keccak(signature.encode()))
        return [e for e in self.events("contracts", "log") if e.attributes["topics"][:1] == [topic]]

    def output(self, *types: str) -> tuple[Any, ...]:
        (called,) = self.events("contracts", "called")
        return abi_decode(list(types), called.attributes["output"])


@dataclass
class Chain:
    """The running network, the signer of every account and the deployed examples."""

    net: LocalNet
    c: NetConsortium
    escrow: bytes = b""
    payer: bytes = b""
    grant: bytes = b""
    vest_start: int = 0
    head: int = 0  # the height of the last block a transaction of this test landed in
    readers: list[str] = field(default_factory=list)

    def reader(self) -> str:
        """Reads rotate over validators 1..3 (transactions go to validator-0)."""
        self.readers = self.readers[1:] or ["validator-1", "validator-2", "validator-3"]
        return self.readers[0]

    def submit(self, *txs: Transaction) -> list[Landed]:
        """Send ``txs`` together and wait until each is committed; their receipts are read from
        another validator's stored block."""
        reply = self.net.request(
            "validator-0",
            "tx.submit_many",
            {"txs": [t.encode() for t in txs], "wait": True},
            timeout_s=90,
        )
        assert reply["ok"] is True, reply
        results = list(reply["results"])
        assert all("height" in r for r in results), results  # each admitted and committed
        self.head = max(self.head, *(int(r["height"]) for r in results))
        node = self.reader()
        self.net.wait_for([node], self.head)
        landed = []
        for r in results:
            stored = decode_receipts(self.net.block(node, int(r["height"]))["receipts"])
            (receipt,) = [x for x in stored.receipts if x.tx_hash == r["tx_hash"]]
            assert receipt.code == r["code"]
            landed.append(Landed(int(r["height"]), receipt))
        return landed

    def ok(self, *txs: Transaction) -> list[Landed]:
        landed = self.submit(*txs)
        failed = [(x.code, x.receipt.message) for x in landed if x.code]
        assert not failed, failed
        return landed

    def call(self, who: str, contract: bytes, signature: str, *args: Any) -> Transaction:
        data = calldata(signature, *args)
        return self.c.tx(
            who, "contracts", "call", {"address": contract, "data": data, "gas_limit": GAS}
        )

    def reverted(self, tx: Transaction, reason: str) -> None:
        """``tx`` fails in the contract's own ``require`` with ``reason``, emitting nothing."""
        (landed,) = self.submit(tx)
        assert landed.code == "EVM_REVERTED" and reason in landed.receipt.message, landed
        assert landed.receipt.events == ()

    def read(self, key: bytes, node: str | None = None) -> bytes | None:
        """``key``'s value on ``node`` (once it has the last landed block), proved against that
        node's state root."""
        node = node or self.reader()
        self.net.wait_for([node], self.head)
        reply = self.net.request(node, "state.get", {"key": key})
        proof = StateProof.from_bytes(reply["proof"])
        assert proof.key == key
        value = verify_state_proof(self.c.suite.hash, reply["state_root"], proof)
        assert value == reply["value"]
        return value

    def snapshot(self, node: str, keys_: list[bytes]) -> dict[bytes, bytes | None]:
        return {k: self.read(k, node) for k in keys_}

    def fen(self, wallet_id: str) -> int:
        raw = self.read(wallet_key(wallet_id))
        assert raw is not None, wallet_id
        return codec.decode_struct(Wallet, raw).balance

    def shares(self, code: str, account_id: str) -> int:
        raw = self.read(holding_key(code, account_id))
        return 0 if raw is None else codec.decode_struct(Holding, raw).balance

    def word(self, contract: bytes, slot: int) -> int:
        raw = self.read(keys.storage_key(contract, slot))
        return 0 if raw is None else int.from_bytes(raw, "big")

    def block_time_s(self, height: int) -> int:
        """TIMESTAMP as the contracts saw it in block ``height``."""
        header = decode_block(self.net.block(self.reader(), height)["block"]).header
        return header.time_ms // 1000

    def head_time_s(self) -> int:
        status = self.net.status("validator-0")
        assert status is not None
        return self.block_time_s(int(status["height"]))

    def validators_agree(self) -> None:
        """All 4 validators store the same block at the head height (so the same state root),
        and each one's state, read with a proof, is that root at its own height."""
        status = self.net.status("validator-0")
        assert status is not None
        top = int(status["height"])
        self.net.wait_for(self.net.names, top)
        blocks = {n: self.net.block(n, top)["block"] for n in self.net.names}
        assert len(set(blocks.values())) == 1, f"validators differ at height {top}"
        for name in self.net.names:
            reply = self.net.request(name, "state.get", {"key": wallet_key("W-A")})
            proof = StateProof.from_bytes(reply["proof"])
            assert verify_state_proof(self.c.suite.hash, reply["state_root"], proof) is not None
            header = decode_block(self.net.block(name, int(reply["height"]))["block"])
            assert header.header.state_root == reply["state_root"], name


def contract_wallet_tx(c: Consortium, wallet_id: str, owner: bytes, category: int) -> Transaction:
    """bank-ccb opens a corporate wallet for contract ``owner``."""
    commitment, sealed, _ = seal_identity(
        c.suite,
        wallet_identity(wallet_id),
        c.accounts["ccb-admin"].public_key,
        c.accounts["regulator"].public_key,
    )
    args = {
        "wallet_id": wallet_id,
        "owner": owner,
        "kind": "corporate",
        "category": category,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    return c.tx("ccb-admin", "ecny", "open_wallet", args)


def contract_investor_tx(c: Consortium, investor_id: str, owner: bytes) -> Transaction:
    """broker-a opens an institutional investor for contract ``owner``."""
    commitment, sealed, _ = seal_identity(
        c.suite,
        identity_of(investor_id),
        c.accounts["broker-a-admin"].public_key,
        c.accounts["regulator"].public_key,
    )
    args = {
        "investor_id": investor_id,
        "kind": "institutional",
        "kyc_level": 3,
        "risk_tolerance": 5,
        "qualified": True,
        "address": owner,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    return c.tx("broker-a-admin", "investors", "open_investor", args)


def load(c: Consortium, operator: str, wallet_id: str, amount: int) -> Transaction:
    return c.tx(operator, "ecny", "load", {"wallet_id": wallet_id, "amount": amount})


def pay(c: Consortium, who: str, src: str, dst: str, amount: int) -> Transaction:
    args = {"from_wallet": src, "to_wallet": dst, "amount": amount, "memo": "prepaid card"}
    return c.tx(who, "ecny", "pay", args)


def securities_issue(c: Consortium, code: str, account: str, amount: int) -> Transaction:
    args = {"code": code, "account_id": account, "amount": amount}
    return c.tx("issuer", "securities", "issue", args)


def card_slot(card_id: str, member: int) -> int:
    """Storage slot of field ``member`` of ``cards[card_id]`` (Solidity: a string key's mapping
    slot is keccak256(key ‖ the mapping's slot))."""
    base = keccak(card_id.encode() + ESCROW_CARDS_SLOT.to_bytes(32, "big"))
    return int.from_bytes(bytes(base), "big") + member


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A 4-validator network with the cash world of ``tests/ecnykit.py`` (the part the stories
    use) and the three examples approved by governance and deployed by the issuer."""
    examples = (prepaid_escrow(), coupon_payer(), vesting())  # compiled once per session
    net = LocalNet(Path(tmp_path_factory.mktemp("examples-net")), validators=4)
    try:
        net.start_all()
        net.wait_for(net.names, 2)
        genesis = load_genesis(net.home)
        suite = get_suite(genesis.suite)
        signers = {
            spec.name: decrypt_key_file(
                (net.home / "accounts" / f"{spec.name}.key").read_bytes(), PASSWORD
            )
            for spec in DEFAULT_ACCOUNTS
        }
        ch = Chain(net, NetConsortium(suite, genesis, [], signers, {}))
        c = ch.c
        votes = voters(genesis.orgs, genesis.accounts)
        need = approvals_needed(len(voting_orgs(genesis.orgs)))

        # Governance: one approve_code proposal per example, e-CNY issued to both operators.
        hashes = [contracts.code_hash(suite, x.init_code) for x in examples]
        opened = ch.ok(
            c.tx("exchange-admin", "registry", "register_org", _org("issuer-x", "issuer")),
            *(
                c.tx(
                    "pboc-admin",
                    "ecny",
                    "issue",
                    {"operator_org": org, "amount": 10**10, "reserve_reference": f"RR-{org}"},
                )
                for org in ("bank-ccb", "bank-bocom")
            ),
            *(
                c.tx(
                    votes[0],
                    "governance",
                    "propose_contract",
                    {"action": "approve_code", "subject": h, "reason": "reviewed example"},
                )
                for h in hashes
            ),
        )
        pids = [
            e.attributes["proposal_id"]
            for x in opened
            for e in x.events("governance", "proposal_opened")
        ]
        assert len(pids) == len(hashes)
        assert all(ch.read(contracts.approval_key(h)) is None for h in hashes)
        approved = ch.ok(
            register(c, "issuer", "issuer-x", ("issuer",)),
            *(
                register(c, owner, broker[:8], ("investor",))
                for _, owner, broker, _, _ in INVESTORS[:3]
            ),
            *(
                c.tx(who, "governance", "approve", {"proposal_id": pid})
                for who in votes[1:need]
                for pid in pids
            ),
        )
        done = [
            e.attributes["code_hash"]
            for x in approved
            for e in x.events("contracts", "code_approved")
        ]
        assert sorted(done) == sorted(hashes)
        for node in net.names[1:]:
            net.wait_for([node], approved[-1].height)
            assert all(ch.read(contracts.approval_key(h), node) for h in hashes)

        ch.ok(
            *(
                tx
                for inv_id, owner, broker, tol, q in INVESTORS[:3]
                for tx in (
                    open_investor_tx(c, broker, inv_id, owner, tolerance=tol, qualified=q),
                    open_account_tx(c, broker, "SA-" + inv_id[-1], inv_id),
                )
            ),
            open_wallet_tx(c, "ccb-admin", "W-A", "inv-a", category=2),
            open_wallet_tx(c, "bocom-admin", "W-B", "inv-b", category=2),
            open_wallet_tx(c, "ccb-admin", "W-C", "inv-c", category=2),
            open_wallet_tx(c, "ccb-admin", "W-ISSUER", "issuer", category=1, kind="corporate"),
            c.tx("issuer", "securities", "apply", apply_args("BOND1", kind="bond", risk_level=1)),
            c.tx("issuer", "securities", "apply", apply_args("RS1", authorized=VEST_TOTAL)),
        )

        # The issuer deploys the three examples (addresses: CREATE with the tx nonce).
        now = ch.head_time_s()
        ch.vest_start = now - 60  # granted a minute ago, no cliff
        issuer = c.addr("issuer")
        ctors = [
            abi_encode(
                ["address", "string", "string", "uint256"],
                [issuer, "W-ESC", "W-ISSUER", now + 90 * DAY_S],
            ),
            # Two coupon dates have passed (200 and 18 days ago); the third is months away.
            abi_encode(
                ["string", "string", "uint256", "uint256", "uint256", "uint256"],
                ["BOND1", "W-CPN", 350, now - 200 * DAY_S, 182 * DAY_S, 4],
            ),
            abi_encode(
                ["address", "string", "string", "string"] + ["uint256"] * 4,
                [
                    c.addr("inv-a"),
                    "RS1",
                    "SA-V",
                    "SA-A",
                    VEST_TOTAL,
                    ch.vest_start,
                    0,
                    VEST_DURATION_S,
                ],
            ),
        ]
        addresses, deploys = [], []
        for compiled, ctor in zip(examples, ctors, strict=True):
            addresses.append(keys.create_address(issuer, c.nonces.get(issuer, 0)))
            deploys.append(deploy_tx(c, compiled, ctor))
        ch.escrow, ch.payer, ch.grant = addresses
        landed = ch.ok(
            c.tx("exchange-admin", "securities", "approve", {"code": "BOND1", "reason": "ok"}),
            c.tx("exchange-admin", "securities", "approve", {"code": "RS1", "reason": "ok"}),
            *deploys,
            load(c, "ccb-admin", "W-A", 1_000_000),
            load(c, "bocom-admin", "W-B", 1_000_000),
        )
        deployed = [e.attributes for x in landed for e in x.events("contracts", "deployed")]
        assert [d["address"] for d in deployed] == addresses
        assert [d["code_hash"] for d in deployed] == hashes
        assert all(d["deployer"] == issuer for d in deployed)
        for address in addresses:
            info = ch.read(contracts.info_key(address))
            assert info is not None and ch.read(keys.code_key(address))

        # What the contracts act on, opened for their addresses by ordinary transactions.
        ch.ok(
            contract_wallet_tx(c, "W-ESC", ch.escrow, category=3),  # ¥5,000 a payment
            contract_wallet_tx(c, "W-CPN", ch.payer, category=1),
            contract_investor_tx(c, "INV-V", ch.grant),
            securities_issue(c, "BOND1", "SA-A", 1_000),
            securities_issue(c, "BOND1", "SA-B", 500),
        )
        ch.ok(
            load(c, "ccb-admin", "W-CPN", 10_000_000),
            open_account_tx(c, "broker-a-admin", "SA-V", "INV-V"),
        )
        yield ch
    finally:
        net.stop_all()


def deploy_tx(c: Consortium, compiled: toolchain.CompiledContract, ctor: bytes) -> Transaction:
    args = {"code": compiled.init_code, "args": ctor, "gas_limit": GAS, "abi": ""}
    return c.tx("issuer", "contracts", "deploy", args)


# ---------------------------------------------------------------------------------------------
# Prepaid funds escrow (Solidity)


def test_prepaid_escrow_on_the_network(chain: Chain) -> None:
    ch, c, escrow = chain, chain.c, chain.escrow
    issue = "issueCard(string,address,string,uint256)"
    alice, bob = c.addr("inv-a"), c.addr("inv-b")

    ch.reverted(ch.call("issuer", escrow, issue, "CARD-1", alice, "W-A", 300_000), "not in escrow")
    ch.ok(pay(c, "inv-a", "W-A", "W-ESC", 300_000), pay(c, "inv-b", "W-B", "W-ESC", 600_000))
    issued = ch.ok(
        ch.call("issuer", escrow, issue, "CARD-1", alice, "W-A", 300_000),
        ch.call("issuer", escrow, issue, "CARD-2", bob, "W-B", 600_000),
    )
    assert [len(x.logs("CardIssued(string,address,uint256)")) for x in issued] == [1, 1]
    assert ch.word(escrow, ESCROW_OUTSTANDING_SLOT) == 900_000

    # Alice uses ¥500 of services: the merchant is paid from the escrow wallet.
    merchant_before = ch.fen("W-ISSUER")
    (used,) = ch.ok(ch.call("inv-a", escrow, "release(string,uint256)", "CARD-1", 50_000))
    kinds = [(e.module, e.kind) for e in used.receipt.events]
    assert kinds == [("ecny", "payment"), ("contracts", "log"), ("contracts", "called")]
    (payment,) = used.events("ecny", "payment")
    assert (payment.attributes["payer"], payment.attributes["payee"]) == ("W-ESC", "W-ISSUER")
    assert payment.attributes["amount_fen"] == 50_000
    assert ch.fen("W-ESC") == 850_000 and ch.fen("W-ISSUER") == merchant_before + 50_000
    assert ch.word(escrow, card_slot("CARD-1", 2)) == 250_000

    ch.reverted(ch.call("inv-b", escrow, "release(string,uint256)", "CARD-1", 1), "only the card")
    ch.reverted(ch.call("inv-a", escrow, "refund(string)", "CARD-1"), "still in use")
    ch.reverted(ch.call("issuer", escrow, "declareDefault()"), "only the regulator")
    (default,) = ch.ok(ch.call("regulator", escrow, "declareDefault()"))
    assert len(default.logs("MerchantDefaulted(address)")) == 1

    alice_before = ch.fen("W-A")
    (back,) = ch.ok(ch.call("inv-a", escrow, "refund(string)", "CARD-1"))
    assert len(back.logs("Refunded(string,uint256)")) == 1
    assert ch.fen("W-A") == alice_before + 250_000 and ch.fen("W-ESC") == 600_000

    # Bob's ¥6,000 refund is beyond the category-3 escrow wallet's ¥5,000 per payment: the
    # wallet rule's code, no events, and not one record changes on any node.
    watched = [
        wallet_key("W-ESC"),
        wallet_key("W-B"),
        keys.storage_key(escrow, ESCROW_OUTSTANDING_SLOT),
        keys.storage_key(escrow, card_slot("CARD-2", 2)),
    ]
    before = ch.snapshot("validator-2", watched)
    assert before[keys.storage_key(escrow, card_slot("CARD-2", 2))] == (600_000).to_bytes(32, "big")
    (too_big,) = ch.submit(ch.call("inv-b", escrow, "refund(string)", "CARD-2"))
    assert too_big.code == "PER_PAYMENT_LIMIT_EXCEEDED", too_big.receipt.message
    assert too_big.receipt.events == ()
    ch.net.wait_for(ch.net.names, too_big.height)
    for node in ch.net.names:
        assert ch.snapshot(node, watched) == before, node
    assert ch.word(escrow, ESCROW_OUTSTANDING_SLOT) == 600_000

    # After stronger KYC the operator upgrades the wallet to category 2; the refund goes through.
    commitment, sealed, _ = seal_identity(
        c.suite,
        wallet_identity("W-ESC"),
        c.accounts["ccb-admin"].public_key,
        c.accounts["regulator"].public_key,
    )
    upgrade = {
        "wallet_id": "W-ESC",
        "category": 2,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    ch.ok(c.tx("ccb-admin", "ecny", "upgrade_wallet", upgrade))
    bob_before = ch.fen("W-B")
    ch.ok(ch.call("inv-b", escrow, "refund(string)", "CARD-2"))
    assert ch.fen("W-B") == bob_before + 600_000 and ch.fen("W-ESC") == 0
    assert ch.word(escrow, ESCROW_OUTSTANDING_SLOT) == 0
    ch.validators_agree()


# ---------------------------------------------------------------------------------------------
# Bond coupon payer (Vyper)


def payments(landed: Landed) -> list[tuple[str, int]]:
    return [
        (e.attributes["payee"], e.attributes["amount_fen"])
        for e in landed.events("ecny", "payment")
    ]


def test_coupon_payer_on_the_network(chain: Chain) -> None:
    ch, c, payer = chain, chain.c, chain.payer
    register_ = "register(string,string)"
    ch.ok(
        ch.call("issuer", payer, register_, "SA-A", "W-A"),
        ch.call("issuer", payer, register_, "SA-B", "W-B"),
        ch.call("issuer", payer, register_, "SA-C", "W-C"),  # holds no bonds yet
    )
    ch.reverted(ch.call("inv-a", payer, register_, "SA-D", "W-A"), "only the issuer")

    # A frozen paying wallet pays nothing: the whole period reverts with the wallet's code.
    freeze = {"wallet_id": "W-CPN", "reference": "inquiry"}
    ch.ok(c.tx("regulator", "ecny", "freeze_wallet", freeze))
    watched = [wallet_key(w) for w in ("W-CPN", "W-A", "W-B")]
    before = ch.snapshot("validator-3", watched)
    (frozen,) = ch.submit(ch.call("issuer", payer, "pay_coupon(uint256)", 0))
    assert frozen.code == "WALLET_FROZEN" and frozen.receipt.events == ()
    ch.net.wait_for(["validator-3"], frozen.height)
    assert ch.snapshot("validator-3", watched) == before
    ch.ok(c.tx("regulator", "ecny", "unfreeze_wallet", freeze))

    a, b, cpn = ch.fen("W-A"), ch.fen("W-B"), ch.fen("W-CPN")
    (paid,) = ch.ok(ch.call("inv-c", payer, "pay_coupon(uint256)", 0))  # anyone may trigger
    assert paid.output("uint256") == (525_000,)
    assert payments(paid) == [("W-A", 350_000), ("W-B", 175_000)]
    assert len(paid.logs("CouponPaid(uint256,string,uint256,uint256)")) == 2
    assert len(paid.logs("PeriodPaid(uint256,uint256)")) == 1
    assert (ch.fen("W-A"), ch.fen("W-B")) == (a + 350_000, b + 175_000)
    assert ch.fen("W-CPN") == cpn - 525_000

    ch.reverted(ch.call("issuer", payer, "pay_coupon(uint256)", 0), "already paid")
    ch.reverted(ch.call("issuer", payer, "pay_coupon(uint256)", 2), "not yet due")
    ch.reverted(ch.call("issuer", payer, "pay_coupon(uint256)", 4), "no such period")

    # The holders of record change (SA-B sells 300 to SA-C); period 1 pays the new ones.
    move = {
        "code": "BOND1",
        "from_account": "SA-B",
        "to_account": "SA-C",
        "amount": 300,
        "memo": "",
    }
    ch.ok(c.tx("broker-b-admin", "securities", "transfer", move))
    (second,) = ch.ok(ch.call("issuer", payer, "pay_coupon(uint256)", 1))
    assert payments(second) == [("W-A", 350_000), ("W-B", 70_000), ("W-C", 105_000)]
    assert second.output("uint256") == (525_000,)
    assert ch.fen("W-CPN") == cpn - 1_050_000
    ch.validators_agree()


# ---------------------------------------------------------------------------------------------
# Restricted-share vesting (Solidity)


def test_vesting_on_the_network(chain: Chain) -> None:
    ch, c, grant = chain, chain.c, chain.grant

    def vested(height: int) -> int:
        """What has vested by the time of block ``height`` (the contract's rule)."""
        elapsed = ch.block_time_s(height) - ch.vest_start
        return min(VEST_TOTAL, VEST_TOTAL * elapsed // VEST_DURATION_S)

    ch.ok(securities_issue(c, "RS1", "SA-V", VEST_TOTAL))
    ch.reverted(ch.call("issuer", grant, "release()"), "only the beneficiary")
    (released,) = ch.ok(ch.call("inv-a", grant, "release()"))
    first = vested(released.height)
    assert 0 < first < VEST_TOTAL
    assert released.output("uint256") == (first,)
    assert [e.kind for e in released.receipt.events if e.module == "securities"][-1:] == [
        "transferred"
    ]
    assert ch.shares("RS1", "SA-A") == first
    assert ch.shares("RS1", "SA-V") == VEST_TOTAL - first
    assert ch.word(grant, VESTING_RELEASED_SLOT) == first

    # A court freezes the vesting account. Later (more has vested) the release is refused with
    # the enforcement rule's code, and nothing changes, the contract's `released` included.
    freeze = {
        "freeze_id": "F-V",
        "code": "",
        "account_id": "SA-V",
        "amount": 0,
        "reference": "(2026) Hu 01 Zhi F-V",
        "expires_at_ms": (ch.head_time_s() + 365 * DAY_S) * 1000,
    }
    (frozen_at,) = ch.ok(c.tx("court-officer", "enforcement", "freeze", freeze))
    time.sleep(1.1)  # the next block's second is later: releasable is positive
    watched = [
        holding_key("RS1", "SA-V"),
        holding_key("RS1", "SA-A"),
        keys.storage_key(grant, VESTING_RELEASED_SLOT),
    ]
    before = ch.snapshot("validator-1", watched)
    (refused,) = ch.submit(ch.call("inv-a", grant, "release()"))
    assert vested(refused.height) > first  # there was something to release
    assert refused.code == "ACCOUNT_FROZEN", refused.receipt.message
    assert refused.receipt.events == ()
    ch.net.wait_for(ch.net.names, refused.height)
    for node in ch.net.names:
        assert ch.snapshot(node, watched) == before, node
    assert ch.word(grant, VESTING_RELEASED_SLOT) == first
    assert frozen_at.height < refused.height

    # Lifted, the release catches up with everything vested by then.
    lift = {"freeze_id": "F-V", "reference": "lifted"}
    ch.ok(c.tx("court-officer", "enforcement", "unfreeze", lift))
    (caught_up,) = ch.ok(ch.call("inv-a", grant, "release()"))
    total = vested(caught_up.height)
    assert caught_up.output("uint256") == (total - first,)
    assert ch.shares("RS1", "SA-A") == total
    assert ch.shares("RS1", "SA-V") == VEST_TOTAL - total
    assert ch.word(grant, VESTING_RELEASED_SLOT) == total
    ch.validators_agree()
