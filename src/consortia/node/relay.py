"""The relayer between one business chain and the supervision chain.

Each round it:

1. **follows** the supervision chain on the business chain: every supervision header after the
   one the business chain's ``supervision`` light client trusts, with its certificate (and the
   validator set a header announces), in ``supervision.follow`` batches;
2. **carries orders down**: it scans supervision receipts for ``orders/order_issued`` events
   addressed to this business chain; for each not yet applied there (``supervision/applied/<id>``
   is absent) it reads the order with its state proof at the supervision head H, makes sure the
   business chain follows the supervision chain up to H, and submits ``supervision.apply_order``;
3. **anchors** every committed business header after the supervision chain's
   ``AnchoredChain.height`` (read there, so the relayer keeps no state of its own: it is
   idempotent, restart-safe and catches up after downtime without gaps) in
   ``anchoring.anchor`` batches;
4. **files reports**: for the business blocks anchored so far and not yet reported, it derives
   standardized reports (``reports`` module, JR/T 0315-2024 categories) from the committed
   receipts' events (``report_candidates``, see there for the mapping) and submits them in
   batches of ``reports.submit_report`` transactions; each report id is deterministic
   (``report_id``), so a re-submission gets REPORT_EXISTS, which counts as done;
5. reports metrics (``RoundReport``): anchoring lag in blocks and in milliseconds (business head
   time − last anchored header time), heights, orders applied, reports filed, errors.

It is written against ``Endpoint`` (submit signed transactions and wait for their receipts, a
committed block with certificate and receipts, ``state.get``, the head height, an account's
nonce), implemented over a node's client port (``NodeEndpoint``) and in process over a
``LocalChain`` (``LocalEndpoint``, for tests). The relayer holds one key per chain: an account
with role ``relayer`` on each.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from consortia import codec
from consortia.crypto import CryptoError, KeyPair, Suite, get_suite
from consortia.execution.state import vset_history_key
from consortia.ledger.light import CertifiedHeader
from consortia.ledger.state_tree import StateProof, StateTreeError, verify_state_proof
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    Receipt,
    ReceiptList,
    Transaction,
    TxStatus,
    ValidatorSet,
    decode_block,
    decode_certificate,
    sign_transaction,
)
from consortia.modules import anchoring, orders, reports, supervision
from consortia.modules.registry import Account, account_key
from consortia.node.client import NodeUnreachableError
from consortia.node.client import call as client_call
from consortia.node.local import LocalChain, load_genesis
from consortia.node.network_home import NodeConfig

log = logging.getLogger(__name__)

# A transaction is at most ``ledger.types.MAX_TX_BYTES`` (64 KiB): keep a batch's headers well
# under it, whatever the certificate sizes.
MAX_BATCH_BYTES = 48_000


class RelayError(Exception):
    """The relayer could not do a step (a node unreachable, a bad reply); the message says why."""


# ---------------------------------------------------------------------------------------------
# Endpoints


@dataclass(frozen=True)
class CommittedBlock:
    block: Block
    certificate: CommitCertificate
    receipts: tuple[Receipt, ...]


@dataclass(frozen=True)
class StateReading:
    """A committed state value (None: absent) with its proof against ``state_root``."""

    key: bytes
    value: bytes | None
    proof: bytes
    height: int
    state_root: bytes


@dataclass(frozen=True)
class TxOutcome:
    ok: bool
    code: str
    message: str
    height: int | None


class Endpoint(Protocol):
    """What the relayer needs of one chain."""

    @property
    def chain_id(self) -> str: ...

    @property
    def suite(self) -> Suite: ...

    def head_height(self) -> int: ...

    def block(self, height: int) -> CommittedBlock: ...

    def state(self, key: bytes) -> StateReading: ...

    def nonce(self, address: bytes) -> int: ...

    def submit(self, txs: Sequence[Transaction]) -> list[TxOutcome]:
        """Submit and wait until each is committed (or refused); one outcome per transaction."""
        ...


def _decode_receipts(raw: bytes | None) -> tuple[Receipt, ...]:
    if raw is None:
        return ()
    return codec.decode_struct(ReceiptList, raw).receipts


class LocalEndpoint:
    """In process, over a ``LocalChain`` (each ``submit`` commits one block)."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    @property
    def chain_id(self) -> str:
        return self.chain.genesis.chain_id

    @property
    def suite(self) -> Suite:
        return self.chain.suite

    def head_height(self) -> int:
        return self.chain.height

    def block(self, height: int) -> CommittedBlock:
        store = self.chain.store
        raw_block, raw_cert = store.block(height), store.certificate(height)
        if raw_block is None or raw_cert is None:
            raise RelayError(f"{self.chain_id}: no committed block {height}")
        return CommittedBlock(
            decode_block(raw_block),
            decode_certificate(raw_cert),
            _decode_receipts(store.receipts(height)),
        )

    def state(self, key: bytes) -> StateReading:
        st = self.chain.state
        return StateReading(
            key, st.tree.get(key), st.tree.prove(key).to_bytes(), st.height, st.state_root
        )

    def nonce(self, address: bytes) -> int:
        raw = self.chain.state.tree.get(account_key(address))
        if raw is None:
            raise RelayError(f"{self.chain_id}: no account {address.hex()}")
        return codec.decode_struct(Account, raw).nonce

    def submit(self, txs: Sequence[Transaction]) -> list[TxOutcome]:
        committed = self.chain.commit(txs)
        height = committed.block.header.height
        by_hash = {r.tx_hash: r for r in committed.receipts}
        refused = {tx.hash(self.suite): reason for tx, reason in committed.rejected}
        out = []
        for tx in txs:
            h = tx.hash(self.suite)
            receipt = by_hash.get(h)
            if receipt is not None:
                ok = receipt.status == TxStatus.OK
                out.append(TxOutcome(ok, receipt.code, receipt.message, height))
            else:
                out.append(TxOutcome(False, "REFUSED", refused.get(h, "not included"), None))
        return out


class NodeEndpoint:
    """Over a node's loopback client port (``consortia.node.client``), with timeouts."""

    def __init__(
        self,
        host: str,
        port: int,
        chain_id: str,
        suite: Suite,
        *,
        timeout_s: float = 10.0,
        submit_timeout_s: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self._chain_id = chain_id
        self._suite = suite
        self.timeout_s = timeout_s
        self.submit_timeout_s = submit_timeout_s

    @classmethod
    def from_node_home(cls, node_home: Path) -> NodeEndpoint:
        """Chain id and suite from the node's genesis, host and client port from its config
        (``NodeError`` / ``GenesisError`` if the home is unusable)."""
        genesis = load_genesis(node_home)
        config = NodeConfig.load(node_home)
        return cls(config.host, config.client_port, genesis.chain_id, get_suite(genesis.suite))

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def suite(self) -> Suite:
        return self._suite

    def _call(self, kind: str, body: dict[str, Any], *, timeout_s: float | None = None) -> Any:
        where = f"{self._chain_id} node {self.host}:{self.port}"
        try:
            reply = client_call(
                self.host, self.port, kind, body, timeout_s=timeout_s or self.timeout_s
            )
        except NodeUnreachableError as exc:
            raise RelayError(f"{where}: {exc}") from exc
        except Exception as exc:  # a frame, codec or socket error: one clear line, no traceback
            raise RelayError(f"{where}: {kind} failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(reply, dict):
            raise RelayError(f"{where}: {kind}: malformed reply")
        if not reply.get("ok"):
            raise RelayError(f"{where}: {kind}: {reply.get('code')}: {reply.get('message')}")
        return reply

    def head_height(self) -> int:
        height = self._call("status", {}).get("height")
        if not isinstance(height, int):
            raise RelayError(f"{self._chain_id}: status without a height")
        return height

    def block(self, height: int) -> CommittedBlock:
        reply = self._call("block.get", {"height": height})
        raw_block, raw_cert, raw_receipts = (
            reply.get("block"),
            reply.get("certificate"),
            reply.get("receipts"),
        )
        if not isinstance(raw_block, bytes) or not isinstance(raw_cert, bytes):
            raise RelayError(f"{self._chain_id}: block {height} comes without its certificate")
        try:
            block = decode_block(raw_block)
            cert = decode_certificate(raw_cert)
            receipts = _decode_receipts(raw_receipts if isinstance(raw_receipts, bytes) else None)
        except (codec.CodecError, ValueError) as exc:
            raise RelayError(f"{self._chain_id}: block {height} does not decode: {exc}") from exc
        if block.header.height != height or cert.height != height:
            raise RelayError(f"{self._chain_id}: asked for block {height}, got another")
        return CommittedBlock(block, cert, receipts)

    def state(self, key: bytes) -> StateReading:
        reply = self._call("state.get", {"key": key})
        value, raw_proof = reply.get("value"), reply.get("proof")
        height, root = reply.get("height"), reply.get("state_root")
        if (
            not isinstance(raw_proof, bytes)
            or not isinstance(height, int)
            or not isinstance(root, bytes)
            or not (value is None or isinstance(value, bytes))
        ):
            raise RelayError(f"{self._chain_id}: state.get: malformed reply")
        try:
            proof = StateProof.from_bytes(raw_proof)
            if proof.key != key or proof.value != value:
                raise StateTreeError("the proof is for another key or value")
            verify_state_proof(self._suite.hash, root, proof)
        except StateTreeError as exc:
            raise RelayError(f"{self._chain_id}: state.get: bad proof: {exc}") from exc
        return StateReading(key, value, raw_proof, height, root)

    def nonce(self, address: bytes) -> int:
        nonce = self._call("account.get", {"address": address}).get("nonce")
        if not isinstance(nonce, int):
            raise RelayError(f"{self._chain_id}: account.get without a nonce")
        return nonce

    def submit(self, txs: Sequence[Transaction]) -> list[TxOutcome]:
        reply = self._call(
            "tx.submit_many",
            {"txs": [tx.encode() for tx in txs], "wait": True},
            timeout_s=self.submit_timeout_s,
        )
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(txs):
            raise RelayError(f"{self._chain_id}: tx.submit_many: malformed reply")
        out = []
        for item in results:
            r: dict[str, Any] = item if isinstance(item, dict) else {}
            height = r.get("height")
            out.append(
                TxOutcome(
                    bool(r.get("ok")),
                    str(r.get("code", "")),
                    str(r.get("message", "")),
                    height if isinstance(height, int) else None,
                )
            )
        return out


# ---------------------------------------------------------------------------------------------
# Reports: business events -> standardized reports


ECNY_CODE = "e-CNY"
# Codes by which ``submit_report`` refuses a report for its content: skipped, not retried.
_REPORT_CONTENT_CODES = (
    reports.ReportSchemaViolationError.code,
    "INVALID_ARGUMENT",
)  # the asset code of the cash leg of a DvP in a ``transfer`` report


@dataclass(frozen=True)
class ReportCandidate:
    """A report derived from a committed business event: ``submit_report``'s arguments."""

    report_id: str
    chain_id: str
    height: int
    category: str
    fields: dict[str, reports.FieldValue]


def report_id(chain_id: str, height: int, tx_index: int, event_index: int) -> str:
    """The deterministic id of the report about event ``event_index`` of transaction
    ``tx_index`` of block ``height``: ``<chain>-<height>-<tx>-<event>``; when that would exceed
    the id limit, ``<chain>`` is replaced by ``r`` + 24 hex digits of its SHA-256."""
    rid = f"{chain_id}-{height}-{tx_index}-{event_index}"
    if len(rid) <= reports.MAX_ID:
        return rid
    digest = hashlib.sha256(chain_id.encode()).hexdigest()[:24]
    return f"r{digest}-{height}-{tx_index}-{event_index}"


def _report_id_prefix(chain_id: str) -> tuple[str, str]:
    """The two prefixes ``report_id`` may give ``chain_id``'s reports."""
    return f"{chain_id}-", f"r{hashlib.sha256(chain_id.encode()).hexdigest()[:24]}-"


def _memo(value: Any) -> dict[str, reports.FieldValue]:
    """The optional ``memo`` field, when ``value`` is text the schema takes (else none)."""
    ok = isinstance(value, str) and bool(value.strip()) and len(value) <= reports.MAX_TEXT
    return {"memo": value} if ok and value.isprintable() else {}


def _map_event(
    module: str, kind: str, a: dict[str, Any], tx_hash: str
) -> tuple[str, dict[str, reports.FieldValue]] | None:
    """The report (category, fields) of one event, None for a kind that is not reported.
    Raises ``KeyError`` / ``TypeError`` when the event lacks what its kind should carry."""
    if module == "securities" and kind == "transferred":
        return "transfer", {
            "code": a["code"],
            "from_account": a["from_account"],
            "to_account": a["to_account"],
            "amount": a["amount"],
            "tx_hash": tx_hash,
            **_memo(a.get("memo")),
        }
    if module == "settlement" and kind == "dvp_settled":
        # The share leg is the ``securities/transferred`` event of the same transaction (memo
        # "DvP <trade>"); this is the cash leg, between the settlement wallets.
        return "transfer", {
            "code": ECNY_CODE,
            "from_account": a["payer_wallet"],
            "to_account": a["payee_wallet"],
            "amount": a["amount_fen"],
            "tx_hash": tx_hash,
            **_memo(f"DvP {a['trade_id']} cash leg"),
        }
    if module == "securities" and kind == "disclosure":
        return "disclosure", {
            "code": a["code"],
            "holder": a["investor_id"],
            "holding": a["holding"],
            "step_pct": a["threshold_pct"],
            "direction": a["direction"],
            "tx_hash": tx_hash,
        }
    if module == "securities" and kind == "issued":
        return "registration", {
            "code": a["code"],
            "account_id": a["account_id"],
            "action": "issue",
            "amount": a["amount"],
            "tx_hash": tx_hash,
        }
    if module == "investors" and kind in ("account_opened", "account_closed"):
        return "account", {
            "account_id": a["account_id"],
            "entity_id": a["investor_id"],
            "account_type": "securities",
            "status": "open" if kind == "account_opened" else "closed",
        }
    if module == "futures" and kind in ("daily_settlement", "large_position"):
        return _futures_report(kind, a, tx_hash)
    return None


def _futures_report(
    kind: str, a: dict[str, Any], tx_hash: str
) -> tuple[str, dict[str, reports.FieldValue]]:
    """``regulatory_object`` reports of the futures module (JR/T 0315 has no futures category):
    a contract's daily settlement summary and a client's large-position report."""
    if kind == "daily_settlement":
        variation = [int(vm) for _, vm in a["variation"]]
        detail = (
            f"{a['code']} settled {a['trading_day']} at {a['settlement_price']} (previous "
            f"{a['previous_price']}); open interest {a['open_interest']} lots; "
            f"variation margin {sum(v for v in variation if v > 0)} fen paid across "
            f"{len(variation)} account(s)"
        )
        return "regulatory_object", {
            "rule": "futures_daily_settlement",
            "subject": a["code"],
            "detail": detail,
            "severity": "low",
            "tx_hash": tx_hash,
        }
    held = "; ".join(
        f"{code} long {lo} short {sh} (threshold {t})" for code, lo, sh, t in a["positions"]
    )
    return "regulatory_object", {
        "rule": "futures_large_position",
        "subject": a["account_id"],
        "detail": f"investor {a['investor_id']} at {a['firm_org']} on {a['trading_day']}: {held}",
        "severity": "medium",
        "tx_hash": tx_hash,
    }


FUND_CONFIRMATIONS = ("subscription_confirmed", "redemption_confirmed")


def _fund_settlement(events: list[tuple[str, dict[str, Any]]]) -> dict[str, reports.FieldValue]:
    """One ``fund_settlement`` report of a ``funds.confirm`` transaction's confirmations (one
    fund, one trading day, one NAV)."""
    first = events[0][1]
    key = (first["code"], first["trading_day"], first["nav"])
    subscriptions = redemptions = 0
    for kind, a in events:
        if (a["code"], a["trading_day"], a["nav"]) != key:
            raise ValueError("confirmations of several funds, days or NAVs in one transaction")
        amount = a["amount_fen"] if kind == "subscription_confirmed" else a["gross_fen"]
        if not isinstance(amount, int):
            raise TypeError(f"{kind}: the amount is not an integer")
        if kind == "subscription_confirmed":
            subscriptions += amount
        else:
            redemptions += amount
    return {
        "fund_code": first["code"],
        "trading_day": first["trading_day"],
        "subscriptions_fen": subscriptions,
        "redemptions_fen": redemptions,
        "nav": first["nav"],
    }


def report_candidates(
    chain_id: str, height: int, receipts: Sequence[Receipt]
) -> tuple[list[ReportCandidate], int]:
    """The reports of business block ``height`` (from its receipts), and how many events of a
    reported kind made no valid report (skipped: never submitted).

    Mapping (event → category; every report checked with ``reports.check_report_fields``):

    - ``securities/transferred`` → ``transfer`` (code, from/to account, amount, tx_hash, memo
      when not empty); this includes the share leg of a DvP (memo ``DvP <trade>``);
    - ``settlement/dvp_settled`` → ``transfer`` of the cash leg: code ``e-CNY``, payer → payee
      settlement wallet, amount_fen, tx_hash, memo ``DvP <trade> cash leg``;
    - ``securities/disclosure`` → ``disclosure`` (code, holder = investor id, holding,
      step_pct = the threshold crossed, direction, tx_hash);
    - ``securities/issued`` → ``registration`` (action ``issue``: issuance and fund units created
      by a subscription);
    - ``investors/account_opened`` / ``account_closed`` → ``account`` (securities account of the
      investor id, status open / closed);
    - the ``funds/subscription_confirmed`` and ``redemption_confirmed`` events of one
      ``funds.confirm`` transaction → one ``fund_settlement`` (fund, trading day, NAV, sum of
      the confirmed subscriptions' amount_fen, sum of the redemptions' gross_fen): a trading day
      confirmed in several batches has a report per batch. Refunded / failed orders count in
      neither sum.
    - ``futures/daily_settlement`` → ``regulatory_object`` (rule ``futures_daily_settlement``,
      subject = the contract code, a detail line: day, settlement and previous price, open
      interest, variation margin paid; severity low) and ``futures/large_position`` →
      ``regulatory_object`` (rule ``futures_large_position``, subject = the futures account, the
      positions at or above the threshold in the detail; severity medium): the standard has no
      futures category, and regulatory objects are what the regulator supervises.

    Not mapped (no category fits without inventing fields): ``security_applied`` /
    ``security_approved`` (``product`` needs a name and a product type the events lack),
    ``holdings_mapped`` (no per-account amounts), ``cancelled`` (no registration action for it),
    ``investor_opened`` (``entity`` needs a name; identities are sealed).

    The report id is ``report_id(chain_id, height, tx index, event index)``; a fund settlement
    takes the index of the transaction's first confirmation event."""
    out: list[ReportCandidate] = []
    skipped = 0

    def add(tx_i: int, ev_i: int, category: str, fields: dict[str, reports.FieldValue]) -> None:
        nonlocal skipped
        try:
            reports.check_report_fields(category, fields)
        except reports.ReportSchemaViolationError as exc:
            skipped += 1
            log.warning(
                "%s block %d tx %d event %d: no report: %s", chain_id, height, tx_i, ev_i, exc
            )
            return
        out.append(
            ReportCandidate(
                report_id(chain_id, height, tx_i, ev_i), chain_id, height, category, fields
            )
        )

    for tx_i, receipt in enumerate(receipts):
        if receipt.status != TxStatus.OK:
            continue
        tx_hash = receipt.tx_hash.hex()
        confirmations: list[tuple[int, str, dict[str, Any]]] = []
        for ev_i, ev in enumerate(receipt.events):
            if ev.module == "funds" and ev.kind in FUND_CONFIRMATIONS:
                confirmations.append((ev_i, ev.kind, ev.attributes))
                continue
            try:
                mapped = _map_event(ev.module, ev.kind, ev.attributes, tx_hash)
            except (KeyError, TypeError, ValueError) as exc:
                skipped += 1
                log.warning(
                    "%s block %d tx %d event %d (%s/%s): no report: %r",
                    chain_id,
                    height,
                    tx_i,
                    ev_i,
                    ev.module,
                    ev.kind,
                    exc,
                )
                continue
            if mapped is not None:
                add(tx_i, ev_i, *mapped)
        if confirmations:
            try:
                fields = _fund_settlement([(k, a) for _, k, a in confirmations])
            except (KeyError, TypeError, ValueError) as exc:
                skipped += 1
                log.warning(
                    "%s block %d tx %d: no fund settlement report: %r", chain_id, height, tx_i, exc
                )
                continue
            add(tx_i, confirmations[0][0], "fund_settlement", fields)
    return out, skipped


# ---------------------------------------------------------------------------------------------
# The relayer


def certified_header(ep: Endpoint, height: int) -> CertifiedHeader:
    """Header ``height`` of ``ep``'s chain as a light client takes it: with its certificate and,
    when it announces a new validator set, that set (from the chain's validator-set history)."""
    data = ep.block(height)
    h = data.block.header
    announced: ValidatorSet | None = None
    if h.next_validator_set_hash != h.validator_set_hash:
        reading = ep.state(vset_history_key(height + 1))
        if reading.value is None:
            raise RelayError(
                f"{ep.chain_id}: header {height} announces a validator set the state lacks"
            )
        announced = codec.decode_struct(ValidatorSet, reading.value)
    return CertifiedHeader(h, data.certificate, announced)


@dataclass(frozen=True)
class RelayConfig:
    max_headers: int = 64  # per anchor / follow transaction (the modules' limit)
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_txs_per_round: int = 8  # header batches submitted per step and round
    max_scan_blocks: int = 1000  # supervision blocks scanned for orders per round
    retry_rounds: int = 5  # an order whose application failed is retried this many rounds later
    max_report_blocks: int = 256  # anchored business blocks turned into reports per round
    reports_per_submit: int = 32  # submit_report transactions per submission


@dataclass(frozen=True)
class RoundReport:
    """The metrics of one round (``to_json`` for logs and the CLI)."""

    round: int
    business_chain: str
    supervision_chain: str
    business_height: int
    anchored_height: int
    anchor_lag_blocks: int
    anchor_lag_ms: int
    supervision_height: int
    followed_height: int
    anchored: int  # business headers anchored this round
    followed: int  # supervision headers followed this round
    orders_applied: int  # this round
    orders_applied_total: int  # since this relayer started
    orders_pending: int
    reports_filed: int = 0  # reports filed this round
    reports_total: int = 0  # reports filed since this relayer started
    reports_skipped: int = 0  # this round: events of a mapped kind that made no valid report
    reported_height: int = -1  # business blocks 1..this have had their reports filed
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = list(self.errors)
        return out


@dataclass
class _Progress:
    anchored: int = 0
    followed: int = 0
    applied: int = 0
    filed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


class Relayer:
    """Relays between ``business`` and ``supervision``; ``run_round`` does one pass."""

    def __init__(
        self,
        business: Endpoint,
        supervision_ep: Endpoint,
        business_key: KeyPair,
        supervision_key: KeyPair,
        config: RelayConfig | None = None,
    ) -> None:
        self.business = business
        self.supervision = supervision_ep
        self.business_key = business_key
        self.supervision_key = supervision_key
        self.config = config or RelayConfig()
        self.business_address = business.suite.address(business_key.public_key)
        self.supervision_address = supervision_ep.suite.address(supervision_key.public_key)
        self.rounds = 0
        self.orders_applied_total = 0
        self._scan_next = 1  # the next supervision height to scan for orders
        self._pending: dict[str, int] = {}  # order id -> supervision height that issued it
        self._failed: dict[str, int] = {}  # order id -> round of its last failed application
        self.reports_total = 0
        # Reports resume point (see ``reports_step``): the next business height to report, set
        # once the supervision scan has caught up; the highest business height the scan saw a
        # report of ours (``report_id`` scheme) about.
        self._report_next: int | None = None
        self._reported_seen = 0
        self._scan_caught_up = False
        self._report_prefixes = _report_id_prefix(business.chain_id)
        # Catch-up progress, for a CLI bar: (what, done, target) as headers are anchored or
        # followed within a round ("anchoring" / "following"; heights).
        self.on_step: Callable[[str, int, int], None] | None = None

    # -- signing ---------------------------------------------------------------------------

    def _sign_all(
        self, ep: Endpoint, key: KeyPair, address: bytes, calls: list[tuple[str, str, Any]]
    ) -> list[Transaction]:
        nonce = ep.nonce(address)
        return [
            sign_transaction(
                ep.suite,
                key,
                chain_id=ep.chain_id,
                nonce=nonce + i,
                module=module,
                method=method,
                args=args,
                sender=address,
            )
            for i, (module, method, args) in enumerate(calls)
        ]

    # -- header batches (anchoring and following share the shape) --------------------------

    def _header_batches(self, source: Endpoint, start: int, head: int) -> list[list[Any]]:
        """Certified headers ``start..head`` of ``source`` as CBOR, in batches that fit a tx."""
        batches: list[list[Any]] = []
        height = start
        while height <= head and len(batches) < self.config.max_txs_per_round:
            batch: list[Any] = []
            size = 0
            while height <= head and len(batch) < self.config.max_headers:
                item = codec.to_cbor(certified_header(source, height))
                n = len(codec.encode(item))
                if batch and size + n > self.config.max_batch_bytes:
                    break
                batch.append(item)
                size += n
                height += 1
            batches.append(batch)
        return batches

    def _submit_batches(
        self, ep: Endpoint, key: KeyPair, address: bytes, calls: list[tuple[str, str, Any]]
    ) -> tuple[int, list[str]]:
        """Submit the calls in order; how many succeeded before the first failure, and errors."""
        if not calls:
            return 0, []
        txs = self._sign_all(ep, key, address, calls)
        done, errors = 0, []
        for (module, method, _), outcome in zip(calls, ep.submit(txs), strict=True):
            if outcome.ok:
                done += 1
            else:
                errors.append(f"{ep.chain_id} {module}.{method}: {outcome.code}: {outcome.message}")
                break  # later batches depend on this one
        return done, errors

    # -- steps -----------------------------------------------------------------------------

    def anchored_chain(self) -> anchoring.AnchoredChain | None:
        raw = self.supervision.state(anchoring.chain_key(self.business.chain_id)).value
        return None if raw is None else codec.decode_struct(anchoring.AnchoredChain, raw)

    def supervision_client(self) -> supervision.SupervisionClient | None:
        raw = self.business.state(supervision.CLIENT_KEY).value
        return None if raw is None else codec.decode_struct(supervision.SupervisionClient, raw)

    def anchor_step(self, progress: _Progress) -> None:
        chain = self.anchored_chain()
        if chain is None:
            progress.errors.append(
                f"{self.business.chain_id} is not registered on {self.supervision.chain_id}"
            )
            return
        anchored = chain.height
        head = self.business.head_height()
        while anchored < head:
            if self.on_step is not None:
                self.on_step("anchoring", anchored, head)
            batches = self._header_batches(self.business, anchored + 1, head)
            calls = [
                ("anchoring", "anchor", {"chain_id": self.business.chain_id, "headers": b})
                for b in batches
            ]
            done, errors = self._submit_batches(
                self.supervision, self.supervision_key, self.supervision_address, calls
            )
            n = sum(len(b) for b in batches[:done])
            progress.anchored += n
            anchored += n
            if errors:
                progress.errors += errors
                break

    def follow_step(self, progress: _Progress, *, until: int | None = None) -> int:
        """Follow the supervision chain up to its head (or until ``until``); the followed
        height after it (-1 when the business chain trusts no supervision chain)."""
        client = self.supervision_client()
        if client is None:
            progress.errors.append(
                f"{self.business.chain_id} trusts no supervision chain (trust_supervision)"
            )
            return -1
        followed = client.height
        head = self.supervision.head_height()
        target = head if until is None else min(until, head)
        while followed < target:
            if self.on_step is not None:
                self.on_step("following", followed, target)
            batches = self._header_batches(self.supervision, followed + 1, target)
            calls = [("supervision", "follow", {"headers": b}) for b in batches]
            done, errors = self._submit_batches(
                self.business, self.business_key, self.business_address, calls
            )
            n = sum(len(b) for b in batches[:done])
            progress.followed += n
            followed += n
            if errors:
                progress.errors += errors
                break
        return followed

    def _scan_orders(self) -> None:
        head = self.supervision.head_height()
        end = min(head, self._scan_next + self.config.max_scan_blocks - 1)
        for height in range(self._scan_next, end + 1):
            for receipt in self.supervision.block(height).receipts:
                if receipt.status != TxStatus.OK:
                    continue
                for ev in receipt.events:
                    attrs = ev.attributes
                    if attrs.get("chain_id") != self.business.chain_id:
                        continue
                    if (
                        ev.module == orders.NAME
                        and ev.kind == "order_issued"
                        and isinstance(attrs.get("order_id"), str)
                    ):
                        self._pending.setdefault(attrs["order_id"], height)
                    elif (
                        ev.module == reports.NAME
                        and ev.kind == "report_submitted"
                        and isinstance(attrs.get("report_id"), str)
                        and attrs["report_id"].startswith(self._report_prefixes)
                        and isinstance(attrs.get("height"), int)
                    ):
                        self._reported_seen = max(self._reported_seen, attrs["height"])
        self._scan_next = max(self._scan_next, end + 1)
        if end >= head:
            self._scan_caught_up = True

    def orders_step(self, progress: _Progress) -> None:
        self._scan_orders()
        readings: list[tuple[str, orders.Order, StateReading]] = []
        for order_id in sorted(self._pending, key=lambda o: (self._pending[o], o)):
            failed_round = self._failed.get(order_id)
            if failed_round is not None and self.rounds - failed_round < self.config.retry_rounds:
                continue
            if self.business.state(supervision.applied_key(order_id)).value is not None:
                del self._pending[order_id]
                continue
            reading = self.supervision.state(orders.order_key(order_id))
            if reading.value is None:
                progress.errors.append(f"order {order_id!r} is not in the supervision state")
                continue
            readings.append((order_id, codec.decode_struct(orders.Order, reading.value), reading))
        if not readings:
            return
        need = max(r.height for _, _, r in readings)
        if self.follow_step(progress, until=need) < need:
            progress.errors.append(f"cannot follow the supervision chain up to {need}")
            return
        calls = [
            (
                "supervision",
                "apply_order",
                {"order": codec.to_cbor(order), "height": r.height, "proof": r.proof},
            )
            for _, order, r in readings
        ]
        txs = self._sign_all(self.business, self.business_key, self.business_address, calls)
        for (order_id, _, _), outcome in zip(readings, self.business.submit(txs), strict=True):
            if outcome.ok:
                progress.applied += 1
                self._pending.pop(order_id, None)
                self._failed.pop(order_id, None)
            elif outcome.code == supervision.OrderAlreadyAppliedError.code:
                self._pending.pop(order_id, None)
            else:
                self._failed[order_id] = self.rounds
                progress.errors.append(
                    f"order {order_id!r} not applied: {outcome.code}: {outcome.message}"
                )

    def reports_step(self, progress: _Progress) -> None:
        """File the reports of the anchored business blocks from the resume point on.

        Resume point, without state of the relayer's own: the relayer's supervision scan (which
        it does anyway for orders, from block 1 after a start) notes the highest business height
        any report with an id of ours (``report_id``) is about. Reports are filed in (height,
        transaction, event) order, a failure stopping the round, so every report below that
        height is filed or was skipped. Once the scan has reached the supervision head, reporting
        resumes at that height (1 when there is none: a first start backfills history) and then
        follows an in-memory cursor. The first block of each round's range may be partly filed
        (a stop or a crash in the middle of it): its candidates are checked with ``state.get``
        of ``reports.report_key`` and only the missing ones submitted; a candidate filed anyway
        (another relayer, a lost reply) comes back REPORT_EXISTS, which counts as done. A
        report the module refuses for its content (schema, id) is skipped and counted; any other
        failure (a node unreachable, NOT_ANCHORED, a refused transaction) stops reporting for the
        round, at that candidate's height, without touching anchoring or orders."""
        if self._report_next is None:
            if not self._scan_caught_up:
                return  # the scan has not found where reporting got to yet
            self._report_next = max(1, self._reported_seen)
        chain = self.anchored_chain()
        if chain is None:
            return  # anchor_step says why
        start = self._report_next
        end = min(chain.height, start + self.config.max_report_blocks - 1)
        candidates: list[ReportCandidate] = []
        for height in range(start, end + 1):
            found, skipped = report_candidates(
                self.business.chain_id, height, self.business.block(height).receipts
            )
            progress.skipped += skipped
            if height == start:
                found = [
                    c
                    for c in found
                    if self.supervision.state(reports.report_key(c.report_id)).value is None
                ]
            candidates += found
        next_height = end + 1
        per = max(1, self.config.reports_per_submit)
        for i in range(0, len(candidates), per):
            chunk = candidates[i : i + per]
            stop = self._submit_reports(chunk, progress)
            if stop is not None:
                next_height = stop
                break
        self._report_next = max(start, next_height)

    def _submit_reports(self, chunk: list[ReportCandidate], progress: _Progress) -> int | None:
        """Submit one batch of reports; the height to resume at if reporting must stop."""
        calls = [
            (
                reports.NAME,
                "submit_report",
                {
                    "report_id": c.report_id,
                    "chain_id": c.chain_id,
                    "height": c.height,
                    "category": c.category,
                    "fields": c.fields,
                },
            )
            for c in chunk
        ]
        try:
            txs = self._sign_all(
                self.supervision, self.supervision_key, self.supervision_address, calls
            )
            outcomes = self.supervision.submit(txs)
        except RelayError as exc:
            progress.errors.append(f"reports: {exc}")
            return chunk[0].height
        stop: int | None = None
        for c, outcome in zip(chunk, outcomes, strict=True):
            if outcome.ok:
                progress.filed += 1
            elif outcome.code == reports.ReportExistsError.code:
                pass  # filed before: done
            elif outcome.code in _REPORT_CONTENT_CODES:
                progress.skipped += 1
                log.warning("report %s refused: %s: %s", c.report_id, outcome.code, outcome.message)
            elif stop is None:
                stop = c.height
                progress.errors.append(
                    f"report {c.report_id!r} not filed: {outcome.code}: {outcome.message}"
                )
        return stop

    # -- a round ---------------------------------------------------------------------------

    def _guard(self, progress: _Progress, step: Callable[[_Progress], Any]) -> None:
        try:
            step(progress)
        except RelayError as exc:
            progress.errors.append(str(exc))
        except (codec.CodecError, ValueError, CryptoError) as exc:
            progress.errors.append(f"{step.__name__}: {type(exc).__name__}: {exc}")

    def run_round(self) -> RoundReport:
        """Follow, carry orders down, anchor, file reports; then measure. Never raises for a
        node's failure: errors are listed in the report and the next round starts over from the
        chains."""
        self.rounds += 1
        progress = _Progress()
        self._guard(progress, self.follow_step)
        self._guard(progress, self.orders_step)
        self._guard(progress, self.anchor_step)
        self._guard(progress, self.reports_step)
        self.orders_applied_total += progress.applied
        self.reports_total += progress.filed
        report = self._measure(progress)
        log.info(
            "relay round %d: %s",
            self.rounds,
            report.to_json(),
            extra={"chain": report.business_chain, "height": report.business_height},
        )
        return report

    def _measure(self, progress: _Progress) -> RoundReport:
        business_height = anchored_height = lag_ms = sup_height = followed = -1
        try:
            business_height = self.business.head_height()
            chain = self.anchored_chain()
            if chain is not None:
                anchored_height = chain.height
                head_time = (
                    self.business.block(business_height).block.header.time_ms
                    if business_height > 0
                    else chain.genesis_time_ms
                )
                # Until a block is anchored there is no anchored time to compare with (block 1
                # carries the genesis time, which may be long past): report -1, "not yet".
                lag_ms = max(0, head_time - chain.time_ms) if chain.height > 0 else -1
            sup_height = self.supervision.head_height()
            client = self.supervision_client()
            followed = -1 if client is None else client.height
        except (RelayError, codec.CodecError, ValueError) as exc:
            progress.errors.append(f"metrics: {exc}")
        lag_blocks = (
            business_height - anchored_height if min(business_height, anchored_height) >= 0 else -1
        )
        return RoundReport(
            round=self.rounds,
            business_chain=self.business.chain_id,
            supervision_chain=self.supervision.chain_id,
            business_height=business_height,
            anchored_height=anchored_height,
            anchor_lag_blocks=lag_blocks,
            anchor_lag_ms=lag_ms,
            supervision_height=sup_height,
            followed_height=followed,
            anchored=progress.anchored,
            followed=progress.followed,
            orders_applied=progress.applied,
            orders_applied_total=self.orders_applied_total,
            orders_pending=len(self._pending),
            reports_filed=progress.filed,
            reports_total=self.reports_total,
            reports_skipped=progress.skipped,
            reported_height=-1 if self._report_next is None else self._report_next - 1,
            errors=tuple(progress.errors),
        )

    def run(
        self,
        *,
        interval_ms: int = 1000,
        rounds: int | None = None,
        on_report: Callable[[RoundReport], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Run rounds every ``interval_ms`` until ``rounds`` are done or ``stop`` is set."""
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set() and (rounds is None or done < rounds):
            report = self.run_round()
            done += 1
            if on_report is not None:
                on_report(report)
            if rounds is not None and done >= rounds:
                break
            stop.wait(interval_ms / 1000)


__all__ = [
    "CommittedBlock",
    "Endpoint",
    "LocalEndpoint",
    "NodeEndpoint",
    "RelayConfig",
    "RelayError",
    "Relayer",
    "ReportCandidate",
    "RoundReport",
    "StateReading",
    "TxOutcome",
    "certified_header",
    "report_candidates",
    "report_id",
]
