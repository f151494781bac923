"""``consortia.sdk``: a typed Python client of a consortia node's REST API.

::

    from consortia.sdk import Client

    client = Client.from_key_file("http://127.0.0.1:27600", "net/accounts/ccb-admin.key")
    result = client.ecny.pay(from_wallet="W-CAROL", to_wallet="W-DAN", amount=100)
    print(result.tx_hash.hex(), result.height, result.events)
    print(client.holding("000001", "SA-ALICE").balance)  # proof-checked

Operations return a ``TxResult`` once committed or raise an ``SdkError`` with the stable code:
``RejectedError`` (refused at admission: nothing changed), ``FailedError`` (committed, refused by
a business rule), ``NotFoundError``, ``ForbiddenError`` (this key may not read that record),
``UnauthorizedError`` (the request signature was not accepted), ``ProofError``,
``TransportError``, ...

Contracts: ``client.contracts.deploy(abi, bytecode, *ctor_args)`` returns a ``Contract`` handle
with ``.transact(fn, *args)`` (a signed transaction: decoded result and events) and
``.query(fn, *args)`` (read-only, no transaction); see ``consortia.sdk.contracts``.

Every request is signed with the client's key (``consortia.api.auth``), so private reads
(wallets, holdings, investors, transactions, private state) answer what this account may see.
"""

from consortia.sdk.client import (
    Client,
    EcnyOps,
    FundsOps,
    InsuranceOps,
    ModuleOps,
    SecuritiesOps,
    SettlementOps,
    StateValue,
    TxEvent,
    TxResult,
    as_json,
    record_from_json,
)
from consortia.sdk.contracts import (
    Contract,
    ContractEvent,
    ContractsOps,
    ContractTxResult,
    QueryFailedError,
)
from consortia.sdk.errors import (
    ApiError,
    FailedError,
    ForbiddenError,
    InvalidArgumentsError,
    NotCommittedError,
    NotFoundError,
    ProofError,
    RejectedError,
    SdkError,
    TransportError,
    UnauthorizedError,
)

__all__ = [
    "ApiError",
    "Client",
    "Contract",
    "ContractEvent",
    "ContractTxResult",
    "ContractsOps",
    "EcnyOps",
    "FailedError",
    "ForbiddenError",
    "FundsOps",
    "InsuranceOps",
    "InvalidArgumentsError",
    "ModuleOps",
    "NotCommittedError",
    "NotFoundError",
    "ProofError",
    "QueryFailedError",
    "RejectedError",
    "SdkError",
    "SecuritiesOps",
    "SettlementOps",
    "StateValue",
    "TransportError",
    "TxEvent",
    "TxResult",
    "UnauthorizedError",
    "as_json",
    "record_from_json",
]
