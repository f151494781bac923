"""Failures of execution, in two families with different consequences.

- ``TxFailure``: a valid transaction whose business rules fail. The block stays valid; the
  transaction gets a FAILED receipt with the failure's stable ``code``, its writes are discarded,
  and only the sender's nonce advances (so it cannot be replayed).
- ``InvalidBlock``: the block itself is wrong (bad header, roots, certificate, or a transaction no
  honest proposer could include: bad signature, unknown sender, wrong nonce or chain id). The whole
  block is rejected and the state is unchanged.

Codes are stable upper-case strings (``NOT_AUTHORIZED``, ``INSUFFICIENT_FREE_BALANCE``): clients,
the API and auditors key on them; the message is for people.
"""

from __future__ import annotations

from typing import ClassVar


class TxFailure(Exception):
    """A transaction failed a business rule; ``code`` is stable, ``message`` is for people."""

    code: ClassVar[str] = "TX_FAILED"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownModuleError(TxFailure):
    code = "UNKNOWN_MODULE"


class UnknownMethodError(TxFailure):
    code = "UNKNOWN_METHOD"


class BadArgumentsError(TxFailure):
    code = "BAD_ARGUMENTS"


class UnrepresentableResultError(TxFailure):
    """A transaction's result cannot be recorded (e.g. an amount beyond the 64-bit range of the
    canonical encoding, or an arithmetic fault). Failing the one transaction, the same way on
    every node, keeps one bad input from stopping every proposer from building a block."""

    code = "UNREPRESENTABLE_RESULT"


class SenderFrozenError(TxFailure):
    code = "ACCOUNT_FROZEN"


class SenderOrgInactiveError(TxFailure):
    """The sender's organization was removed from the consortium: its accounts cannot act."""

    code = "ORGANIZATION_INACTIVE"


class InvalidBlock(Exception):
    """The block must be rejected as a whole (base class; each subclass names one check)."""


class WrongChainIdError(InvalidBlock):
    pass


class WrongHeightError(InvalidBlock):
    pass


class WrongParentHashError(InvalidBlock):
    pass


class WrongTimeError(InvalidBlock):
    pass


class WrongValidatorSetError(InvalidBlock):
    pass


class WrongProposerError(InvalidBlock):
    pass


class BadLastCommitError(InvalidBlock):
    pass


class WrongTransactionsRootError(InvalidBlock):
    pass


class WrongReceiptsRootError(InvalidBlock):
    pass


class WrongStateRootError(InvalidBlock):
    pass


class WrongEvidenceHashError(InvalidBlock):
    pass


class BadEvidenceError(InvalidBlock):
    """Evidence that does not verify, is too old, repeated, or already recorded."""


class InvalidTransactionError(InvalidBlock):
    """A transaction no honest proposer includes: wrong chain, unknown sender, nonce, signature."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"transaction {index}: {reason}")
        self.index = index
        self.reason = reason
