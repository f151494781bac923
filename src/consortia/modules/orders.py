"""The orders module of the supervision chain: regulatory orders addressed to business chains.

(The record and key below are the contract the business chain's ``supervision`` module relies on
when it applies an order proven against a supervision header; the methods are being written.)

State key: ``orders/order/<order id>`` → ``Order``.

Kinds and the fields each uses (others stay empty / zero):

- ``freeze``: freeze_id, code ("" = the whole securities account), account_id, amount (0 for a
  whole account), expires_at_ms
- ``unfreeze``: freeze_id
- ``forced_transfer``: freeze_id, to_account
- ``trading_halt`` / ``trading_resume``: code
- ``param_change``: param_name, param_value
"""

from __future__ import annotations

from dataclasses import dataclass

NAME = "orders"

ORDER_KINDS: frozenset[str] = frozenset(
    {"freeze", "unfreeze", "forced_transfer", "trading_halt", "trading_resume", "param_change"}
)


@dataclass(frozen=True)
class Order:
    order_id: str
    chain_id: str  # the business chain it is addressed to
    kind: str
    freeze_id: str
    code: str
    account_id: str
    amount: int
    expires_at_ms: int
    to_account: str
    param_name: str
    param_value: int
    reference: str  # the legal / regulatory reference
    issued_by: bytes
    issued_height: int


def order_key(order_id: str) -> bytes:
    return b"orders/order/" + order_id.encode()
