"""The look-through index: a SQLite file fed by the committed blocks of business chains.

Off the consensus path: it reads blocks and receipts that a node has already committed (its
LMDB store opened read-only, which LMDB allows while the node writes) and never runs inside block
execution. One SQLite transaction per indexed block records everything the block changed and the
alerts it raised together with the chain's new indexed height, so after a crash or a restart the
index resumes at the next height and never counts a block twice.

What it keeps (see docs/lookthrough.md): investors and their securities accounts, wallets and
their owners (never an identity: not even the sealed one — that is read from the node's state and
opened with the regulator's key at query time only), balance history per (chain, code, account)
and per wallet with the height of each change (so a holder register "at height H" is exact), every
transaction with the accounts and wallets it names, securities transfers, daily volumes, open
freezes, large-value payments, and surveillance alerts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consortia import codec
from consortia.crypto import KeyPair, get_suite
from consortia.ledger.types import Block, Receipt, TxStatus, decode_block, decode_receipts
from consortia.lookthrough.surveillance import (
    Alert,
    EventFacts,
    SurveillanceConfig,
    Transfer,
    TxFacts,
    abnormal_volume,
    frozen_activity,
    holding_steps,
    large_value_payments,
    volume_legs,
    wash_trades,
)
from consortia.modules.calendar import DAY_MS, cst_date, date_start_ms
from consortia.modules.ecny import Wallet, wallet_key
from consortia.modules.investors import open_identity
from consortia.node.local import DATA_DIR, load_genesis
from consortia.storage import ChainStore

SCHEMA_VERSION = "3"  # 2: freezes keep when they were opened and lifted; 3: notary deposits

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chains (
    chain_id TEXT PRIMARY KEY, genesis_hash TEXT NOT NULL, height INTEGER NOT NULL,
    block_hash TEXT NOT NULL, time_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    chain_id TEXT NOT NULL, height INTEGER NOT NULL, block_hash TEXT NOT NULL,
    time_ms INTEGER NOT NULL, txs INTEGER NOT NULL, PRIMARY KEY (chain_id, height));
CREATE TABLE IF NOT EXISTS txs (
    chain_id TEXT NOT NULL, height INTEGER NOT NULL, idx INTEGER NOT NULL,
    tx_hash TEXT NOT NULL, time_ms INTEGER NOT NULL, sender TEXT NOT NULL,
    module TEXT NOT NULL, method TEXT NOT NULL, ok INTEGER NOT NULL, code TEXT NOT NULL,
    PRIMARY KEY (chain_id, height, idx));
CREATE INDEX IF NOT EXISTS txs_hash ON txs (tx_hash);
CREATE TABLE IF NOT EXISTS tx_subjects (
    chain_id TEXT NOT NULL, subject TEXT NOT NULL, height INTEGER NOT NULL,
    idx INTEGER NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY (chain_id, subject, height, idx, role));
CREATE INDEX IF NOT EXISTS tx_subjects_subject ON tx_subjects (subject);
CREATE TABLE IF NOT EXISTS investors (
    chain_id TEXT NOT NULL, investor_id TEXT NOT NULL, address TEXT NOT NULL,
    org_id TEXT NOT NULL, kind TEXT NOT NULL, opened_height INTEGER NOT NULL,
    PRIMARY KEY (chain_id, investor_id));
CREATE INDEX IF NOT EXISTS investors_id ON investors (investor_id);
CREATE TABLE IF NOT EXISTS sec_accounts (
    chain_id TEXT NOT NULL, account_id TEXT NOT NULL, investor_id TEXT NOT NULL,
    opened_height INTEGER NOT NULL, closed_height INTEGER,
    PRIMARY KEY (chain_id, account_id));
CREATE INDEX IF NOT EXISTS sec_accounts_investor ON sec_accounts (chain_id, investor_id);
CREATE TABLE IF NOT EXISTS wallets (
    chain_id TEXT NOT NULL, wallet_id TEXT NOT NULL, owner TEXT NOT NULL,
    operator_org TEXT NOT NULL, kind TEXT NOT NULL, category INTEGER NOT NULL,
    parent TEXT NOT NULL, frozen INTEGER NOT NULL, opened_height INTEGER NOT NULL,
    PRIMARY KEY (chain_id, wallet_id));
CREATE INDEX IF NOT EXISTS wallets_owner ON wallets (owner);
CREATE TABLE IF NOT EXISTS wallet_links (
    chain_id TEXT NOT NULL, account_id TEXT NOT NULL, wallet_id TEXT NOT NULL,
    height INTEGER NOT NULL, PRIMARY KEY (chain_id, account_id));
CREATE TABLE IF NOT EXISTS holdings (
    chain_id TEXT NOT NULL, code TEXT NOT NULL, account_id TEXT NOT NULL,
    height INTEGER NOT NULL, balance INTEGER NOT NULL,
    PRIMARY KEY (chain_id, code, account_id, height));
CREATE TABLE IF NOT EXISTS wallet_balances (
    chain_id TEXT NOT NULL, wallet_id TEXT NOT NULL, height INTEGER NOT NULL,
    balance INTEGER NOT NULL, PRIMARY KEY (chain_id, wallet_id, height));
CREATE TABLE IF NOT EXISTS transfers (
    chain_id TEXT NOT NULL, height INTEGER NOT NULL, idx INTEGER NOT NULL,
    seq INTEGER NOT NULL, time_ms INTEGER NOT NULL, code TEXT NOT NULL,
    from_account TEXT NOT NULL, to_account TEXT NOT NULL, amount INTEGER NOT NULL,
    PRIMARY KEY (chain_id, height, idx, seq));
CREATE INDEX IF NOT EXISTS transfers_pair ON transfers (chain_id, code, from_account, to_account);
CREATE TABLE IF NOT EXISTS volume_day (
    chain_id TEXT NOT NULL, subject TEXT NOT NULL, asset TEXT NOT NULL, day INTEGER NOT NULL,
    volume INTEGER NOT NULL, alerted INTEGER NOT NULL,
    PRIMARY KEY (chain_id, subject, asset, day));
CREATE TABLE IF NOT EXISTS freezes (
    chain_id TEXT NOT NULL, freeze_id TEXT NOT NULL, scope TEXT NOT NULL, code TEXT NOT NULL,
    account_id TEXT NOT NULL, open INTEGER NOT NULL, amount INTEGER NOT NULL,
    reference TEXT NOT NULL, opened_height INTEGER NOT NULL, opened_ms INTEGER NOT NULL,
    closed_height INTEGER, closed_ms INTEGER, closed_by TEXT NOT NULL,
    PRIMARY KEY (chain_id, freeze_id));
CREATE INDEX IF NOT EXISTS freezes_closed ON freezes (open, closed_height);
CREATE TABLE IF NOT EXISTS large_payments (
    chain_id TEXT NOT NULL, height INTEGER NOT NULL, idx INTEGER NOT NULL,
    seq INTEGER NOT NULL, tx_hash TEXT NOT NULL, time_ms INTEGER NOT NULL,
    payer TEXT NOT NULL, payer_operator TEXT NOT NULL, payee TEXT NOT NULL,
    payee_operator TEXT NOT NULL, amount_fen INTEGER NOT NULL, purpose TEXT NOT NULL,
    PRIMARY KEY (chain_id, height, idx, seq));
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, chain_id TEXT NOT NULL,
    height INTEGER NOT NULL, tx_hash TEXT NOT NULL, subject TEXT NOT NULL,
    detail TEXT NOT NULL, severity TEXT NOT NULL,
    UNIQUE (rule, chain_id, height, tx_hash, subject, detail));
CREATE TABLE IF NOT EXISTS notary_deposits (
    chain_id TEXT NOT NULL, deposit_id TEXT NOT NULL, org_id TEXT NOT NULL,
    depositor TEXT NOT NULL, project TEXT NOT NULL, doc_type TEXT NOT NULL,
    version INTEGER NOT NULL, previous TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    height INTEGER NOT NULL, time_ms INTEGER NOT NULL, withdrawn_height INTEGER,
    PRIMARY KEY (chain_id, deposit_id));
CREATE INDEX IF NOT EXISTS notary_deposits_project ON notary_deposits (org_id, project, chain_id);
"""

# Argument / attribute names that name a securities account, a wallet, or a security code.
ACCOUNT_FIELDS = frozenset(
    {"account_id", "from_account", "to_account", "seller_account", "buyer_account"}
)
WALLET_FIELDS = frozenset(
    {
        "wallet_id",
        "from_wallet",
        "to_wallet",
        "payer_wallet",
        "payee_wallet",
        "payer",
        "payee",
        "custody_wallet",
        "fee_wallet",
        "parent",
    }
)
OTHER_FIELDS = frozenset({"investor_id"})
_PAIRS_PER_QUERY = 200  # (chain, subject) pairs per query: under SQLite's expression depth


# The columns of a large-value payment row, in the order both payment queries return them.
_PAYMENT_FIELDS = (
    "chain_id",
    "height",
    "tx_hash",
    "time_ms",
    "payer",
    "payer_operator",
    "payee",
    "payee_operator",
    "amount_fen",
    "purpose",
)


class LookthroughError(Exception):
    """The index cannot do what was asked (the message says why, for the operator)."""


@dataclass(frozen=True)
class ChainProgress:
    chain_id: str
    height: int
    head: int
    indexed: int  # blocks indexed by this call


def _hex(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def _subjects(values: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(role, subject) for the account, wallet and investor names in args or attributes."""
    for key, value in values.items():
        if key in ACCOUNT_FIELDS or key in WALLET_FIELDS or key in OTHER_FIELDS:
            if isinstance(value, str) and value:
                yield key, value
        elif key == "account_ids" and isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, str) and item:
                    yield "account_id", item
        elif key == "entries" and isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("account_id"), str):
                    yield "account_id", item["account_id"]


def _accounts_and_codes(tx_args: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    accounts = {s for role, s in _subjects(tx_args) if role in ACCOUNT_FIELDS}
    code = tx_args.get("code")
    return frozenset(accounts), frozenset({code} if isinstance(code, str) and code else ())


class LookthroughIndex:
    """The index file. Not thread-safe; one writer at a time (SQLite serializes writers).

    ``readonly=True`` opens an existing index for queries only (SQLite ``mode=ro``: it never
    writes, creates or migrates anything, and reads safely while a follower writes, WAL);
    a missing file or another schema raises ``LookthroughError``."""

    def __init__(
        self,
        path: str | Path,
        config: SurveillanceConfig | None = None,
        *,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.config = config or SurveillanceConfig()
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise LookthroughError(f"no index at {self.path}")
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5)
                self.db.execute("PRAGMA query_only=1")
            else:
                self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None and not readonly:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row is None or row[0] != SCHEMA_VERSION:
                self.db.close()
                raise LookthroughError(
                    f"{self.path} has index schema {None if row is None else row[0]}, this "
                    f"build reads and writes {SCHEMA_VERSION}: delete it and let "
                    "`consortia supervise follow` (or `index`) rebuild it from the chains"
                )
        except sqlite3.DatabaseError as exc:
            raise LookthroughError(f"{self.path} is not a usable index file: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LookthroughIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[LookthroughIndex]:
        """Queries inside see one consistent state of the index (a read transaction), however
        many blocks a follower commits meanwhile."""
        self.db.execute("BEGIN")
        try:
            yield self
        finally:
            self.db.execute("COMMIT")

    # -- progress ------------------------------------------------------------------------------

    def indexed_height(self, chain_id: str) -> int:
        row = self.db.execute("SELECT height FROM chains WHERE chain_id=?", (chain_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def chains(self) -> list[tuple[str, int]]:
        rows = self.db.execute("SELECT chain_id, height FROM chains ORDER BY chain_id")
        return [(str(c), int(h)) for c, h in rows]

    def _check_chain(self, chain_id: str, genesis_hash: str) -> None:
        row = self.db.execute(
            "SELECT genesis_hash FROM chains WHERE chain_id=?", (chain_id,)
        ).fetchone()
        if row is not None and row[0] != genesis_hash:
            raise LookthroughError(
                f"chain {chain_id!r} in the index has genesis {row[0][:16]}…, this store "
                f"{genesis_hash[:16]}…: a different chain under the same id"
            )

    def block_hash(self, chain_id: str, height: int) -> str | None:
        row = self.db.execute(
            "SELECT block_hash FROM blocks WHERE chain_id=? AND height=?", (chain_id, height)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- ingest --------------------------------------------------------------------------------

    def ingest(
        self,
        block: Block,
        receipts: Sequence[Receipt],
        *,
        block_hash: bytes,
        genesis_hash: str = "",
    ) -> bool:
        """Index one committed block (with its receipts, in transaction order).

        Returns False (and changes nothing) if the block is already indexed; raises
        ``LookthroughError`` for a gap (the block is not the next height of its chain) or
        receipts that do not match the block. Everything the block changes, its alerts and the
        chain's new height are written in one SQLite transaction.
        """
        h = block.header
        chain_id = h.chain_id
        if len(receipts) != len(block.transactions):
            raise LookthroughError(
                f"{chain_id} block {h.height}: {len(receipts)} receipts for "
                f"{len(block.transactions)} transactions"
            )
        with self._transaction() as db:
            row = db.execute(
                "SELECT height, genesis_hash FROM chains WHERE chain_id=?", (chain_id,)
            ).fetchone()
            last = 0 if row is None else int(row[0])
            if row is not None and genesis_hash and row[1] and row[1] != genesis_hash:
                raise LookthroughError(f"chain {chain_id!r}: the index follows another genesis")
            if h.height <= last:
                return False
            if h.height != last + 1:
                raise LookthroughError(
                    f"{chain_id}: block {h.height} does not follow indexed height {last}"
                )
            for i, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
                self._ingest_tx(db, chain_id, h.height, h.time_ms, i, tx.sender, tx, receipt)
            db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                (chain_id, h.height, block_hash.hex(), h.time_ms, len(block.transactions)),
            )
            db.execute(
                "INSERT INTO chains VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain_id) DO UPDATE SET "
                "height=excluded.height, block_hash=excluded.block_hash, time_ms=excluded.time_ms",
                (chain_id, genesis_hash, h.height, block_hash.hex(), h.time_ms),
            )
        return True

    def _ingest_tx(
        self,
        db: sqlite3.Connection,
        chain_id: str,
        height: int,
        time_ms: int,
        idx: int,
        sender: bytes,
        tx: Any,
        receipt: Receipt,
    ) -> None:
        args: dict[str, Any] = dict(tx.args)
        accounts, codes = _accounts_and_codes(args)
        events = tuple(EventFacts(e.module, e.kind, dict(e.attributes)) for e in receipt.events)
        for ev in events:
            more_accounts, more_codes = _accounts_and_codes(ev.attributes)
            accounts, codes = accounts | more_accounts, codes | more_codes
        facts = TxFacts(
            chain_id=chain_id,
            height=height,
            time_ms=time_ms,
            index=idx,
            tx_hash=receipt.tx_hash.hex(),
            sender=sender.hex(),
            module=tx.module,
            method=tx.method,
            args=args,
            ok=receipt.status == TxStatus.OK,
            code=receipt.code,
            events=events,
            accounts=accounts,
            codes=codes,
        )
        view = _View(db)
        alerts: list[Alert] = frozen_activity(facts, view)  # against freezes before this tx
        db.execute(
            "INSERT INTO txs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chain_id,
                height,
                idx,
                facts.tx_hash,
                time_ms,
                facts.sender,
                tx.module,
                tx.method,
                int(facts.ok),
                receipt.code,
            ),
        )
        subjects = {("sender", facts.sender)}
        subjects.update(_subjects(args))
        for ev in events:
            subjects.update(_subjects(ev.attributes))
        db.executemany(
            "INSERT OR IGNORE INTO tx_subjects VALUES (?, ?, ?, ?, ?)",
            [(chain_id, s, height, idx, role) for role, s in subjects],
        )
        day = cst_date(time_ms)
        if facts.ok:
            _Apply(db, facts, day).run()
        alerts += large_value_payments(facts)
        alerts += holding_steps(facts)
        alerts += wash_trades(facts, view, self.config)
        for alert in abnormal_volume(facts, view, self.config, day):
            alerts.append(alert)
            for subject, asset, _ in volume_legs(facts):
                if subject == alert.subject:
                    db.execute(
                        "UPDATE volume_day SET alerted=1 WHERE chain_id=? AND subject=? "
                        "AND asset=? AND day=?",
                        (chain_id, subject, asset, day),
                    )
        db.executemany(
            "INSERT OR IGNORE INTO alerts (rule, chain_id, height, tx_hash, subject, detail, "
            "severity) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (a.rule, a.chain_id, a.height, a.tx_hash, a.subject, a.detail, a.severity)
                for a in alerts
            ],
        )

    # -- following a store ---------------------------------------------------------------------

    def follow_store(
        self,
        store: ChainStore,
        chain_id: str,
        *,
        genesis_hash: str = "",
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ChainProgress:
        """Index the committed blocks of ``store`` after the chain's indexed height (at most
        ``limit`` of them). Refuses a store whose block at the indexed height differs from the
        one indexed (another chain or a rebuilt store)."""
        if genesis_hash:
            self._check_chain(chain_id, genesis_hash)
        start = self.indexed_height(chain_id)
        with store.snapshot() as snap:
            head_entry = snap.head()
            head = 0 if head_entry is None else head_entry[0]
            if start > head:
                raise LookthroughError(
                    f"{chain_id}: the index is at height {start} but the store only at {head}"
                )
            if start > 0:
                stored = snap.block_hash(start)
                if stored is None or stored.hex() != self.block_hash(chain_id, start):
                    raise LookthroughError(
                        f"{chain_id}: the store's block {start} is not the one indexed"
                    )
            end = head if limit is None else min(head, start + limit)
            done = 0
            for height in range(start + 1, end + 1):
                raw, raw_receipts = snap.block(height), snap.receipts(height)
                raw_hash = snap.block_hash(height)
                if raw is None or raw_receipts is None or raw_hash is None:
                    raise LookthroughError(f"{chain_id}: block {height} missing from the store")
                block = decode_block(raw)
                if block.header.chain_id != chain_id:
                    raise LookthroughError(
                        f"the store holds chain {block.header.chain_id!r}, not {chain_id!r}"
                    )
                receipts = decode_receipts(raw_receipts).receipts
                if self.ingest(block, receipts, block_hash=raw_hash, genesis_hash=genesis_hash):
                    done += 1
                if progress is not None:
                    progress(height, head)
        return ChainProgress(chain_id, start + done, head, done)

    def follow_home(
        self,
        home: Path,
        *,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ChainProgress:
        """Index what the node in ``home`` has committed (its store opened read-only)."""
        genesis = load_genesis(home)
        with ChainStore.open(home / DATA_DIR, readonly=True) as store:
            return self.follow_store(
                store,
                genesis.chain_id,
                genesis_hash=genesis.hash().hex(),
                limit=limit,
                progress=progress,
            )

    # -- queries -------------------------------------------------------------------------------

    def holdings_of(
        self, chain_id: str, account_id: str, height: int | None = None
    ) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT code, balance FROM holdings h WHERE chain_id=? AND account_id=? AND height = "
            "(SELECT MAX(height) FROM holdings WHERE chain_id=h.chain_id AND code=h.code AND "
            "account_id=h.account_id AND height<=?) ORDER BY code",
            (chain_id, account_id, height if height is not None else 1 << 62),
        )
        return {str(c): int(b) for c, b in rows if b}

    def wallet_balance(self, chain_id: str, wallet_id: str, height: int | None = None) -> int:
        row = self.db.execute(
            "SELECT balance FROM wallet_balances WHERE chain_id=? AND wallet_id=? AND height<=? "
            "ORDER BY height DESC LIMIT 1",
            (chain_id, wallet_id, height if height is not None else 1 << 62),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def investor(self, investor_id: str) -> dict[str, Any]:
        """An investor's securities accounts, holdings and e-CNY wallets on every chain."""
        out: dict[str, Any] = {"investor_id": investor_id, "chains": []}
        rows = self.db.execute(
            "SELECT chain_id, address, org_id, kind FROM investors WHERE investor_id=? "
            "ORDER BY chain_id",
            (investor_id,),
        ).fetchall()
        totals: dict[str, int] = {}
        cash = 0
        for chain_id, address, org_id, kind in rows:
            accounts = []
            for (account_id,) in self.db.execute(
                "SELECT account_id FROM sec_accounts WHERE chain_id=? AND investor_id=? "
                "ORDER BY account_id",
                (chain_id, investor_id),
            ).fetchall():
                held = self.holdings_of(chain_id, account_id)
                for code, amount in held.items():
                    totals[f"{chain_id}:{code}"] = totals.get(f"{chain_id}:{code}", 0) + amount
                accounts.append({"account_id": account_id, "holdings": held})
            wallet_ids = {
                str(w)
                for (w,) in self.db.execute(
                    "SELECT wallet_id FROM wallets WHERE chain_id=? AND owner=?",
                    (chain_id, address),
                )
            }
            wallet_ids |= {
                str(w)
                for (w,) in self.db.execute(
                    "SELECT l.wallet_id FROM wallet_links l JOIN sec_accounts a ON "
                    "a.chain_id=l.chain_id AND a.account_id=l.account_id WHERE l.chain_id=? AND "
                    "a.investor_id=?",
                    (chain_id, investor_id),
                )
            }
            wallets: list[dict[str, Any]] = [
                {"wallet_id": w, "balance_fen": self.wallet_balance(chain_id, w)}
                for w in sorted(wallet_ids)
            ]
            cash += sum(int(w["balance_fen"]) for w in wallets)
            out["chains"].append(
                {
                    "chain_id": chain_id,
                    "address": address,
                    "broker": org_id,
                    "kind": kind,
                    "accounts": accounts,
                    "wallets": wallets,
                }
            )
        out["total_holdings"] = dict(sorted(totals.items()))
        out["total_ecny_fen"] = cash
        return out

    def holders(
        self, code: str, height: int | None = None, chain_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The holder register of ``code`` at ``height`` (the head if None): exact, from the
        balance history."""
        rows = self.db.execute(
            "SELECT chain_id, account_id, balance, height FROM holdings h WHERE code=? AND "
            "(? IS NULL OR chain_id=?) AND height = (SELECT MAX(height) FROM holdings WHERE "
            "chain_id=h.chain_id AND code=h.code AND account_id=h.account_id AND height<=?) "
            "AND balance > 0 ORDER BY chain_id, balance DESC, account_id",
            (code, chain_id, chain_id, height if height is not None else 1 << 62),
        )
        return [
            {"chain_id": c, "account_id": a, "balance": int(b), "since_height": int(hh)}
            for c, a, b, hh in rows
        ]

    def history(self, account: str) -> list[dict[str, Any]]:
        """Every indexed transaction naming ``account`` (a securities account, a wallet or an
        address in hex) or a wallet linked to it or owned by its investor."""
        subjects = {account}
        for (w,) in self.db.execute(
            "SELECT wallet_id FROM wallet_links WHERE account_id=?", (account,)
        ):
            subjects.add(str(w))
        for (w,) in self.db.execute(
            "SELECT w.wallet_id FROM sec_accounts a JOIN investors i ON i.chain_id=a.chain_id "
            "AND i.investor_id=a.investor_id JOIN wallets w ON w.chain_id=a.chain_id AND "
            "w.owner=i.address WHERE a.account_id=?",
            (account,),
        ):
            subjects.add(str(w))
        marks = ",".join("?" * len(subjects))
        rows = self.db.execute(
            "SELECT t.chain_id, t.height, t.idx, t.tx_hash, t.time_ms, t.module, t.method, "
            "t.ok, t.code, group_concat(DISTINCT s.subject) FROM tx_subjects s JOIN txs t ON "
            "t.chain_id=s.chain_id AND t.height=s.height AND t.idx=s.idx "
            f"WHERE s.subject IN ({marks}) GROUP BY t.chain_id, t.height, t.idx "
            "ORDER BY t.chain_id, t.height, t.idx",
            sorted(subjects),
        )
        return [
            {
                "chain_id": c,
                "height": int(h),
                "index": int(i),
                "tx_hash": th,
                "time_ms": int(tm),
                "call": f"{m}.{me}",
                "outcome": "OK" if ok else code,
                "via": ",".join(sorted(str(via).split(","))),
            }
            for c, h, i, th, tm, m, me, ok, code, via in rows
        ]

    def large_payments(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            f"SELECT {', '.join(_PAYMENT_FIELDS)} FROM large_payments "
            "ORDER BY chain_id, height, idx, seq"
        )
        return [dict(zip(_PAYMENT_FIELDS, r, strict=True)) for r in rows]

    def alerts(self, rule: str | None = None, chain_id: str | None = None) -> list[Alert]:
        rows = self.db.execute(
            "SELECT rule, chain_id, height, tx_hash, subject, detail, severity FROM alerts "
            "WHERE (? IS NULL OR rule=?) AND (? IS NULL OR chain_id=?) ORDER BY id",
            (rule, rule, chain_id, chain_id),
        )
        return [Alert(r, c, int(h), t, s, d, sv) for r, c, h, t, s, d, sv in rows]

    # -- paged and summary queries (the regulator dashboard) -------------------------------------

    def chain_heads(self) -> list[dict[str, Any]]:
        """Each indexed chain's indexed height, and that block's hash and time: the index's
        freshness."""
        rows = self.db.execute(
            "SELECT chain_id, height, block_hash, time_ms FROM chains ORDER BY chain_id"
        )
        return [
            {"chain_id": c, "height": int(h), "block_hash": bh, "time_ms": int(t)}
            for c, h, bh, t in rows
        ]

    def alerts_page(
        self,
        *,
        rule: str | None = None,
        chain_id: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Alerts newest first (by ``id``, the order they were raised), at most ``limit``, only
        those with ``id < before_id`` when given (the next page)."""
        rows = self.db.execute(
            "SELECT id, rule, chain_id, height, tx_hash, subject, detail, severity FROM alerts "
            "WHERE (? IS NULL OR rule=?) AND (? IS NULL OR chain_id=?) AND (? IS NULL OR id<?) "
            "ORDER BY id DESC LIMIT ?",
            (rule, rule, chain_id, chain_id, before_id, before_id, limit),
        )
        keys = ("id", "rule", "chain_id", "height", "tx_hash", "subject", "detail", "severity")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def alert_counts(self) -> dict[str, dict[str, int]]:
        """Alerts stored per chain and severity."""
        out: dict[str, dict[str, int]] = {}
        for chain_id, severity, n in self.db.execute(
            "SELECT chain_id, severity, COUNT(*) FROM alerts GROUP BY chain_id, severity"
        ):
            out.setdefault(str(chain_id), {})[str(severity)] = int(n)
        return out

    def large_payments_page(
        self, *, chain_id: str | None = None, limit: int = 50, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Large-value payments newest indexed first, at most ``limit``; ``id`` (the row id, in
        indexing order) pages as for ``alerts_page``."""
        rows = self.db.execute(
            f"SELECT rowid, {', '.join(_PAYMENT_FIELDS)} FROM large_payments WHERE (? IS NULL OR "
            "chain_id=?) AND (? IS NULL OR rowid<?) ORDER BY rowid DESC LIMIT ?",
            (chain_id, chain_id, before_id, before_id, limit),
        )
        return [dict(zip(("id", *_PAYMENT_FIELDS), r, strict=True)) for r in rows]

    def freezes(self, *, chain_id: str | None = None, lifted: int = 0) -> dict[str, Any]:
        """Open freezes (oldest first) and the ``lifted`` most recently lifted ones (newest
        first), with the heights and block times they were opened and lifted."""
        cols = (
            "chain_id, freeze_id, scope, code, account_id, amount, reference, opened_height, "
            "opened_ms, closed_height, closed_ms, closed_by"
        )
        keys = tuple(c.strip() for c in cols.split(","))
        open_rows = self.db.execute(
            f"SELECT {cols} FROM freezes WHERE open=1 AND (? IS NULL OR chain_id=?) "
            "ORDER BY opened_height, chain_id, freeze_id",
            (chain_id, chain_id),
        ).fetchall()
        lifted_rows = (
            self.db.execute(
                f"SELECT {cols} FROM freezes WHERE open=0 AND (? IS NULL OR chain_id=?) "
                "ORDER BY closed_ms DESC, closed_height DESC, chain_id, freeze_id LIMIT ?",
                (chain_id, chain_id, lifted),
            ).fetchall()
            if lifted > 0
            else []
        )
        return {
            "open": [dict(zip(keys, r, strict=True)) for r in open_rows],
            "lifted": [dict(zip(keys, r, strict=True)) for r in lifted_rows],
        }

    def open_freeze_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT chain_id, COUNT(*) FROM freezes WHERE open=1 GROUP BY 1")
        return {str(c): int(n) for c, n in rows}

    def knows_security(self, chain_id: str, code: str) -> bool:
        """Whether any holding of ``code`` on ``chain_id`` was ever indexed."""
        row = self.db.execute(
            "SELECT 1 FROM holdings WHERE chain_id=? AND code=? LIMIT 1", (chain_id, code)
        ).fetchone()
        return row is not None

    def investor_history(self, investor_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The ``limit`` latest indexed transactions (newest first) naming the investor, its
        address, one of its securities accounts or one of its wallets, on every chain."""
        looked_through = self.investor(investor_id)
        pairs: set[tuple[str, str]] = set()
        for c in looked_through["chains"]:
            chain_id = c["chain_id"]
            pairs |= {(chain_id, investor_id), (chain_id, c["address"])}
            pairs |= {(chain_id, a["account_id"]) for a in c["accounts"]}
            pairs |= {(chain_id, w["wallet_id"]) for w in c["wallets"]}
        # One indexed lookup per (chain, subject) pair (an OR of equalities uses the primary
        # key; a row-value IN would scan), in chunks under SQLite's expression depth limit.
        found: dict[tuple[str, int, int], dict[str, Any]] = {}
        ordered = sorted(pairs)
        for start in range(0, len(ordered), _PAIRS_PER_QUERY):
            chunk = ordered[start : start + _PAIRS_PER_QUERY]
            where = " OR ".join("(s.chain_id=? AND s.subject=?)" for _ in chunk)
            rows = self.db.execute(
                "SELECT t.chain_id, t.height, t.idx, t.tx_hash, t.time_ms, t.module, t.method, "
                "t.ok, t.code, s.subject FROM tx_subjects s CROSS JOIN txs t ON "
                "t.chain_id=s.chain_id AND t.height=s.height AND t.idx=s.idx "
                f"WHERE {where}",
                [x for pair in chunk for x in pair],
            )
            for c, h, i, th, tm, m, me, ok, code, subject in rows:
                row = found.setdefault(
                    (str(c), int(h), int(i)),
                    {
                        "chain_id": c,
                        "height": int(h),
                        "index": int(i),
                        "tx_hash": th,
                        "time_ms": int(tm),
                        "call": f"{m}.{me}",
                        "outcome": "OK" if ok else code,
                        "via": set(),
                    },
                )
                row["via"].add(str(subject))
        newest = sorted(
            found.values(), key=lambda r: (-r["time_ms"], r["chain_id"], -r["height"], -r["index"])
        )[:limit]
        return [{**r, "via": ",".join(sorted(r["via"]))} for r in newest]

    # -- notary ------------------------------------------------------------------------------

    def notary_projects(
        self,
        *,
        org_id: str | None = None,
        project: str | None = None,
        chain_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Deposits per institution per project: one row per (chain, organization, project)
        with the number of deposits and of withdrawn ones, the latest deposit (the highest
        deposit number: the chain's counter, zero-padded) with its version, height and block
        time, and the chain's indexed head block time; ordered by organization, project, chain."""
        rows = self.db.execute(
            "SELECT d.chain_id, d.org_id, d.project, COUNT(*), "
            "SUM(d.withdrawn_height IS NOT NULL), MAX(d.deposit_id), d.version, d.height, "
            "d.time_ms, c.time_ms FROM notary_deposits d JOIN chains c USING (chain_id) "
            "WHERE (? IS NULL OR d.org_id=?) AND (? IS NULL OR d.project=?) "
            "AND (? IS NULL OR d.chain_id=?) "
            "GROUP BY d.chain_id, d.org_id, d.project ORDER BY d.org_id, d.project, d.chain_id",
            (org_id, org_id, project, project, chain_id, chain_id),
        ).fetchall()
        keys = (
            "chain_id",
            "org_id",
            "project",
            "deposits",
            "withdrawn",
            "latest_deposit_id",
            "latest_version",
            "latest_height",
            "latest_time_ms",
            "head_time_ms",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def notary_gaps(self, days: int, *, org_id: str | None = None) -> list[dict[str, Any]]:
        """Projects whose latest deposit is more than ``days`` days of block time older than
        their chain's indexed head (working papers that stopped being updated), the longest
        idle first, each with ``idle_ms`` and whole ``idle_days``."""
        if days < 0:
            raise LookthroughError("a gap is a number of days >= 0")
        out = []
        for row in self.notary_projects(org_id=org_id):
            idle = int(row["head_time_ms"]) - int(row["latest_time_ms"])
            if idle > days * DAY_MS:
                out.append({**row, "idle_ms": idle, "idle_days": idle // DAY_MS})
        out.sort(key=lambda r: (-r["idle_ms"], r["org_id"], r["project"], r["chain_id"]))
        return out

    def notary_deposits(
        self, org_id: str, project: str, *, chain_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The ``limit`` latest deposits (newest first) of one organization's project."""
        cols = (
            "chain_id, deposit_id, org_id, depositor, project, doc_type, version, previous, "
            "sha256, size, height, time_ms, withdrawn_height"
        )
        keys = tuple(c.strip() for c in cols.split(","))
        rows = self.db.execute(
            f"SELECT {cols} FROM notary_deposits WHERE org_id=? AND project=? "
            "AND (? IS NULL OR chain_id=?) ORDER BY height DESC, deposit_id DESC LIMIT ?",
            (org_id, project, chain_id, chain_id, limit),
        ).fetchall()
        return [dict(zip(keys, r, strict=True)) for r in rows]


class _View:
    """``IndexView`` over the connection, inside the block's transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def earlier_transfer(
        self, chain_id: str, code: str, from_account: str, to_account: str, tx: TxFacts
    ) -> Transfer | None:
        row = self.db.execute(
            "SELECT height, idx, time_ms, amount FROM transfers WHERE chain_id=? AND code=? AND "
            "from_account=? AND to_account=? AND (height<? OR (height=? AND idx<?)) "
            "ORDER BY height DESC, idx DESC LIMIT 1",
            (chain_id, code, from_account, to_account, tx.height, tx.height, tx.index),
        ).fetchone()
        if row is None:
            return None
        return Transfer(
            int(row[0]), int(row[1]), int(row[2]), code, from_account, to_account, int(row[3])
        )

    def frozen(self, chain_id: str, account_id: str, codes: frozenset[str]) -> str | None:
        for freeze_id, scope, code in self.db.execute(
            "SELECT freeze_id, scope, code FROM freezes WHERE chain_id=? AND account_id=? "
            "AND open=1 ORDER BY freeze_id",
            (chain_id, account_id),
        ):
            if scope != "amount" or code in codes:
                return str(freeze_id)
        return None

    def day_volume(self, chain_id: str, subject: str, asset: str, day: int) -> int:
        row = self.db.execute(
            "SELECT volume FROM volume_day WHERE chain_id=? AND subject=? AND asset=? AND day=?",
            (chain_id, subject, asset, day),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def trailing_volume(self, chain_id: str, subject: str, asset: str, day: int, days: int) -> int:
        first = cst_date(date_start_ms(day) - days * DAY_MS)
        row = self.db.execute(
            "SELECT COALESCE(SUM(volume), 0) FROM volume_day WHERE chain_id=? AND subject=? "
            "AND asset=? AND day>=? AND day<?",
            (chain_id, subject, asset, first, day),
        ).fetchone()
        return int(row[0])

    def volume_alerted(self, chain_id: str, subject: str, asset: str, day: int) -> bool:
        row = self.db.execute(
            "SELECT alerted FROM volume_day WHERE chain_id=? AND subject=? AND asset=? AND day=?",
            (chain_id, subject, asset, day),
        ).fetchone()
        return row is not None and bool(row[0])


class _Apply:
    """What a successful transaction's events change in the index."""

    def __init__(self, db: sqlite3.Connection, tx: TxFacts, day: int) -> None:
        self.db, self.tx, self.day = db, tx, day
        self.c = tx.chain_id

    def holding(self, code: str, account: str) -> int:
        row = self.db.execute(
            "SELECT balance FROM holdings WHERE chain_id=? AND code=? AND account_id=? "
            "ORDER BY height DESC LIMIT 1",
            (self.c, code, account),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def move(self, code: str, account: str, delta: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO holdings VALUES (?, ?, ?, ?, ?)",
            (self.c, code, account, self.tx.height, self.holding(code, account) + delta),
        )

    def cash(self, wallet: str, delta: int) -> None:
        row = self.db.execute(
            "SELECT balance FROM wallet_balances WHERE chain_id=? AND wallet_id=? "
            "ORDER BY height DESC LIMIT 1",
            (self.c, wallet),
        ).fetchone()
        balance = (0 if row is None else int(row[0])) + delta
        self.db.execute(
            "INSERT OR REPLACE INTO wallet_balances VALUES (?, ?, ?, ?)",
            (self.c, wallet, self.tx.height, balance),
        )

    def volume(self) -> None:
        for subject, asset, amount in volume_legs(self.tx):
            self.db.execute(
                "INSERT INTO volume_day VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (chain_id, "
                "subject, asset, day) DO UPDATE SET volume=volume+excluded.volume",
                (self.c, subject, asset, self.day, amount),
            )

    def run(self) -> None:
        tx = self.tx
        for seq, ev in enumerate(tx.events):
            handler = getattr(self, f"_{ev.module}_{ev.kind}", None)
            if handler is not None:
                handler(seq, ev.attributes)
        self.volume()

    # investors
    def _investors_investor_opened(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO investors VALUES (?, ?, ?, ?, ?, ?)",
            (self.c, a["investor_id"], _hex(a["address"]), a["org_id"], a["kind"], self.tx.height),
        )

    def _investors_account_opened(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sec_accounts VALUES (?, ?, ?, ?, NULL)",
            (self.c, a["account_id"], a["investor_id"], self.tx.height),
        )

    def _investors_account_closed(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE sec_accounts SET closed_height=? WHERE chain_id=? AND account_id=?",
            (self.tx.height, self.c, a["account_id"]),
        )

    # securities
    def _securities_issued(self, seq: int, a: dict[str, Any]) -> None:
        self.move(a["code"], a["account_id"], int(a["amount"]))

    def _securities_cancelled(self, seq: int, a: dict[str, Any]) -> None:
        self.move(a["code"], a["account_id"], -int(a["amount"]))

    def _securities_transferred(self, seq: int, a: dict[str, Any]) -> None:
        amount = int(a["amount"])
        self.move(a["code"], a["from_account"], -amount)
        self.move(a["code"], a["to_account"], amount)
        self.db.execute(
            "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.c,
                self.tx.height,
                self.tx.index,
                seq,
                self.tx.time_ms,
                a["code"],
                a["from_account"],
                a["to_account"],
                amount,
            ),
        )

    def _securities_holdings_mapped(self, seq: int, a: dict[str, Any]) -> None:
        # The event carries the batch total only; the entries are the transaction's arguments.
        if self.tx.module == "securities" and self.tx.method == "map_holdings":
            for entry in self.tx.args.get("entries", ()):
                self.move(a["code"], entry["account_id"], int(entry["amount"]))

    # corporate actions
    def _corporate_actions_split_executed(self, seq: int, a: dict[str, Any]) -> None:
        code, new, old = a["code"], int(a["new_shares"]), int(a["old_shares"])
        rows = self.db.execute(
            "SELECT account_id, balance FROM holdings h WHERE chain_id=? AND code=? AND height = "
            "(SELECT MAX(height) FROM holdings WHERE chain_id=h.chain_id AND code=h.code AND "
            "account_id=h.account_id) AND balance > 0",
            (self.c, code),
        ).fetchall()
        for account, balance in rows:
            self.move(code, account, int(balance) * new // old - int(balance))

    # enforcement
    def _freeze(self, a: dict[str, Any], lifted_by: str = "") -> None:
        """Open a freeze (``lifted_by`` empty) or record how and when it was lifted."""
        tx = self.tx
        if not lifted_by:
            self.db.execute(
                "INSERT OR REPLACE INTO freezes VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, NULL, NULL, "
                "'')",
                (
                    self.c,
                    a["freeze_id"],
                    a["scope"],
                    a["code"],
                    a["account_id"],
                    int(a.get("amount", 0)),
                    str(a.get("reference", "")),
                    tx.height,
                    tx.time_ms,
                ),
            )
            return
        self.db.execute(
            "INSERT INTO freezes VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
            "(chain_id, freeze_id) DO UPDATE SET open=0, closed_height=excluded.closed_height, "
            "closed_ms=excluded.closed_ms, closed_by=excluded.closed_by",
            (
                self.c,
                a["freeze_id"],
                a["scope"],
                a["code"],
                a["account_id"],
                int(a.get("amount", 0)),
                str(a.get("reference", "")),
                tx.height,  # lifted without the index having seen it opened
                tx.time_ms,
                tx.height,
                tx.time_ms,
                lifted_by,
            ),
        )

    def _enforcement_frozen(self, seq: int, a: dict[str, Any]) -> None:
        self._freeze(a)

    def _enforcement_unfrozen(self, seq: int, a: dict[str, Any]) -> None:
        self._freeze(a, "unfrozen")

    def _enforcement_freeze_expired(self, seq: int, a: dict[str, Any]) -> None:
        self._freeze(a, "expired")

    def _enforcement_forced_transfer(self, seq: int, a: dict[str, Any]) -> None:
        moved = int(a["transferred"])
        self.move(a["code"], a["account_id"], -moved)
        self.move(a["code"], a["to_account"], moved)
        self._freeze(a, "forced_transfer")

    # settlement
    def _settlement_wallet_linked(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO wallet_links VALUES (?, ?, ?, ?)",
            (self.c, a["account_id"], a["wallet_id"], self.tx.height),
        )

    # e-CNY
    def _wallet(
        self, a: dict[str, Any], operator_org: str, kind: str, category: int, parent: str
    ) -> None:
        owner = self.tx.args.get("owner", b"") if self.tx.module == "ecny" else b""
        self.db.execute(
            "INSERT OR REPLACE INTO wallets VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (
                self.c,
                a["wallet_id"],
                _hex(owner),
                operator_org,
                kind,
                category,
                parent,
                self.tx.height,
            ),
        )

    def _ecny_wallet_opened(self, seq: int, a: dict[str, Any]) -> None:
        self._wallet(a, a["operator_org"], a["kind"], int(a["category"]), "")

    def _ecny_sub_wallet_opened(self, seq: int, a: dict[str, Any]) -> None:
        parent = self.db.execute(
            "SELECT operator_org, kind, category FROM wallets WHERE chain_id=? AND wallet_id=?",
            (self.c, a["parent"]),
        ).fetchone()
        org, kind, category = parent if parent is not None else ("", "", 0)
        self._wallet(a, str(org), str(kind), int(category), a["parent"])

    def _ecny_wallet_upgraded(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE wallets SET category=? WHERE chain_id=? AND (wallet_id=? OR parent=?)",
            (int(a["to_category"]), self.c, a["wallet_id"], a["wallet_id"]),
        )

    def _ecny_wallet_frozen(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE wallets SET frozen=1 WHERE chain_id=? AND wallet_id=?", (self.c, a["wallet_id"])
        )

    def _ecny_wallet_unfrozen(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE wallets SET frozen=0 WHERE chain_id=? AND wallet_id=?", (self.c, a["wallet_id"])
        )

    def _ecny_loaded(self, seq: int, a: dict[str, Any]) -> None:
        self.cash(a["wallet_id"], int(a["amount_fen"]))

    def _ecny_unloaded(self, seq: int, a: dict[str, Any]) -> None:
        self.cash(a["wallet_id"], -int(a["amount_fen"]))

    def _ecny_payment(self, seq: int, a: dict[str, Any]) -> None:
        amount = int(a["amount_fen"])
        if a.get("purpose") != "escrow":  # a released escrow left the payer when created
            self.cash(a["payer"], -amount)
        self.cash(a["payee"], amount)

    def _ecny_escrow_created(self, seq: int, a: dict[str, Any]) -> None:
        self.cash(a["payer"], -int(a["amount_fen"]))

    def _ecny_escrow_refunded(self, seq: int, a: dict[str, Any]) -> None:
        self.cash(a["payer"], int(a["amount_fen"]))

    def _ecny_large_value_payment(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO large_payments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.c,
                self.tx.height,
                self.tx.index,
                seq,
                self.tx.tx_hash,
                self.tx.time_ms,
                a["payer"],
                a["payer_operator"],
                a["payee"],
                a["payee_operator"],
                int(a["amount_fen"]),
                a["purpose"],
            ),
        )

    # notary (working papers, contracts: deposits per institution and project)
    def _notary_deposited(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO notary_deposits VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                self.c,
                a["deposit_id"],
                a["org_id"],
                _hex(a["depositor"]),
                a["project"],
                a["doc_type"],
                int(a["version"]),
                a["previous"],
                _hex(a["sha256"]),
                int(a["size"]),
                self.tx.height,
                self.tx.time_ms,
            ),
        )

    def _notary_withdrawn(self, seq: int, a: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE notary_deposits SET withdrawn_height=? WHERE chain_id=? AND deposit_id=?",
            (self.tx.height, self.c, a["deposit_id"]),
        )


# -- identities, opened at query time only ---------------------------------------------------------


def open_wallet_identity(
    store: ChainStore, suite_name: str, regulator: KeyPair, wallet_id: str
) -> dict[str, Any] | str:
    """The identity behind ``wallet_id`` (a sub-wallet: its parent's holder), opened with the
    regulator's key from the node's current state; a one-line reason if it cannot be."""
    suite = get_suite(suite_name)
    for _ in range(2):
        raw = store.state_get(wallet_key(wallet_id))
        if raw is None:
            return f"no wallet {wallet_id!r} in the node's state"
        w = codec.decode_struct(Wallet, raw)
        if w.parent and not w.sealed_identity:
            wallet_id = w.parent
            continue
        try:
            identity, _ = open_identity(suite, regulator, w.sealed_identity)
        except Exception as exc:
            return f"cannot open the sealed identity of {wallet_id!r}: {exc}"
        return identity
    return f"wallet {wallet_id!r} has no sealed identity"


def large_payments_with_identities(
    index: LookthroughIndex, homes: Iterable[Path], regulator: KeyPair
) -> list[dict[str, Any]]:
    """The indexed large-value payments, each with the payer's and payee's identity opened by
    the regulator's key from the state of the node of its chain (nothing is written anywhere)."""
    stores: dict[str, tuple[ChainStore, str]] = {}
    try:
        for home in homes:
            genesis = load_genesis(home)
            if genesis.chain_id in stores:
                raise LookthroughError(f"two homes of chain {genesis.chain_id!r}")
            store = ChainStore.open(home / DATA_DIR, readonly=True)
            stores[genesis.chain_id] = (store, genesis.suite)
        out = []
        for p in index.large_payments():
            found = stores.get(p["chain_id"])
            row = dict(p)
            for side in ("payer", "payee"):
                if found is None:
                    row[f"{side}_identity"] = f"no --home given for chain {p['chain_id']!r}"
                else:
                    row[f"{side}_identity"] = open_wallet_identity(
                        found[0], found[1], regulator, p[side]
                    )
            out.append(row)
        return out
    finally:
        for store, _ in stores.values():
            store.close()
