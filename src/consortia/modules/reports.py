"""The reports module of the supervision chain: standardized regulatory reports, each bound to the
anchored business block it summarizes.

The categories are the cross-chain data categories of JR/T 0315-2024: ``entity``, ``account``,
``product``, ``transfer``, ``registration``, ``fund_settlement``, ``disclosure``,
``financial_statement`` and ``regulatory_object``. ``CATEGORIES`` lists each category's fields: a
name, a type (text, identifier, hex digest, non-negative or signed integer, or one of fixed
choices) and whether it is required. A report's ``fields`` must hold every required field, no
field the category does not list, and each with its type, else REPORT_SCHEMA_VIOLATION names the
field.

``submit_report(report_id, chain_id, height, category, fields)`` is sent by an account with role
``relayer`` or ``regulator``. The business chain must be registered with ``anchoring``
(UNKNOWN_CHAIN) and its block ``height`` anchored there (NOT_ANCHORED); the report stores that
block's hash, so it is tied to exactly one certified business block. A report id is used once
(REPORT_EXISTS); a report is never changed (a correction is a new report). Emits
``report_submitted`` (report_id, chain_id, height, category, block_hash).

Amounts are integers in fen (1/100 yuan) or the asset's smallest unit; NAVs are integers scaled as
the funds module scales them; dates are ``YYYYMMDD`` integers; hashes are lower-case hex text.

State key: ``reports/report/<report id>`` → ``Report``.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.anchoring import load_anchor, require_chain
from consortia.modules.registry import InvalidFieldError as InvalidArgumentError
from consortia.modules.registry import is_id, require_account, require_role

NAME = "reports"

MAX_ID = 64
MAX_TEXT = 200
MAX_DETAIL = 2000  # the free-text fields marked ``long``
MAX_HEX = 128
MAX_INT = (1 << 63) - 1
SUBMITTER_ROLES = ("regulator", "relayer")

FieldValue = str | int


@dataclass(frozen=True)
class FieldSpec:
    """One field of a category: ``kind`` is text | long | id | hex | count | signed | date |
    choice (count: 0..2**63-1; signed: -(2**63-1)..2**63-1; date: a YYYYMMDD integer; choice:
    one of ``choices``)."""

    kind: str
    required: bool = True
    choices: tuple[str, ...] = ()


TEXT = FieldSpec("text")
LONG = FieldSpec("long")
ID = FieldSpec("id")
HEX = FieldSpec("hex")
COUNT = FieldSpec("count")
SIGNED = FieldSpec("signed")
DATE = FieldSpec("date")


def _opt(spec: FieldSpec) -> FieldSpec:
    return FieldSpec(spec.kind, False, spec.choices)


def _choice(*choices: str, required: bool = True) -> FieldSpec:
    return FieldSpec("choice", required, choices)


# JR/T 0315-2024 data categories and their fields.
CATEGORIES: dict[str, dict[str, FieldSpec]] = {
    "entity": {  # a market participant (an institution or an investor's pseudonymous id)
        "entity_id": ID,
        "name": TEXT,
        "entity_type": _choice("institution", "individual", "product"),
        "credit_code": _opt(TEXT),  # unified social credit code of an institution
        "org_id": _opt(ID),
    },
    "account": {  # a securities account, wallet or fund account
        "account_id": ID,
        "entity_id": ID,
        "account_type": _choice("securities", "ecny_wallet", "fund", "insurance"),
        "status": _choice("open", "frozen", "closed"),
        "broker": _opt(ID),
    },
    "product": {  # a security, fund or insurance product
        "code": ID,
        "name": TEXT,
        "product_type": _choice("equity", "bond", "fund_share", "fund", "insurance"),
        "issuer": ID,
        "risk_level": _opt(COUNT),
        "authorized": _opt(COUNT),
    },
    "transfer": {  # a transfer of an asset between accounts
        "code": ID,
        "from_account": ID,
        "to_account": ID,
        "amount": COUNT,
        "tx_hash": HEX,
        "memo": _opt(TEXT),
    },
    "registration": {  # asset registration: issuance, mapping, pledge, freeze, ...
        "code": ID,
        "account_id": ID,
        "action": _choice("issue", "map", "pledge", "release", "freeze", "unfreeze"),
        "amount": COUNT,
        "tx_hash": _opt(HEX),
    },
    "fund_settlement": {  # one fund's settlement of one trading day
        "fund_code": ID,
        "trading_day": DATE,
        "subscriptions_fen": COUNT,
        "redemptions_fen": COUNT,
        "nav": COUNT,
        "units_outstanding": _opt(COUNT),
    },
    "disclosure": {  # a holding crossing a disclosure step, an announcement
        "code": ID,
        "holder": ID,
        "holding": COUNT,
        "step_pct": COUNT,
        "direction": _choice("up", "down"),
        "tx_hash": _opt(HEX),
    },
    "financial_statement": {
        "entity_id": ID,
        "period": ID,  # e.g. 2025Q4, 2025H1, 2025
        "total_assets_fen": COUNT,
        "total_liabilities_fen": COUNT,
        "net_profit_fen": SIGNED,
        "revenue_fen": _opt(COUNT),
    },
    "regulatory_object": {  # a surveillance alert or another object of supervision
        "rule": ID,
        "subject": ID,
        "detail": LONG,
        "severity": _choice("low", "medium", "high", "critical"),
        "alert_id": _opt(ID),
        "tx_hash": _opt(HEX),
    },
}


@dataclass(frozen=True)
class Report:
    report_id: str
    chain_id: str
    height: int  # the business block the report summarizes
    block_hash: bytes  # that block's hash, from its anchor
    category: str
    fields: dict[str, FieldValue]
    submitted_by: bytes
    submitted_height: int


def report_key(report_id: str) -> bytes:
    return b"reports/report/" + report_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class ReportSchemaViolationError(TxFailure):
    code = "REPORT_SCHEMA_VIOLATION"


class NotAnchoredError(TxFailure):
    code = "NOT_ANCHORED"


class ReportExistsError(TxFailure):
    code = "REPORT_EXISTS"


# ---------------------------------------------------------------------------------------------
# Schema checks



def _field_problem(spec: FieldSpec, value: FieldValue) -> str | None:
    """Why ``value`` does not fit ``spec`` (None if it does)."""
    if spec.kind in ("count", "signed", "date"):
        if not isinstance(value, int):
            return "must be an integer"
        if spec.kind == "date":
            month, day = value // 100 % 100, value % 100
            ok = 19000101 <= value <= 99991231 and 1 <= month <= 12 and 1 <= day <= 31
            return None if ok else "must be a YYYYMMDD date"
        low = 0 if spec.kind == "count" else -MAX_INT
        return None if low <= value <= MAX_INT else f"must be in {low}..{MAX_INT}"
    if not isinstance(value, str):
        return "must be text"
    if spec.kind == "id":
        return None if is_id(value) else f"must be 1..{MAX_ID} ASCII letters, digits, '-_.'"
    if spec.kind == "hex":
        ok = 0 < len(value) <= MAX_HEX and len(value) % 2 == 0
        ok = ok and all(c in "0123456789abcdef" for c in value)
        return None if ok else f"must be lower-case hex of even length up to {MAX_HEX}"
    if spec.kind == "choice":
        return None if value in spec.choices else f"must be one of {list(spec.choices)}"
    limit = MAX_DETAIL if spec.kind == "long" else MAX_TEXT
    ok = bool(value.strip()) and len(value) <= limit and value.isprintable()
    return None if ok else f"must be 1..{limit} printable characters"


def check_report_fields(category: str, fields: dict[str, FieldValue]) -> None:
    """Raise ``ReportSchemaViolationError`` naming the first field that breaks the schema."""
    schema = CATEGORIES.get(category)
    if schema is None:
        raise ReportSchemaViolationError(
            f"category {category!r} is not one of {sorted(CATEGORIES)}"
        )
    for name in sorted(fields):
        if name not in schema:
            raise ReportSchemaViolationError(f"{category}: unknown field {name!r}")
    for name, spec in schema.items():
        if name not in fields:
            if spec.required:
                raise ReportSchemaViolationError(f"{category}: missing field {name!r}")
            continue
        problem = _field_problem(spec, fields[name])
        if problem is not None:
            raise ReportSchemaViolationError(f"{category}: field {name!r} {problem}")


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class SubmitReportArgs:
    report_id: str
    chain_id: str
    height: int
    category: str
    fields: dict[str, FieldValue]


def submit_report(ctx: TxContext, args: SubmitReportArgs) -> None:
    """A relayer or the regulator files a report about an anchored business block."""
    require_role(require_account(ctx, ctx.sender), *SUBMITTER_ROLES)
    if not is_id(args.report_id):
        raise InvalidArgumentError(f"report_id must be 1..{MAX_ID} ASCII letters, digits, '-_.'")
    check_report_fields(args.category, args.fields)
    require_chain(ctx, args.chain_id)
    anchored = load_anchor(ctx, args.chain_id, args.height)
    if anchored is None:
        raise NotAnchoredError(f"block {args.height} of {args.chain_id!r} is not anchored")
    if ctx.get(report_key(args.report_id)) is not None:
        raise ReportExistsError(f"report {args.report_id!r} already exists")
    ctx.put_record(
        report_key(args.report_id),
        Report(
            report_id=args.report_id,
            chain_id=args.chain_id,
            height=args.height,
            block_hash=anchored.block_hash,
            category=args.category,
            fields=dict(args.fields),
            submitted_by=ctx.sender,
            submitted_height=ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "report_submitted",
        report_id=args.report_id,
        chain_id=args.chain_id,
        height=args.height,
        category=args.category,
        block_hash=anchored.block_hash,
    )


MODULE = Module(name=NAME, methods={"submit_report": Method(SubmitReportArgs, submit_report)})
