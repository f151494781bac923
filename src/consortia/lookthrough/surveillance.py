"""Surveillance: deterministic rules over the indexed stream of committed transactions.

Every rule is a pure function of one indexed transaction (``TxFacts``: what the block says) and
of what the index already holds (``IndexView``: earlier transfers, open freezes, daily volumes);
none reads a clock, so indexing the same blocks always raises the same alerts. The index
(``consortia.lookthrough.index``) evaluates the rules inside the transaction that indexes the
block, so an alert is stored exactly once, together with the block it comes from.

Rules (``RULES``):

- ``LARGE_VALUE_PAYMENT`` — an e-CNY ``payment`` flagged ``traceable`` by the chain (amount ≥ the
  chain's ``ecny.large_value_fen``; the chain applied its own threshold, the rule trusts the flag).
- ``HOLDING_STEP`` — a securities ``disclosure`` event: an investor's holding crossed a 5% step.
- ``WASH_TRADE`` — a transfer B→A of a security that A transferred to B no more than
  ``wash_window_blocks`` blocks or ``wash_window_ms`` ms before (either window; 0 turns one off).
- ``FROZEN_ACTIVITY`` — a failed transaction with code ``ACCOUNT_FROZEN`` / ``WALLET_FROZEN``, or
  a failed transaction naming a securities account or holding under an open judicial freeze.
- ``ABNORMAL_VOLUME`` — an account's (or wallet's) transfer volume of one asset in one CST day
  exceeds ``volume_k`` × its average over the ``volume_days`` previous days and is at least
  ``volume_floor``; or reaches ``volume_absolute`` (0: off). Raised once per account, asset, day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

LARGE_VALUE_PAYMENT = "LARGE_VALUE_PAYMENT"
HOLDING_STEP = "HOLDING_STEP"
WASH_TRADE = "WASH_TRADE"
FROZEN_ACTIVITY = "FROZEN_ACTIVITY"
ABNORMAL_VOLUME = "ABNORMAL_VOLUME"
RULES = (LARGE_VALUE_PAYMENT, HOLDING_STEP, WASH_TRADE, FROZEN_ACTIVITY, ABNORMAL_VOLUME)

FROZEN_CODES = frozenset({"ACCOUNT_FROZEN", "WALLET_FROZEN"})
ECNY_ASSET = "e-CNY"


@dataclass(frozen=True)
class SurveillanceConfig:
    """The rules' parameters (all integers: the rules never use floating point)."""

    wash_window_blocks: int = 50
    wash_window_ms: int = 10 * 60 * 1000
    volume_k: int = 5
    volume_days: int = 5
    volume_floor: int = 100_000
    volume_absolute: int = 0

    def __post_init__(self) -> None:
        for name in (
            "wash_window_blocks",
            "wash_window_ms",
            "volume_k",
            "volume_floor",
            "volume_absolute",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if type(self.volume_days) is not int or self.volume_days < 1:
            raise ValueError("volume_days must be a positive integer")


@dataclass(frozen=True)
class Alert:
    rule: str
    chain_id: str
    height: int
    tx_hash: str  # hex
    subject: str
    detail: str
    severity: str  # "info" | "medium" | "high"


@dataclass(frozen=True)
class EventFacts:
    module: str
    kind: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class TxFacts:
    """One committed transaction as the rules see it (from the block and its receipt)."""

    chain_id: str
    height: int
    time_ms: int
    index: int
    tx_hash: str
    sender: str  # hex address
    module: str
    method: str
    args: dict[str, Any]
    ok: bool
    code: str
    events: tuple[EventFacts, ...] = ()
    accounts: frozenset[str] = field(default_factory=frozenset)  # securities accounts named
    codes: frozenset[str] = field(default_factory=frozenset)  # security codes named


@dataclass(frozen=True)
class Transfer:
    """A securities transfer already in the index."""

    height: int
    index: int
    time_ms: int
    code: str
    from_account: str
    to_account: str
    amount: int


class IndexView(Protocol):
    """What the rules may ask the index (all reads, as of the transaction being evaluated)."""

    def earlier_transfer(
        self, chain_id: str, code: str, from_account: str, to_account: str, tx: TxFacts
    ) -> Transfer | None:
        """The latest transfer ``from_account``→``to_account`` of ``code`` before ``tx``."""
        ...

    def frozen(self, chain_id: str, account_id: str, codes: frozenset[str]) -> str | None:
        """The id of an open freeze on the account (or on one of its holdings in ``codes``)."""
        ...

    def day_volume(self, chain_id: str, subject: str, asset: str, day: int) -> int: ...

    def trailing_volume(self, chain_id: str, subject: str, asset: str, day: int, days: int) -> int:
        """Total volume over the ``days`` CST days before ``day``."""
        ...

    def volume_alerted(self, chain_id: str, subject: str, asset: str, day: int) -> bool: ...


def _alert(tx: TxFacts, rule: str, subject: str, detail: str, severity: str) -> Alert:
    return Alert(rule, tx.chain_id, tx.height, tx.tx_hash, subject, detail, severity)


def large_value_payments(tx: TxFacts) -> list[Alert]:
    out = []
    for ev in tx.events:
        if ev.module == "ecny" and ev.kind == "payment" and ev.attributes.get("traceable") is True:
            a = ev.attributes
            out.append(
                _alert(
                    tx,
                    LARGE_VALUE_PAYMENT,
                    str(a.get("payer", "")),
                    f"{a.get('payer')} -> {a.get('payee')} {a.get('amount_fen')} fen "
                    f"({a.get('purpose')})",
                    "medium",
                )
            )
    return out


def holding_steps(tx: TxFacts) -> list[Alert]:
    out = []
    for ev in tx.events:
        if ev.module == "securities" and ev.kind == "disclosure":
            a = ev.attributes
            out.append(
                _alert(
                    tx,
                    HOLDING_STEP,
                    str(a.get("investor_id", "")),
                    f"{a.get('code')} {a.get('direction')} through {a.get('threshold_pct')}%: "
                    f"holds {a.get('holding')} of {a.get('issued')} ({a.get('holding_bp')} bp)",
                    "info",
                )
            )
    return out


def frozen_activity(tx: TxFacts, view: IndexView) -> list[Alert]:
    """Evaluated against the freezes open *before* ``tx``."""
    if tx.ok:
        return []
    if tx.code in FROZEN_CODES:
        subject = sorted(tx.accounts)[0] if tx.accounts else tx.sender
        return [
            _alert(
                tx,
                FROZEN_ACTIVITY,
                subject,
                f"{tx.module}.{tx.method} by {tx.sender} failed with {tx.code}",
                "high",
            )
        ]
    for account in sorted(tx.accounts):
        freeze = view.frozen(tx.chain_id, account, tx.codes)
        if freeze is not None:
            return [
                _alert(
                    tx,
                    FROZEN_ACTIVITY,
                    account,
                    f"{tx.module}.{tx.method} on {account} under freeze {freeze} "
                    f"failed with {tx.code}",
                    "high",
                )
            ]
    return []


def wash_trades(tx: TxFacts, view: IndexView, cfg: SurveillanceConfig) -> list[Alert]:
    out = []
    for ev in tx.events:
        if ev.module != "securities" or ev.kind != "transferred":
            continue
        code = str(ev.attributes["code"])
        b, a = str(ev.attributes["from_account"]), str(ev.attributes["to_account"])
        first = view.earlier_transfer(tx.chain_id, code, a, b, tx)
        if first is None:
            continue
        blocks, ms = tx.height - first.height, tx.time_ms - first.time_ms
        within = (cfg.wash_window_blocks > 0 and blocks <= cfg.wash_window_blocks) or (
            cfg.wash_window_ms > 0 and ms <= cfg.wash_window_ms
        )
        if within:
            out.append(
                _alert(
                    tx,
                    WASH_TRADE,
                    a,
                    f"{code}: {a} -> {b} ({first.amount}) at height {first.height}, "
                    f"{b} -> {a} ({ev.attributes['amount']}) {blocks} blocks / {ms} ms later",
                    "high",
                )
            )
    return out


def volume_legs(tx: TxFacts) -> list[tuple[str, str, int]]:
    """(subject, asset, amount) for every side of every transfer in ``tx``."""
    legs: list[tuple[str, str, int]] = []
    for ev in tx.events:
        a = ev.attributes
        if ev.module == "securities" and ev.kind == "transferred":
            for side in ("from_account", "to_account"):
                legs.append((str(a[side]), str(a["code"]), int(a["amount"])))
        elif ev.module == "ecny" and ev.kind == "payment":
            for side in ("payer", "payee"):
                legs.append((str(a[side]), ECNY_ASSET, int(a["amount_fen"])))
    return legs


def abnormal_volume(tx: TxFacts, view: IndexView, cfg: SurveillanceConfig, day: int) -> list[Alert]:
    """Evaluated after ``tx``'s volume is in the index (``day``: its CST date)."""
    out = []
    seen: set[tuple[str, str]] = set()
    for subject, asset, _ in volume_legs(tx):
        if (subject, asset) in seen or view.volume_alerted(tx.chain_id, subject, asset, day):
            continue
        seen.add((subject, asset))
        volume = view.day_volume(tx.chain_id, subject, asset, day)
        trailing = view.trailing_volume(tx.chain_id, subject, asset, day, cfg.volume_days)
        # volume > k × (trailing / days), in integers
        relative = volume * cfg.volume_days > cfg.volume_k * trailing and volume >= cfg.volume_floor
        absolute = cfg.volume_absolute > 0 and volume >= cfg.volume_absolute
        if relative or absolute:
            out.append(
                _alert(
                    tx,
                    ABNORMAL_VOLUME,
                    subject,
                    f"{asset} volume {volume} on {day} vs {trailing} over the previous "
                    f"{cfg.volume_days} days (k={cfg.volume_k}, floor={cfg.volume_floor}, "
                    f"absolute={cfg.volume_absolute})",
                    "medium",
                )
            )
    return out


def alert_as_report_fields(alert: Alert) -> dict[str, str | int]:
    """The alert as the fields of a ``regulatory_object`` report for the supervision chain
    (``reports.CATEGORIES``); the report itself names the chain and the anchored height."""
    subject = "".join(
        c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in alert.subject
    )
    fields: dict[str, str | int] = {
        "rule": alert.rule,
        "subject": subject[:64] or "_",
        "detail": alert.detail,
        "severity": _REPORT_SEVERITY[alert.severity],
        "alert_id": f"{alert.rule}-{alert.height}-{alert.tx_hash[:16]}"[:64],
    }
    if alert.tx_hash:
        fields["tx_hash"] = alert.tx_hash
    return fields


# Alert severities as the report schema spells them.
_REPORT_SEVERITY = {"info": "low", "medium": "medium", "high": "high"}
