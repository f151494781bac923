"""Two chains in-process for evidence tests: a business chain that ran the demo's business story
(plus an explicit securities transfer), and a supervision chain on which the regulator registered
it and a relayer anchored every business header with ``anchoring.anchor`` transactions.

Both are ``LocalChain`` homes (real stores, real certificates); both chains are closed when the
world is built, so exporters can open the stores read-only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consortia import codec
from consortia.crypto import KeyPair, Suite
from consortia.execution.genesis import Genesis
from consortia.ledger import light
from consortia.ledger.types import (
    Transaction,
    TxStatus,
    ValidatorSet,
    decode_block,
    decode_certificate,
    decode_receipts,
    sign_transaction,
)
from consortia.node.demo import RehearsalClock
from consortia.node.home import init_home
from consortia.node.local import (
    ACCOUNTS_DIR,
    DATA_DIR,
    GENESIS_FILE,
    VALIDATORS_DIR,
    CommittedBlock,
    LocalChain,
    load_key_dir,
)
from consortia.node.story import Outcome, Story, run_story
from consortia.storage import ChainStore
from tests.govkit import approvals_needed, voters

PASSWORD = "evidence-test"
SCRYPT_N = 1 << 10
BUSINESS_ID = "biz-evidence"
SUPERVISION_ID = "supervision"
TRANSFER_AMOUNT = 1_234


class Signer:
    """Signs with nonces tracked per sender (the chains here see no other signer)."""

    def __init__(self, suite: Suite, chain_id: str) -> None:
        self.suite = suite
        self.chain_id = chain_id
        self.nonces: dict[bytes, int] = {}

    def __call__(self, key: KeyPair, module: str, method: str, args: dict[str, Any]) -> Transaction:
        addr = self.suite.address(key.public_key)
        nonce = self.nonces.get(addr, 0)
        self.nonces[addr] = nonce + 1
        return sign_transaction(
            self.suite,
            key,
            chain_id=self.chain_id,
            nonce=nonce,
            module=module,
            method=method,
            args=args,
        )


def in_nonce_order(
    txs: list[Transaction], suite: Suite, keys: dict[str, KeyPair]
) -> list[Transaction]:
    """Re-sign a sender's transactions whose nonces are out of list order (the story may sign
    one before another yet submit it after), so the block runs them in the order listed."""
    by_sender: dict[bytes, list[Transaction]] = {}
    for tx in txs:
        by_sender.setdefault(tx.sender, []).append(tx)
    fixed: dict[bytes, list[Transaction]] = {}
    for sender, own in by_sender.items():
        nonces = [t.nonce for t in own]
        if nonces == sorted(nonces):
            continue
        key = next(k for k in keys.values() if suite.address(k.public_key) == sender)
        fixed[sender] = [
            sign_transaction(
                suite,
                key,
                chain_id=t.chain_id,
                nonce=n,
                module=t.module,
                method=t.method,
                args=t.args,
            )
            for t, n in zip(own, sorted(nonces), strict=True)
        ]
    return [fixed[tx.sender].pop(0) if tx.sender in fixed else tx for tx in txs]


class InProcess:
    """The ``StoryChain`` a ``LocalChain`` offers (as in the single-process demo)."""

    def __init__(self, chain: LocalChain, clock: RehearsalClock, keys: dict[str, KeyPair]) -> None:
        self.chain = chain
        self.clock = clock
        self.keys = keys  # the story's keys (it adds investors' as it goes)
        # The set each header announces for its next height: the state's next set before it.
        self.announced: dict[int, ValidatorSet] = {1: chain.state.next_validators}

    def _commit(self, txs: list[Transaction]) -> CommittedBlock:
        committed = self.chain.commit(txs)
        self.announced[self.chain.height + 1] = self.chain.state.next_validators
        return committed

    def commit(self, txs: list[Transaction]) -> list[Outcome]:
        suite = self.chain.suite
        ordered = in_nonce_order(txs, suite, self.keys)
        committed = self._commit(ordered)
        by_hash = {r.tx_hash: r for r in committed.receipts}
        height = committed.block.header.height
        out = []
        for tx in ordered:
            r = by_hash.get(tx.hash(suite))
            if r is None:
                out.append(Outcome(False, "NOT_INCLUDED", None))
            else:
                out.append(Outcome(r.status == TxStatus.OK, r.code, height))
        return out

    def submit(self, txs: list[Transaction], label: str) -> list[Outcome]:
        return self.commit(txs)

    def get(self, key: bytes) -> bytes | None:
        return self.chain.state.tree.get(key)

    def now_ms(self) -> int:
        return max(self.clock(), self.chain.state.last_time_ms)

    def advance_to(self, time_ms: int) -> bool:
        self.clock.advance_to(time_ms)
        self._commit([])
        return True


@dataclass(frozen=True)
class World:
    business_home: Path
    supervision_home: Path
    business_genesis: Genesis
    supervision_genesis: Genesis
    payment: bytes  # tx hash of a successful ecny.pay (before the validator-set change)
    transfer: bytes  # securities.transfer
    confirmation: bytes  # funds.confirm
    transfer_height: int
    business_head: int
    vset_change_height: int  # the header that announced the changed validator set


def make_home(home: Path, chain_id: str, tier: str = "business") -> Genesis:
    genesis = init_home(home, chain_id=chain_id, password=PASSWORD, scrypt_n=SCRYPT_N)
    if tier != "business":
        genesis = dataclasses.replace(genesis, tier=tier)
        (home / GENESIS_FILE).write_text(genesis.to_json())
    return genesis


def open_chain(home: Path, clock: RehearsalClock) -> LocalChain:
    return LocalChain(home, load_key_dir(home / VALIDATORS_DIR, PASSWORD), clock_ms=clock)


def _find(home: Path, suite: Suite, module: str, method: str) -> list[tuple[bytes, int]]:
    """(tx hash, height) of every successful ``module.method`` transaction."""
    found = []
    with ChainStore.open(home / DATA_DIR, readonly=True) as store:
        head = store.head()
        for height in range(1, (head[0] if head else 0) + 1):
            raw, raw_receipts = store.block(height), store.receipts(height)
            assert raw is not None and raw_receipts is not None
            block = decode_block(raw)
            receipts = decode_receipts(raw_receipts).receipts
            for tx, receipt in zip(block.transactions, receipts, strict=True):
                if (tx.module, tx.method) == (module, method) and receipt.status == TxStatus.OK:
                    found.append((tx.hash(suite), height))
    return found


def anchor_all(
    supervision: LocalChain,
    signer: Signer,
    relayer: KeyPair,
    business_home: Path,
    announced: dict[int, ValidatorSet],
    *,
    first: int,
    batch: int = 32,
) -> int:
    """Anchor business headers ``first..head`` (in batches); return the business head."""
    items: list[light.CertifiedHeader] = []
    with ChainStore.open(business_home / DATA_DIR, readonly=True) as store:
        head = store.head()
        last = head[0] if head else 0
        chain_id = ""
        for height in range(first, last + 1):
            raw, raw_cert = store.block(height), store.certificate(height)
            assert raw is not None and raw_cert is not None
            header = decode_block(raw).header
            chain_id = header.chain_id
            changed = header.next_validator_set_hash != header.validator_set_hash
            items.append(
                light.CertifiedHeader(
                    header, decode_certificate(raw_cert), announced[height] if changed else None
                )
            )
    for i in range(0, len(items), batch):
        part = items[i : i + batch]
        tx = signer(
            relayer,
            "anchoring",
            "anchor",
            {"chain_id": chain_id, "headers": [codec.to_cbor(item) for item in part]},
        )
        committed = supervision.commit([tx])
        assert [r.code for r in committed.receipts] == [""], committed.receipts
    return last


def change_validator_power(harness: InProcess, story: Story) -> int:
    """Governance doubles the exchange validator's power; returns the height of the header that
    announced the new set (two blocks after the deciding one)."""
    genesis = harness.chain.genesis
    validator = next(v for v in genesis.validators if v.name == "exchange")
    names = voters(genesis.orgs, genesis.accounts)
    needed = approvals_needed(len(names), genesis.params.get("governance_threshold_bp"))
    propose = story.tx(
        names[0],
        "governance",
        "propose",
        {
            "action": "set_power",
            "name": "exchange",
            "public_key": validator.public_key,
            "power": validator.power * 2,
            "reason": "evidence test: a validator-set change",
        },
    )
    committed = harness._commit([propose])
    assert [r.code for r in committed.receipts] == [""], committed.receipts
    opened = next(e for e in committed.receipts[0].events if e.kind == "proposal_opened")
    pid = opened.attributes["proposal_id"]
    approvals = [
        story.tx(name, "governance", "approve", {"proposal_id": pid}) for name in names[1:needed]
    ]
    committed = harness._commit(approvals)
    assert all(r.code == "" for r in committed.receipts), committed.receipts
    decided = harness.chain.height
    for _ in range(4):  # the change signs from decided + 2 on; commit past it
        harness._commit([])
    announcing = decided + 1
    assert harness.announced[announcing] != harness.announced[decided]
    return announcing


def build_world(root: Path) -> World:
    """The business story on a business chain, every header anchored on a supervision chain."""
    bhome, shome = root / "business", root / "supervision"
    bgen = make_home(bhome, BUSINESS_ID)
    sgen = make_home(shome, SUPERVISION_ID, tier="supervision")
    clock = RehearsalClock()
    chain = open_chain(bhome, clock)
    suite = chain.suite
    keys = load_key_dir(bhome / ACCOUNTS_DIR, PASSWORD)
    sign = Signer(suite, BUSINESS_ID)
    failures: list[str] = []

    def check(label: str, ok: bool, detail: str) -> None:
        if not ok:
            failures.append(f"{label}: {detail}")

    harness = InProcess(chain, clock, {})
    story = Story(harness, suite, keys, sign, check, lambda _s: None)
    harness.keys = story.keys
    try:
        run_story(story)
        assert not failures, failures
        # The story settles securities by DvP; an owner's own transfer is proven too.
        out = harness.commit(
            [
                story.tx(
                    "alice",
                    "securities",
                    "transfer",
                    {
                        "code": "000001",
                        "from_account": "SA-ALICE",
                        "to_account": "SA-BOB",
                        "amount": TRANSFER_AMOUNT,
                        "memo": "gift",
                    },
                )
            ]
        )
        assert out[0].ok, out
        vset_change_height = change_validator_power(harness, story)
    finally:
        chain.close()

    sclock = RehearsalClock()
    sup = open_chain(shome, sclock)
    skeys = load_key_dir(shome / ACCOUNTS_DIR, PASSWORD)
    ssign = Signer(sup.suite, SUPERVISION_ID)
    try:
        register = ssign(
            skeys["regulator"],
            "anchoring",
            "register_chain",
            {
                "chain_id": bgen.chain_id,
                "suite": bgen.suite,
                "genesis_hash": bgen.hash(),
                "genesis_time_ms": bgen.genesis_time_ms,
                "validators": codec.to_cbor(bgen.validator_set()),
            },
        )
        committed = sup.commit([register])
        assert [r.code for r in committed.receipts] == [""], committed.receipts
        head = anchor_all(sup, ssign, skeys["relayer"], bhome, harness.announced, first=1)
        sup.commit([])  # one more supervision block on top of the last anchor
    finally:
        sup.close()

    pays = _find(bhome, suite, "ecny", "pay")
    transfers = _find(bhome, suite, "securities", "transfer")
    confirms = _find(bhome, suite, "funds", "confirm")
    assert pays and transfers and confirms
    return World(
        business_home=bhome,
        supervision_home=shome,
        business_genesis=bgen,
        supervision_genesis=sgen,
        payment=pays[0][0],
        transfer=transfers[-1][0],
        confirmation=confirms[0][0],
        transfer_height=transfers[-1][1],
        business_head=head,
        vset_change_height=vset_change_height,
    )
