"""The business story the demos tell: securities, e-CNY and settlement, through signed transactions.

One scenario, run by both demos against whatever runs the chain (an in-process ``LocalChain`` or a
network of node processes): ``StoryChain`` is the little it needs — submit signed transactions and
learn their outcomes, read a state value. Every figure the story prints is read back from the
chain's state after the step; every check compares it with what the rules say it must be.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from consortia import codec
from consortia.contracts import keys as evm_keys
from consortia.contracts import toolchain
from consortia.contracts.abi import ContractAbi
from consortia.crypto import CryptoError, KeyPair, Suite
from consortia.ledger.types import Transaction
from consortia.modules import ecny, enforcement, funds, governance, registry, securities
from consortia.modules.calendar import (
    HOUR_MS,
    cst_date,
    date_start_ms,
    next_trading_day,
    trading_day_of_order,
)
from consortia.modules.contracts import ContractInfo, approval_key, code_hash, info_key
from consortia.modules.investors import open_identity, seal_identity

T = TypeVar("T")
YUAN = 100  # fen
DAY_MS = 86_400_000

EXAMPLE_CONTRACTS: Final = Path(__file__).resolve().parents[3] / "examples" / "contracts"
_INTERFACE_IMPORT: Final = 'import "../interfaces/IConsortia.sol";'
CONTRACT_GAS: Final = 3_000_000  # ample for PrepaidEscrow's deployment and calls


@dataclass(frozen=True)
class Outcome:
    """What became of one submitted transaction."""

    ok: bool
    code: str
    height: int | None


class StoryChain(Protocol):
    def submit(self, txs: list[Transaction], label: str) -> list[Outcome]: ...

    def get(self, key: bytes) -> bytes | None: ...

    def now_ms(self) -> int:
        """About the block time of the next block."""
        ...

    def advance_to(self, time_ms: int) -> bool:
        """Make later blocks' time at least ``time_ms`` (a rehearsal clock); False if this chain
        runs on real time and cannot."""
        ...


Check = Callable[[str, bool, str], None]
SignTx = Callable[[KeyPair, str, str, dict[str, Any]], Transaction]


class Story:
    """Runs the business scenario on ``chain`` with the consortium's member keys ``keys``."""

    def __init__(
        self,
        chain: StoryChain,
        suite: Suite,
        keys: dict[str, KeyPair],
        sign: SignTx,
        check: Check,
        say: Callable[[str], None],
    ) -> None:
        self.chain = chain
        self.suite = suite
        self.keys = dict(keys)
        self.sign = sign
        self.check = check
        self.say = say
        # Transactions worth proving later (evidence bundles): label -> transaction hash.
        self.marks: dict[str, bytes] = {}

    # -- plumbing ------------------------------------------------------------------------------

    def tx(self, who: str, module: str, method: str, args: dict[str, Any]) -> Transaction:
        return self.sign(self.keys[who], module, method, args)

    def addr(self, who: str) -> bytes:
        return self.suite.address(self.keys[who].public_key)

    def run(self, label: str, txs: list[Transaction]) -> list[Outcome]:
        return self.chain.submit(txs, label)

    def must(self, label: str, txs: list[Transaction]) -> list[Outcome]:
        """Submit ``txs``; a check fails (naming the codes) unless every one succeeded."""
        out = self.run(label, txs)
        failed = [o.code for o in out if not o.ok]
        self.check(label, not failed, f"{len(out)} committed" if not failed else str(failed))
        return out

    def expect(self, label: str, tx: Transaction, code: str) -> None:
        """Submit one transaction the rules must refuse with ``code`` (and nothing changes)."""
        out = self.run(label, [tx])[0]
        self.check(label, not out.ok and out.code == code, out.code or "accepted!")

    def record(self, key: bytes, cls: type[T]) -> T | None:
        raw = self.chain.get(key)
        return None if raw is None else codec.decode_struct(cls, raw)

    def cash(self, wallet_id: str) -> int:
        w = self.record(ecny.wallet_key(wallet_id), ecny.Wallet)
        return -1 if w is None else w.balance

    def shares(self, code: str, account_id: str) -> int:
        h = self.record(securities.holding_key(code, account_id), securities.Holding)
        return 0 if h is None else h.balance

    # -- the scenario --------------------------------------------------------------------------

    def members(self) -> None:
        """An issuer joins; two brokers open investors whose identity is sealed."""
        for name in ("issuer", "alice", "bob", "carol", "dan"):
            self.keys[name] = self.suite.generate_keypair()
        self.must(
            "consortium admin admits an issuer",
            [
                self.tx(
                    "exchange-admin",
                    "registry",
                    "register_org",
                    {"org_id": "issuer-sz", "name": "Shenzhen Tech Co.", "kind": "issuer"},
                )
            ],
        )
        register = [
            ("exchange-admin", "issuer", "issuer-sz", ["issuer"]),
            ("broker-a-admin", "alice", "broker-a", ["investor"]),
            ("broker-b-admin", "bob", "broker-b", ["investor"]),
            ("ccb-admin", "carol", "bank-ccb", []),
            ("bocom-admin", "dan", "bank-bocom", []),
        ]
        self.must(
            "member firms register accounts (issuer, two investors, two citizens)",
            [
                self.tx(
                    who,
                    "registry",
                    "register_account",
                    {"public_key": self.keys[name].public_key, "org_id": org, "roles": roles},
                )
                for who, name, org, roles in register
            ],
        )
        opening = []
        for broker, name, inv_id, acct_id in (
            ("broker-a-admin", "alice", "INV-ALICE", "SA-ALICE"),
            ("broker-b-admin", "bob", "INV-BOB", "SA-BOB"),
        ):
            commitment, sealed, _ = seal_identity(
                self.suite,
                demo_identity(name),
                self.keys[broker].public_key,
                self.keys["regulator"].public_key,
            )
            opening.append(
                self.tx(
                    broker,
                    "investors",
                    "open_investor",
                    {
                        "investor_id": inv_id,
                        "kind": "individual",
                        "kyc_level": 2,
                        "risk_tolerance": 4,
                        "qualified": True,
                        "address": self.addr(name),
                        "identity_commitment": commitment,
                        "sealed_identity": sealed,
                    },
                )
            )
            opening.append(
                self.tx(
                    broker,
                    "investors",
                    "open_account",
                    {"account_id": acct_id, "investor_id": inv_id},
                )
            )
        self.must("brokers open investors (identity sealed) and securities accounts", opening)

    def listing(self) -> None:
        """The issuer registers a share; the exchange approves; shares are issued to alice."""
        self.must(
            "issuer applies to register 000001",
            [
                self.tx(
                    "issuer",
                    "securities",
                    "apply",
                    {
                        "code": "000001",
                        "name": "Shenzhen Tech A",
                        "kind": "equity",
                        "authorized": 1_000_000,
                        "decimals": 0,
                        "risk_level": 3,
                        "qualified_only": False,
                        "lockup_until_ms": 0,
                    },
                )
            ],
        )
        self.must(
            "exchange approves; issuer issues 100,000 shares to alice",
            [
                self.tx(
                    "exchange-admin",
                    "securities",
                    "approve",
                    {"code": "000001", "reason": "prospectus reviewed"},
                ),
                self.tx(
                    "issuer",
                    "securities",
                    "issue",
                    {"code": "000001", "account_id": "SA-ALICE", "amount": 100_000},
                ),
            ],
        )
        self.check(
            "alice holds the issued shares",
            self.shares("000001", "SA-ALICE") == 100_000,
            f"{self.shares('000001', 'SA-ALICE')} shares of 000001",
        )

    def wallets(self) -> None:
        """Two-tier e-CNY: the central bank issues to two operators; they open tiered wallets."""
        self.must(
            "central bank issues ¥10,000,000 to each operator bank",
            [
                self.tx(
                    "pboc-admin",
                    "ecny",
                    "issue",
                    {
                        "operator_org": org,
                        "amount": 10_000_000 * YUAN,
                        "reserve_reference": f"PBOC-RR-2026-{org}",
                    },
                )
                for org in ("bank-ccb", "bank-bocom")
            ],
        )
        opening = []
        for operator, wallet_id, owner, category, kind in (
            ("ccb-admin", "W-ALICE", "alice", 2, "personal"),
            ("bocom-admin", "W-BOB", "bob", 2, "personal"),
            ("ccb-admin", "W-CAROL", "carol", 4, "personal"),
            ("bocom-admin", "W-DAN", "dan", 4, "personal"),
            ("bocom-admin", "W-ISSUER", "issuer", 1, "corporate"),
        ):
            commitment, sealed, _ = seal_identity(
                self.suite,
                demo_identity(owner),
                self.keys[operator].public_key,
                self.keys["regulator"].public_key,
            )
            opening.append(
                self.tx(
                    operator,
                    "ecny",
                    "open_wallet",
                    {
                        "wallet_id": wallet_id,
                        "owner": self.addr(owner),
                        "kind": kind,
                        "category": category,
                        "identity_commitment": commitment,
                        "sealed_identity": sealed,
                    },
                )
            )
        self.must(
            "each operator opens category 2 and 4 wallets (and corporate category 1)", opening
        )
        self.must(
            "holders exchange deposits for e-CNY",
            [
                self.tx(
                    "ccb-admin", "ecny", "load", {"wallet_id": "W-ALICE", "amount": 400_000 * YUAN}
                ),
                self.tx(
                    "bocom-admin", "ecny", "load", {"wallet_id": "W-BOB", "amount": 300_000 * YUAN}
                ),
                self.tx(
                    "ccb-admin", "ecny", "load", {"wallet_id": "W-CAROL", "amount": 8_000 * YUAN}
                ),
                self.tx(
                    "bocom-admin", "ecny", "load", {"wallet_id": "W-DAN", "amount": 3_000 * YUAN}
                ),
            ],
        )
        self.expect(
            "a category 4 wallet cannot pay ¥2,000.01 (per-payment limit ¥2,000)",
            self.pay("carol", "W-CAROL", "W-ALICE", 200_001),
            "PER_PAYMENT_LIMIT_EXCEEDED",
        )
        self.must(
            "carol pays alice ¥2,000 and dan pays carol ¥1,000, across operators",
            [
                self.pay("carol", "W-CAROL", "W-ALICE", 2_000 * YUAN),
                self.pay("dan", "W-DAN", "W-CAROL", 1_000 * YUAN),
            ],
        )
        before = self.cash("W-BOB")
        large = self.pay("alice", "W-ALICE", "W-BOB", 50_000 * YUAN)
        self.must("alice pays bob ¥50,000 (large value: traceable)", [large])
        self.marks["payment"] = large.hash(self.suite)
        self.check(
            "bob's wallet received exactly ¥50,000",
            self.cash("W-BOB") - before == 50_000 * YUAN,
            f"¥{(self.cash('W-BOB') - before) / YUAN:,.2f}",
        )
        supply = self.record(ecny.SUPPLY_KEY, ecny.Supply)
        outstanding = -1 if supply is None else supply.issued - supply.redeemed
        self.check(
            "e-CNY supply = issued − redeemed",
            outstanding == 20_000_000 * YUAN,
            f"¥{outstanding / YUAN:,.2f} outstanding",
        )

    def pay(self, who: str, src: str, dst: str, amount: int) -> Transaction:
        return self.tx(
            who, "ecny", "pay", {"from_wallet": src, "to_wallet": dst, "amount": amount, "memo": ""}
        )

    def prepaid(self) -> None:
        """Prepaid-funds protection: carol's prepayment waits in escrow until she confirms."""
        self.must(
            "carol prepays ¥1,500 into escrow for the issuer's service",
            [
                self.tx(
                    "carol",
                    "ecny",
                    "create_escrow",
                    {
                        "escrow_id": "PREPAID-1",
                        "from_wallet": "W-CAROL",
                        "to_wallet": "W-ISSUER",
                        "amount": 1_500 * YUAN,
                        "condition": "payer",
                        "release_at_ms": 0,
                        "confirmer": b"",
                        "expires_at_ms": 4_102_444_800_000,  # 2100-01-01
                        "memo": "gym membership",
                    },
                )
            ],
        )
        self.expect(
            "the payee cannot release it itself",
            self.tx("issuer", "ecny", "release_escrow", {"escrow_id": "PREPAID-1"}),
            "NOT_AUTHORIZED",
        )
        self.must(
            "carol confirms: the escrow releases",
            [self.tx("carol", "ecny", "release_escrow", {"escrow_id": "PREPAID-1"})],
        )
        self.check(
            "the issuer's wallet received the prepayment",
            self.cash("W-ISSUER") == 1_500 * YUAN,
            f"¥{self.cash('W-ISSUER') / YUAN:,.2f}",
        )

    def voters(self) -> tuple[tuple[str, ...], int, int]:
        """Who casts each voting organization's vote, and how many approvals pass a proposal.

        Read from the chain, never assumed: the voting organizations are the active members of a
        voting kind (``registry.NON_VOTING_KINDS``), each voting through the first of the story's
        keys that is its org_admin; the threshold is governance's rule (two thirds, or the
        ``governance.threshold_bp`` parameter). Returns (voter key names in registry order, the
        approvals needed, the number of voting organizations)."""
        orgs = self.record(registry.ORG_LIST_KEY, registry.OrgList)
        voting = []
        for org_id in () if orgs is None else orgs.org_ids:
            org = self.record(registry.org_key(org_id), registry.Organization)
            if org is not None and org.active and org.kind not in registry.NON_VOTING_KINDS:
                voting.append(org_id)
        admins: dict[str, str] = {}
        for name in self.keys:
            acct = self.record(registry.account_key(self.addr(name)), registry.Account)
            if acct is not None and "org_admin" in acct.roles and acct.org_id in voting:
                admins.setdefault(acct.org_id, name)
        bp = self.record(governance.param_key(governance.THRESHOLD_PARAM), governance.ParamValue)
        n = len(voting)
        need = next(
            (
                k
                for k in range(1, n + 1)
                if (k * 3 >= n * 2 if bp is None else k * governance.BP >= n * bp.value)
            ),
            n + 1,  # no voting organization: nothing can pass
        )
        return tuple(admins[o] for o in voting if o in admins), need, n

    def call_contract(
        self, who: str, address: bytes, abi: ContractAbi, function: str, *args: Any
    ) -> Transaction:
        calldata = abi.encode_call(function, *args)
        return self.tx(
            who,
            "contracts",
            "call",
            {"address": address, "data": calldata, "gas_limit": CONTRACT_GAS},
        )

    def contracts(self) -> None:
        """Prepaid funds as a member's smart contract (PrepaidEscrow.sol): governance approves
        its code, the merchant deploys it, and money moves only under the e-CNY wallet rules."""
        compiled_label = (
            f"the merchant's PrepaidEscrow.sol compiles (solc {toolchain.SOLC_VERSION})"
        )
        try:
            compiled = prepaid_escrow()
        except (toolchain.ToolchainError, toolchain.CompileError, OSError) as exc:
            # No silent skip: the chapter fails, saying why (usually: run scripts/toolchain.sh).
            self.check(compiled_label, False, str(exc))
            return
        self.check(compiled_label, True, f"{len(compiled.init_code):,} bytes of init code")
        abi = ContractAbi.parse(list(compiled.abi))
        hash_ = code_hash(self.suite, compiled.init_code)

        voters, need, voting = self.voters()
        if len(voters) < need:
            self.check(
                "governance can approve contract code",
                False,
                f"{need} of {voting} voting organizations must approve; the story holds keys "
                f"of {len(voters)} org_admins",
            )
            return
        counter = self.record(governance.NEXT_ID_KEY, governance.Counter)
        proposal_id = 1 if counter is None else counter.value
        self.must(
            f"{voters[0]} proposes approving PrepaidEscrow's code hash",
            [
                self.tx(
                    voters[0],
                    "governance",
                    "propose_contract",
                    {
                        "action": "approve_code",
                        "subject": hash_,
                        "reason": "Shenzhen Tech's prepaid-card escrow, code reviewed",
                    },
                )
            ],
        )
        if need > 1:
            self.must(
                f"{need - 1} more voting organizations approve ({need} of {voting} pass it)",
                [
                    self.tx(name, "governance", "approve", {"proposal_id": proposal_id})
                    for name in voters[1:need]
                ],
            )
        approved = self.chain.get(approval_key(hash_)) is not None
        self.check(
            "the code hash is approved for deployment",
            approved,
            f"proposal {proposal_id}, code hash {hash_.hex()[:16]}…",
        )

        merchant, escrow_wallet = self.addr("issuer"), "W-PREPAID-ESC"
        expires_s = (self.chain.now_ms() + 90 * DAY_MS) // 1000
        deploy = self.tx(
            "issuer",
            "contracts",
            "deploy",
            {
                "code": compiled.init_code,
                "args": abi.encode_constructor(
                    "0x" + merchant.hex(), escrow_wallet, "W-ISSUER", expires_s
                ),
                "gas_limit": CONTRACT_GAS,
                "abi": json.dumps(list(compiled.abi)),
            },
        )
        address = evm_keys.create_address(merchant, deploy.nonce)
        self.must("the merchant (the issuer) deploys PrepaidEscrow", [deploy])
        info = self.record(info_key(address), ContractInfo)
        self.check(
            "the contract is at the address its deployer computed, with the approved code",
            info is not None and info.deployer == merchant and info.code_hash == hash_,
            f"0x{address.hex()}",
        )

        # The merchant's operator bank (W-ISSUER is at BOCOM) opens the wallet for the contract.
        commitment, sealed, _ = seal_identity(
            self.suite,
            demo_identity("prepaid escrow"),
            self.keys["bocom-admin"].public_key,
            self.keys["regulator"].public_key,
        )
        self.must(
            "the merchant's bank opens the contract's own escrow wallet (category 3: ¥5,000 a "
            "payment)",
            [
                self.tx(
                    "bocom-admin",
                    "ecny",
                    "open_wallet",
                    {
                        "wallet_id": escrow_wallet,
                        "owner": address,
                        "kind": "corporate",
                        "category": 3,
                        "identity_commitment": commitment,
                        "sealed_identity": sealed,
                    },
                )
            ],
        )
        price = 8_000 * YUAN
        self.must(
            "alice pays ¥8,000 for a prepaid card into the escrow wallet",
            [self.pay("alice", "W-ALICE", escrow_wallet, price)],
        )
        alice = "0x" + self.addr("alice").hex()
        self.must(
            "the merchant issues alice's card (the contract checks the money is in escrow)",
            [
                self.call_contract(
                    "issuer", address, abi, "issueCard", "CARD-1", alice, "W-ALICE", price
                )
            ],
        )

        def books() -> tuple[int, int, int]:
            """The merchant's and the escrow's wallets, and the contract's outstanding total
            (storage slot 3: escrowWallet, merchantWallet, merchantDefaulted come first)."""
            word = self.chain.get(evm_keys.storage_key(address, 3))
            owed = 0 if word is None else int.from_bytes(word, "big")
            return self.cash("W-ISSUER"), self.cash(escrow_wallet), owed

        merchant_cash, escrowed, owed = books()
        self.check(
            "the escrow wallet holds the card's price, and the contract owes it",
            escrowed == price and owed == price,
            f"escrow ¥{escrowed / YUAN:,.2f}, outstanding ¥{owed / YUAN:,.2f}",
        )
        used = 1_000 * YUAN
        self.must(
            "alice confirms a ¥1,000 service: the contract pays the merchant from escrow",
            [self.call_contract("alice", address, abi, "release", "CARD-1", used)],
        )
        after = books()
        self.check(
            "the merchant's wallet received exactly ¥1,000; escrow and card ¥1,000 less",
            after == (merchant_cash + used, escrowed - used, owed - used),
            f"merchant +¥{(after[0] - merchant_cash) / YUAN:,.2f}, "
            f"escrow ¥{after[1] / YUAN:,.2f}, outstanding ¥{after[2] / YUAN:,.2f}",
        )
        self.expect(
            "a ¥5,000.01 release breaks the escrow wallet's per-payment limit (¥5,000)",
            self.call_contract("alice", address, abi, "release", "CARD-1", 500_001),
            "PER_PAYMENT_LIMIT_EXCEEDED",
        )
        self.check(
            "the refused release changed nothing (wallets and the contract's books)",
            books() == after,
            f"merchant ¥{after[0] / YUAN:,.2f}, escrow ¥{after[1] / YUAN:,.2f}",
        )

    def delivery_versus_payment(self) -> None:
        """DvP (BIS model 1): shares against e-CNY, both legs or neither."""
        self.must(
            "investors name their settlement wallets",
            [
                self.tx(
                    "alice",
                    "settlement",
                    "link_wallet",
                    {"account_id": "SA-ALICE", "wallet_id": "W-ALICE"},
                ),
                self.tx(
                    "bob",
                    "settlement",
                    "link_wallet",
                    {"account_id": "SA-BOB", "wallet_id": "W-BOB"},
                ),
            ],
        )
        terms = {
            "code": "000001",
            "seller_account": "SA-ALICE",
            "buyer_account": "SA-BOB",
            "shares": 1_000,
            "price_fen": 2_000,
        }
        cash_a, cash_b = self.cash("W-ALICE"), self.cash("W-BOB")
        matching = self.tx(
            "bob", "settlement", "instruct", {**terms, "trade_id": "T-1", "side": "receive"}
        )
        self.must(
            "alice instructs delivery, bob instructs receipt: the trade settles",
            [
                self.tx(
                    "alice",
                    "settlement",
                    "instruct",
                    {**terms, "trade_id": "T-1", "side": "deliver"},
                ),
                matching,
            ],
        )
        self.marks["dvp"] = matching.hash(self.suite)
        self.check(
            "both legs moved: 1,000 shares to bob, ¥20,000 to alice",
            self.shares("000001", "SA-BOB") == 1_000
            and self.cash("W-ALICE") - cash_a == 20_000 * YUAN
            and cash_b - self.cash("W-BOB") == 20_000 * YUAN,
            f"bob {self.shares('000001', 'SA-BOB')} shares; alice +¥"
            f"{(self.cash('W-ALICE') - cash_a) / YUAN:,.2f}",
        )
        short = {**terms, "seller_account": "SA-BOB", "buyer_account": "SA-ALICE", "shares": 2_000}
        self.must(
            "alice instructs to buy 2,000 shares from bob (who holds 1,000)",
            [
                self.tx(
                    "alice",
                    "settlement",
                    "instruct",
                    {**short, "trade_id": "T-2", "side": "receive"},
                )
            ],
        )
        cash_a = self.cash("W-ALICE")
        self.expect(
            "bob's matching instruction fails: the securities leg is short",
            self.tx(
                "bob", "settlement", "instruct", {**short, "trade_id": "T-2", "side": "deliver"}
            ),
            "INSUFFICIENT_FREE_BALANCE",
        )
        self.check(
            "neither leg moved",
            self.cash("W-ALICE") == cash_a and self.shares("000001", "SA-BOB") == 1_000,
            f"alice ¥{self.cash('W-ALICE') / YUAN:,.2f}, bob {self.shares('000001', 'SA-BOB')}",
        )

    def insurance(self) -> None:
        """A policy bought in e-CNY, cancelled in the cooling-off period, bought again, claimed."""
        commitment, sealed, _ = seal_identity(
            self.suite,
            demo_identity("insurer"),
            self.keys["bocom-admin"].public_key,
            self.keys["regulator"].public_key,
        )
        self.must(
            "the insurer's bank opens its corporate wallet",
            [
                self.tx(
                    "bocom-admin",
                    "ecny",
                    "open_wallet",
                    {
                        "wallet_id": "W-INSURER",
                        "owner": self.addr("insurer-admin"),
                        "kind": "corporate",
                        "category": 1,
                        "identity_commitment": commitment,
                        "sealed_identity": sealed,
                    },
                )
            ],
        )
        self.must(
            "the insurer funds its wallet and registers a one-year health product",
            [
                self.tx(
                    "bocom-admin",
                    "ecny",
                    "load",
                    {"wallet_id": "W-INSURER", "amount": 1_000_000 * YUAN},
                ),
                self.tx(
                    "insurer-admin",
                    "insurance",
                    "register_product",
                    {
                        "product_id": "HEALTH-1",
                        "name": "Critical illness cover, 1 year",
                        "premium_fen": 1_200 * YUAN,
                        "term_days": 365,
                        "coverage_fen": 300_000 * YUAN,
                        "risk_level": 2,
                        "cooling_off_days": 15,
                        "wallet_id": "W-INSURER",
                    },
                ),
            ],
        )
        buy = {"product_id": "HEALTH-1", "investor_id": "INV-BOB", "wallet_id": "W-BOB"}
        before = self.cash("W-BOB")
        self.must(
            "bob buys a policy, paying the ¥1,200 premium in e-CNY",
            [self.tx("bob", "insurance", "buy_policy", {**buy, "policy_id": "P-1"})],
        )
        self.must(
            "bob cancels within the cooling-off period",
            [self.tx("bob", "insurance", "cancel_policy", {"policy_id": "P-1"})],
        )
        self.check(
            "the premium came back in full",
            self.cash("W-BOB") == before,
            f"bob ¥{self.cash('W-BOB') / YUAN:,.2f} (before ¥{before / YUAN:,.2f})",
        )
        self.must(
            "bob buys again; the insurer pays a ¥30,000 claim",
            [
                self.tx("bob", "insurance", "buy_policy", {**buy, "policy_id": "P-2"}),
                self.tx(
                    "insurer-admin",
                    "insurance",
                    "pay_claim",
                    {
                        "claim_id": "C-1",
                        "policy_id": "P-2",
                        "amount_fen": 30_000 * YUAN,
                        "reference": "claim file 2026-0042",
                    },
                ),
            ],
        )
        self.check(
            "bob is ¥28,800 better off (claim less premium)",
            self.cash("W-BOB") - before == 28_800 * YUAN,
            f"bob ¥{self.cash('W-BOB') / YUAN:,.2f}",
        )

    def dividend(self) -> None:
        """A cash dividend of ¥0.10 a share, record, ex and payment date today, paid in e-CNY."""
        today = cst_date(self.chain.now_ms())
        self.must(
            "the issuer announces a dividend and funds its wallet",
            [
                self.tx(
                    "issuer",
                    "corporate_actions",
                    "announce_dividend",
                    {
                        "dividend_id": "DIV-2026",
                        "code": "000001",
                        "amount_per_share_fen": 10,
                        "record_date": today,
                        "ex_date": today,
                        "payment_date": today,
                    },
                ),
                self.tx(
                    "bocom-admin",
                    "ecny",
                    "load",
                    {"wallet_id": "W-ISSUER", "amount": 100_000 * YUAN},
                ),
            ],
        )
        held = {a: self.shares("000001", a) for a in ("SA-ALICE", "SA-BOB")}
        cash = {a: self.cash(w) for a, w in (("SA-ALICE", "W-ALICE"), ("SA-BOB", "W-BOB"))}
        self.must(
            "the issuer pays the holders from its wallet",
            [
                self.tx(
                    "issuer",
                    "corporate_actions",
                    "pay",
                    {
                        "dividend_id": "DIV-2026",
                        "account_ids": ["SA-ALICE", "SA-BOB"],
                        "payer_wallet": "W-ISSUER",
                    },
                )
            ],
        )
        got = {a: self.cash(w) - cash[a] for a, w in (("SA-ALICE", "W-ALICE"), ("SA-BOB", "W-BOB"))}
        self.check(
            "each holder received ¥0.10 per share in e-CNY",
            all(got[a] == held[a] * 10 for a in held),
            ", ".join(f"{a} {held[a]} shares → ¥{got[a] / YUAN:,.2f}" for a in held),
        )

    def fund(self) -> None:
        """A fund bought by amount and redeemed by units at the NAV of the order's trading day."""
        opening = []
        # Custody is held by the bank's custodian, independent of the manager; fees are the
        # manager's.
        for wallet_id, owner, holder in (
            ("W-FUND-CUSTODY", "ccb-custodian", "fund custodian"),
            ("W-FUND-FEES", "fund-admin", "fund manager"),
        ):
            commitment, sealed, _ = seal_identity(
                self.suite,
                demo_identity(holder),
                self.keys["ccb-admin"].public_key,
                self.keys["regulator"].public_key,
            )
            opening.append(
                self.tx(
                    "ccb-admin",
                    "ecny",
                    "open_wallet",
                    {
                        "wallet_id": wallet_id,
                        "owner": self.addr(owner),
                        "kind": "corporate",
                        "category": 1,
                        "identity_commitment": commitment,
                        "sealed_identity": sealed,
                    },
                )
            )
        self.must(
            "the bank opens the custodian's custody wallet and the manager's fee wallet", opening
        )
        self.must(
            "the fund manager registers fund 519888 (fee 1.5%; redemption within 7 days 1.5%)",
            [
                self.tx(
                    "fund-admin",
                    "funds",
                    "register_fund",
                    {
                        "code": "519888",
                        "name": "Harvest Balanced Fund",
                        "risk_level": 3,
                        "qualified_only": False,
                        "share_decimals": 2,
                        "custody_wallet": "W-FUND-CUSTODY",
                        "fee_wallet": "W-FUND-FEES",
                        "subscription_fee_bp": 150,
                        "redemption_tiers": [
                            {"min_days": 0, "rate_bp": 150, "to_fund": True},
                            {"min_days": 7, "rate_bp": 50, "to_fund": False},
                        ],
                        "cutoff_ms": 0,
                    },
                )
            ],
        )
        self.must(
            "the exchange approves the fund",
            [
                self.tx(
                    "exchange-admin",
                    "securities",
                    "approve",
                    {"code": "519888", "reason": "fund contract filed"},
                )
            ],
        )
        subscribe = {"code": "519888", "amount_fen": 10_000 * YUAN}
        day1 = next_trading_day(cst_date(self.chain.now_ms()))
        if not self.chain.advance_to(date_start_ms(day1) + 10 * HOUR_MS):
            # Real time: the order is priced at the NAV of the trading day the cut-off rule
            # gives; that NAV is published after 15:00 CST of that day, not within this demo.
            placed = self.chain.now_ms()
            self.must(
                "alice subscribes ¥10,000",
                [
                    self.tx(
                        "alice",
                        "funds",
                        "subscribe",
                        {
                            **subscribe,
                            "order_id": "S-1",
                            "account_id": "SA-ALICE",
                            "wallet_id": "W-ALICE",
                        },
                    )
                ],
            )
            order = self.record(funds.order_key("S-1"), funds.Order)
            expected = trading_day_of_order(placed, funds.DEFAULT_CUTOFF_MS)
            self.check(
                "the order waits for the NAV of its trading day (15:00 CST cut-off)",
                order is not None
                and order.status == "pending"
                and order.trading_day in (expected, next_trading_day(cst_date(placed))),
                f"priced at the NAV of {order.trading_day if order else '?'}; the single-process "
                "demo runs the confirmation on a rehearsal clock",
            )
            return
        self.must(
            f"{day1} 10:00 CST: alice subscribes ¥10,000 (before the cut-off)",
            [
                self.tx(
                    "alice",
                    "funds",
                    "subscribe",
                    {
                        **subscribe,
                        "order_id": "S-1",
                        "account_id": "SA-ALICE",
                        "wallet_id": "W-ALICE",
                    },
                )
            ],
        )
        self.chain.advance_to(date_start_ms(day1) + 15 * HOUR_MS + 30 * 60_000)
        self.must(
            f"{day1} 15:30 CST: bob subscribes ¥10,000 (after the cut-off)",
            [
                self.tx(
                    "bob",
                    "funds",
                    "subscribe",
                    {**subscribe, "order_id": "S-2", "account_id": "SA-BOB", "wallet_id": "W-BOB"},
                )
            ],
        )
        day2 = next_trading_day(day1)
        s1 = self.record(funds.order_key("S-1"), funds.Order)
        s2 = self.record(funds.order_key("S-2"), funds.Order)
        self.check(
            "the cut-off decides the NAV day: T for alice, T+1 for bob",
            s1 is not None and s2 is not None and (s1.trading_day, s2.trading_day) == (day1, day2),
            f"alice {s1.trading_day if s1 else '?'}, bob {s2.trading_day if s2 else '?'}",
        )
        scale = 10 ** (2 + 2)  # share decimals + fen per yuan
        for day, nav, order_id in ((day1, 10_250, "S-1"), (day2, 10_300, "S-2")):
            if day != day1:
                self.chain.advance_to(date_start_ms(day) + 15 * HOUR_MS + 30 * 60_000)
            publish = self.tx(
                "fund-admin",
                "funds",
                "publish_nav",
                {"code": "519888", "trading_day": day, "nav": nav},
            )
            confirmation = self.tx(  # signed after ``publish``: nonces follow signing order
                "fund-admin",
                "funds",
                "confirm",
                {"code": "519888", "trading_day": day, "order_ids": [order_id]},
            )
            self.must(
                f"{day} after 15:00 CST: the manager publishes NAV {nav / 10_000:.4f} and confirms",
                [publish, confirmation],
            )
            self.marks[f"fund confirmation {order_id}"] = confirmation.hash(self.suite)
            o = self.record(funds.order_key(order_id), funds.Order)
            amount = 10_000 * YUAN
            fee = amount * 150 // 10_000
            units = (amount - fee) * scale // nav
            self.check(
                f"{order_id} confirmed at {day}'s NAV: (amount − 1.5% fee) ÷ NAV, rounded down",
                o is not None and o.status == "confirmed" and o.nav == nav and o.units == units,
                f"{units / 100:,.2f} shares for ¥{amount / YUAN:,.2f} (fee ¥{fee / YUAN:,.2f})"
                if o and o.units == units
                else str(o),
            )
        self.must(
            f"{day2} after the cut-off: alice redeems 5,000 shares",
            [
                self.tx(
                    "alice",
                    "funds",
                    "redeem",
                    {
                        "order_id": "R-1",
                        "code": "519888",
                        "account_id": "SA-ALICE",
                        "wallet_id": "W-ALICE",
                        "units": 500_000,
                    },
                )
            ],
        )
        day3 = next_trading_day(day2)
        self.chain.advance_to(date_start_ms(day3) + 15 * HOUR_MS + 30 * 60_000)
        before = self.cash("W-ALICE")
        self.must(
            f"{day3}: NAV 1.0310 published, the redemption confirmed",
            [
                self.tx(
                    "fund-admin",
                    "funds",
                    "publish_nav",
                    {"code": "519888", "trading_day": day3, "nav": 10_310},
                ),
                self.tx(
                    "fund-admin",
                    "funds",
                    "confirm",
                    {"code": "519888", "trading_day": day3, "order_ids": ["R-1"]},
                ),
            ],
        )
        r1 = self.record(funds.order_key("R-1"), funds.Order)
        gross = 500_000 * 10_310 // scale
        fee = 500_000 * 10_310 * 150 // (scale * 10_000)  # held under 7 days: 1.5%, to the fund
        self.check(
            "redemption pays units × NAV less the short-holding fee in e-CNY",
            r1 is not None
            and r1.status == "confirmed"
            and r1.proceeds_fen == gross - fee
            and self.cash("W-ALICE") - before == gross - fee,
            f"¥{(self.cash('W-ALICE') - before) / YUAN:,.2f} paid (gross ¥{gross / YUAN:,.2f}, "
            f"fee ¥{fee / YUAN:,.2f} kept by the fund)",
        )

    def judicial(self) -> None:
        """A court freezes part of alice's holding; the regulator's second freeze waits in line."""
        freeze = {
            "code": "000001",
            "account_id": "SA-ALICE",
            "amount": 60_000,
            "expires_at_ms": 4_102_444_800_000,
        }
        self.must(
            "a court freezes 60,000 of alice's shares; a second order of 60,000 waits",
            [
                self.tx(
                    "court-officer",
                    "enforcement",
                    "freeze",
                    {**freeze, "freeze_id": "F-1", "reference": "(2026) Hu 74 Zhi 101"},
                ),
                self.tx(
                    "regulator",
                    "enforcement",
                    "freeze",
                    {**freeze, "freeze_id": "F-2", "reference": "CSRC freeze 2026-33"},
                ),
            ],
        )
        f2 = self.record(enforcement.freeze_key("F-2"), enforcement.Freeze)
        free = self.shares("000001", "SA-ALICE") - 60_000
        self.check(
            "the second freeze takes what is free and waits for the rest",
            f2 is not None and f2.status == "partial" and f2.effective == free,
            f"F-2 {f2.status}, {f2.effective} of {f2.amount} in force" if f2 else "F-2 missing",
        )
        self.must(
            "the court lifts F-1",
            [
                self.tx(
                    "court-officer",
                    "enforcement",
                    "unfreeze",
                    {"freeze_id": "F-1", "reference": "(2026) Hu 74 Zhi 101-2"},
                )
            ],
        )
        f2 = self.record(enforcement.freeze_key("F-2"), enforcement.Freeze)
        self.check(
            "the waiting part takes effect when the first freeze lifts",
            f2 is not None and f2.status == "active" and f2.effective == 60_000,
            f"F-2 {f2.status}, {f2.effective} of {f2.amount} in force" if f2 else "F-2 missing",
        )

    def anonymity(self) -> None:
        """Only the operator and the regulator can open the identity behind a wallet."""
        w = self.record(ecny.wallet_key("W-CAROL"), ecny.Wallet)
        assert w is not None
        opened = {}
        for who in ("regulator", "ccb-admin", "bocom-admin", "broker-a-admin"):
            try:
                identity, _ = open_identity(self.suite, self.keys[who], w.sealed_identity)
                opened[who] = identity.get("name", "?")
            except (CryptoError, ValueError):
                opened[who] = None
        self.check(
            "the regulator and carol's operator open her wallet identity; others cannot",
            opened["regulator"] is not None
            and opened["ccb-admin"] is not None
            and opened["bocom-admin"] is None
            and opened["broker-a-admin"] is None,
            ", ".join(f"{k}: {'opened' if v else 'refused'}" for k, v in opened.items()),
        )


def demo_identity(name: str) -> dict[str, Any]:
    """A made-up identity record for a demo participant (never stored in clear)."""
    return {
        "name": f"{name.title()} Demo",
        "id_type": "resident_id",
        "id_number": f"4403051990{sum(map(ord, name)) % 100_000_000:08d}",
        "phone": "13700000000",
    }


@cache
def prepaid_escrow() -> toolchain.CompiledContract:
    """examples/contracts/prepaid/PrepaidEscrow.sol compiled with the pinned solc-js; its import
    of the interfaces is inlined, since the toolchain compiles one source. Raises
    ``ToolchainError`` (compiler missing: run scripts/toolchain.sh), ``CompileError`` or
    ``OSError`` (the examples directory is not there)."""
    source = (EXAMPLE_CONTRACTS / "prepaid" / "PrepaidEscrow.sol").read_text()
    if _INTERFACE_IMPORT not in source:
        raise toolchain.CompileError(f"PrepaidEscrow.sol no longer has {_INTERFACE_IMPORT!r}")
    lines = (EXAMPLE_CONTRACTS / "interfaces" / "IConsortia.sol").read_text().splitlines()
    interfaces = "\n".join(x for x in lines if not x.startswith(("// SPDX", "pragma ")))
    return toolchain.compile_solidity(
        source.replace(_INTERFACE_IMPORT, interfaces), "PrepaidEscrow"
    )


def run_story(story: Story) -> None:
    """The whole scenario, in order (each step builds on the previous ones)."""
    story.members()
    story.listing()
    story.wallets()
    story.prepaid()
    story.contracts()
    story.delivery_versus_payment()
    story.insurance()
    story.dividend()
    story.fund()
    story.judicial()
    story.anonymity()
