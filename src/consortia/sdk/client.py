"""``Client``: one account acting on a consortia chain through a node's REST API (blocking).

It learns the chain id and suite from ``GET /v1/status`` (unless given), tracks the account's
nonce (fetched once from ``GET /v1/accounts/{address}``, refetched after a refusal), validates
arguments client side against the method's argument dataclass, signs, submits with ``wait`` and
returns a ``TxResult`` — or raises a typed ``SdkError`` carrying the stable code.

Every request (but the first ``GET /v1/status`` that teaches it the chain id) is signed with the
client's key as the REST API's request signatures require (``consortia.api.auth.sign_request``:
the client's sender address, the wall clock, the chain id), so private reads answer what this
account may see; otherwise ``ForbiddenError`` (403) or ``UnauthorizedError`` (401).

Every native module is a namespace: ``client.ecny.pay(from_wallet=..., ...)`` is
``client.call("ecny", "pay", from_wallet=..., ...)``; the common operations have explicit typed
methods, the rest are reached by name (``client.registry.register_org(...)``).
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from consortia import codec
from consortia.api.auth import issue_session, sign_request
from consortia.crypto import CryptoError, KeyPair, Suite, decrypt_key_file, get_suite
from consortia.evidence.bundle import (
    EvidenceBundle,
    EvidenceError,
    Proven,
    parse_bundle,
    verify_bundle,
)
from consortia.execution.genesis import Genesis, genesis_from_json
from consortia.ledger.state_tree import StateProof, StateTreeError, verify_state_proof
from consortia.ledger.types import Transaction, sign_transaction
from consortia.modules import NATIVE_MODULES
from consortia.modules.ecny import Wallet
from consortia.modules.funds import Fund, Nav, Order, Position, fund_key, order_key, position_key
from consortia.modules.insurance import Policy, Product, policy_key, product_key
from consortia.modules.registry import Account, account_key
from consortia.modules.securities import Holding, Security, holding_key
from consortia.node.home import key_password
from consortia.node.operations import (
    InvalidOperationError,
    _from_plain,
    find_method,
    prepare_args,
)
from consortia.sdk.errors import (
    ApiError,
    BadEvidenceError,
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

if TYPE_CHECKING:
    from consortia.sdk.contracts import ContractsOps

T = TypeVar("T")
JsonObject = dict[str, Any]

DEFAULT_TIMEOUT_S = 60.0
# Refusals that mean "our idea of the nonce is out of date": refetch it and retry once.
RETRY_CODES = frozenset({"STALE_NONCE"})
# A request signature refused only because an identical one was just used (same millisecond,
# another client with the same key): sign again with a fresh timestamp, once.
RESIGN_CODES = frozenset({"REPLAYED_REQUEST"})


@dataclass(frozen=True)
class TxEvent:
    """An event a module reported (attributes as JSON: byte strings are lowercase hex)."""

    module: str
    kind: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class TxResult:
    """A transaction committed and succeeded: its hash, block height and events."""

    tx_hash: bytes
    height: int
    events: tuple[TxEvent, ...]


@dataclass(frozen=True)
class StateValue:
    """A raw state value at ``height`` (None: proven absent when ``verified``)."""

    key: bytes
    value: bytes | None
    height: int
    state_root: bytes
    proof: bytes
    verified: bool


@dataclass(frozen=True)
class FundView:
    """A fund (proof-checked with ``verify``), its security record and recent NAVs (newest
    first)."""

    fund: Fund
    security: Security | None
    navs: tuple[Nav, ...]
    navs_total: int


@dataclass(frozen=True)
class Customer:
    """One record an institution serves (``kind``: investor, wallet, fund, product, policy), as
    the API's JSON view (no sealed identities)."""

    kind: str
    id: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Me:
    """``GET /v1/me``: who this account is and what it may see (see docs/api.md)."""

    address: bytes
    org_id: str
    roles: tuple[str, ...]
    height: int
    investors: tuple[dict[str, Any], ...]  # investor views: record, accounts, fund positions, ...
    wallets: tuple[Wallet, ...]  # owned wallets (sealed_identity empty)
    customers: tuple[Customer, ...]  # this page (institutions)
    next_customers: str | None  # ``after`` of the next page
    regulator: dict[str, Any] | None
    truncated: dict[str, bool]
    raw: dict[str, Any]


@dataclass(frozen=True)
class Evidence:
    """An evidence bundle exported by the node: the canonical file ``text`` (save it as is), the
    parsed ``bundle``, and what it proves when verified locally (``proven``; else None)."""

    text: str
    bundle: EvidenceBundle
    proven: Proven | None


GenesisSource = Genesis | str | Path


def _genesis(source: GenesisSource) -> Genesis:
    if isinstance(source, Genesis):
        return source
    try:
        return genesis_from_json(Path(source).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgumentsError("BAD_GENESIS", f"{source}: {exc}") from exc


def _loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def record_from_json(cls: type[T], data: Mapping[str, Any], **missing: Any) -> T:
    """Rebuild a record dataclass from the API's JSON view (hex strings back to bytes);
    ``missing`` fills fields the API leaves out (e.g. ``sealed_identity``)."""
    plain = {**missing, **dict(data)}
    try:
        converted = _from_plain(cls, plain, cls.__name__)
        value: T = codec.from_cbor(cls, converted, cls.__name__)
    except (codec.CodecError, InvalidOperationError) as exc:
        raise ApiError("BAD_RESPONSE", f"unexpected {cls.__name__} record: {exc}") from exc
    return value


class Client:
    """One account (``key``) acting through the REST API at ``base_url`` (e.g.
    ``http://127.0.0.1:27600``, as ``consortia status`` lists).

    ``suite`` and ``chain_id`` default to the node's (``GET /v1/status``); ``sender`` is the
    account's address (default: the key's own; give it for an account whose key was rotated).
    """

    registry: ModuleOps
    governance: ModuleOps
    investors: ModuleOps
    securities: SecuritiesOps
    enforcement: ModuleOps
    corporate_actions: ModuleOps
    ecny: EcnyOps
    funds: FundsOps
    settlement: SettlementOps
    insurance: InsuranceOps
    anchoring: ModuleOps
    reports: ModuleOps
    orders: ModuleOps
    supervision: ModuleOps
    contracts: ContractsOps  # consortia.sdk.contracts: deploy → Contract handles

    def __init__(
        self,
        base_url: str,
        key: KeyPair,
        *,
        suite: Suite | str | None = None,
        chain_id: str | None = None,
        sender: bytes | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fetch_events: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s
        self.fetch_events = fetch_events
        self._suite = get_suite(suite) if isinstance(suite, str) else suite
        self._chain_id = chain_id
        self._sender = sender
        self._nonce: int | None = None
        self._last_sign_ms = 0
        handlers: list[urllib.request.BaseHandler] = []
        if _loopback(self.base_url):
            handlers.append(urllib.request.ProxyHandler({}))  # never proxy a local node
        self._opener = urllib.request.build_opener(*handlers)
        # ``contracts`` builds on ``ModuleOps`` (defined below), hence imported here.
        from consortia.sdk.contracts import ContractsOps  # noqa: PLC0415

        typed: dict[str, Callable[[Client, str], ModuleOps]] = {
            "contracts": ContractsOps,
            "securities": SecuritiesOps,
            "ecny": EcnyOps,
            "funds": FundsOps,
            "settlement": SettlementOps,
            "insurance": InsuranceOps,
        }
        for name in NATIVE_MODULES:
            setattr(self, name, typed.get(name, ModuleOps)(self, name))

    @classmethod
    def from_key_file(
        cls, base_url: str, path: str | Path, *, password: str | None = None, **kwargs: Any
    ) -> Client:
        """A client with the key in an encrypted key file (password: ``password``, else
        ``CONSORTIA_KEY_PASSWORD``, else the demo password)."""
        try:
            key = decrypt_key_file(Path(path).read_bytes(), password or key_password())
        except (OSError, CryptoError) as exc:
            raise InvalidArgumentsError("BAD_KEY_FILE", f"{path}: {exc}") from exc
        return cls(base_url, key, **kwargs)

    # -- HTTP ----------------------------------------------------------------------------------

    def _auth_headers(self, method: str, target: str, data: bytes) -> dict[str, str]:
        """The request-signature headers (a strictly increasing timestamp per client, so two
        identical reads in one millisecond are no replay)."""
        now_ms = max(time.time_ns() // 1_000_000, self._last_sign_ms + 1)
        self._last_sign_ms = now_ms
        return sign_request(
            self.suite,
            self.key,
            self.address,
            method,
            target,
            data,
            now_ms,
            chain_id=self.chain_id,
        )

    def _request(self, method: str, path: str, body: JsonObject | None = None) -> JsonObject:
        try:
            return self._request_once(method, path, body)
        except UnauthorizedError as exc:
            if exc.code not in RESIGN_CODES:
                raise
        return self._request_once(method, path, body)

    def _request_once(self, method: str, path: str, body: JsonObject | None) -> JsonObject:
        status, raw = self._send(method, path, body)
        reply = self._reply(method, path, status, raw)
        reply["_status"] = status
        return reply

    def _send(self, method: str, path: str, body: JsonObject | None) -> tuple[int, bytes]:
        """One signed HTTP exchange: ``(status, body)`` (``TransportError`` if unreachable)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        learning = path == "/v1/status" and (self._suite is None or self._chain_id is None)
        if not learning:
            target = urllib.parse.urlsplit(self.base_url).path.rstrip("/") + path
            headers.update(self._auth_headers(method, target, data or b""))
        try:
            # Inside the try: urllib refuses an unusable URL (no scheme) with a ValueError here.
            req = urllib.request.Request(
                self.base_url + path, data=data, method=method, headers=headers
            )
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (OSError, ValueError) as exc:
            raise TransportError("TRANSPORT", f"{method} {self.base_url}{path}: {exc}") from exc

    @staticmethod
    def _reply(method: str, path: str, status: int, raw: bytes) -> JsonObject:
        """The JSON object answered, or the typed error of a problem answer."""
        try:
            reply = json.loads(raw)
        except ValueError:
            raise TransportError(
                "TRANSPORT", f"{method} {path}: HTTP {status}, not JSON", status=status
            ) from None
        if not isinstance(reply, dict):
            raise TransportError("TRANSPORT", f"{method} {path}: not a JSON object", status=status)
        if status >= 400:
            code = str(reply.get("code") or f"HTTP_{status}")
            detail = str(reply.get("detail", ""))
            if code == "NOT_FOUND":
                raise NotFoundError(code, detail, status=status)
            if status == 401:
                raise UnauthorizedError(code, detail, status=status)
            if status == 403:
                raise ForbiddenError(code, detail, status=status)
            raise ApiError(code, detail, status=status)
        return reply

    def _get_document(self, path: str) -> bytes:
        """``GET path`` answered with a document whose exact bytes matter (an evidence bundle
        file); problems raise as for every other request."""
        for attempt in range(2):
            status, raw = self._send("GET", path, None)
            if status < 400:
                return raw
            try:
                self._reply("GET", path, status, raw)
            except UnauthorizedError as exc:
                if exc.code not in RESIGN_CODES or attempt:
                    raise
                continue
            raise ApiError(f"HTTP_{status}", "unexpected answer", status=status)
        raise AssertionError("unreachable")

    def _get(self, path: str) -> JsonObject:
        return self._request("GET", path)

    # -- chain facts ---------------------------------------------------------------------------

    def status(self) -> JsonObject:
        """``GET /v1/status``: chain id, suite, height, state root, validators."""
        return self._get("/v1/status")

    def _learn(self) -> None:
        if self._suite is None or self._chain_id is None:
            st = self.status()
            if self._suite is None:
                self._suite = get_suite(str(st["suite"]))
            if self._chain_id is None:
                self._chain_id = str(st["chain_id"])

    @property
    def suite(self) -> Suite:
        self._learn()
        assert self._suite is not None
        return self._suite

    @property
    def chain_id(self) -> str:
        self._learn()
        assert self._chain_id is not None
        return self._chain_id

    @property
    def address(self) -> bytes:
        """The account's address (the sender of its transactions)."""
        if self._sender is None:
            self._sender = self.suite.address(self.key.public_key)
        return self._sender

    def session_token(self, *, ttl_ms: int = 8 * 3_600_000) -> str:
        """A session grant for this account, valid ``ttl_ms`` from now (at most 12 h): for the
        web UI (``/ui/#session=TOKEN``) or ``Authorization: Consortia-Session TOKEN`` on GET
        reads (``consortia.api.auth``). It lasts until it expires or the account's key rotates."""
        return issue_session(
            self.suite,
            self.key,
            chain_id=self.chain_id,
            issued_ms=time.time_ns() // 1_000_000,
            ttl_ms=ttl_ms,
            address=self.address,
        )

    # -- reads ---------------------------------------------------------------------------------

    def _verified(self, reply: JsonObject, key: bytes) -> bytes | None:
        """The value ``reply`` claims for ``key``, checked against its proof and state root."""
        try:
            proof = StateProof.from_bytes(bytes.fromhex(str(reply["proof"])))
            root = bytes.fromhex(str(reply["state_root"]))
            if proof.key != key:
                raise ProofError("BAD_PROOF", "the proof is for another key")
            value = verify_state_proof(self.suite.hash, root, proof)
        except (StateTreeError, ValueError, KeyError) as exc:
            raise ProofError("BAD_PROOF", f"state proof of {key!r} does not hold: {exc}") from exc
        if "value" in reply:
            claimed = reply["value"]
            if (None if claimed is None else bytes.fromhex(str(claimed))) != value:
                raise ProofError("BAD_PROOF", f"the value of {key!r} differs from the proven one")
        return value

    def state(self, key: bytes | str, *, verify: bool = True) -> StateValue:
        """A raw state value (``key`` as bytes, or text encoded as UTF-8) at the head; with
        ``verify`` its proof is checked locally against the returned state root (``ProofError``
        if it does not hold). Public keys are open; private records follow the API's owner rules
        (``ForbiddenError`` otherwise); records carrying sealed identities are refused to
        everyone (``ForbiddenError`` ``PRIVATE_RECORD``): use ``wallet``."""
        raw_key = key.encode() if isinstance(key, str) else key
        reply = self._get(f"/v1/state/{raw_key.hex()}")
        value = None if reply.get("value") is None else bytes.fromhex(str(reply["value"]))
        if verify:
            value = self._verified(reply, raw_key)
        return StateValue(
            key=raw_key,
            value=value,
            height=int(reply["height"]),
            state_root=bytes.fromhex(str(reply["state_root"])),
            proof=bytes.fromhex(str(reply["proof"])),
            verified=verify,
        )

    def _proven_record(self, path: str, key: bytes, cls: type[T], verify: bool) -> T:
        reply = self._get(path)
        if not verify:
            return record_from_json(cls, reply["record"])
        value = self._verified(reply, key)
        if value is None:
            raise ProofError("BAD_PROOF", f"a record was returned for a key proven absent: {key!r}")
        record = codec.decode_struct(cls, value)
        if record != record_from_json(cls, reply["record"]):
            raise ProofError("BAD_PROOF", "the record differs from the proven value")
        return record

    def account(self, address: bytes | None = None, *, verify: bool = True) -> Account:
        """A registry account (default: this client's), proof-checked with ``verify``."""
        addr = self.address if address is None else address
        return self._proven_record(f"/v1/accounts/{addr.hex()}", account_key(addr), Account, verify)

    def holding(self, code: str, account_id: str, *, verify: bool = True) -> Holding:
        """One securities account's position in one security, proof-checked with ``verify``.
        Readable by the account's investor, its broker and the regulator (else
        ``ForbiddenError``)."""
        path = f"/v1/holdings/{_seg(code)}/{_seg(account_id)}"
        key = holding_key(code, account_id)
        return self._proven_record(path, key, Holding, verify)

    def wallet(self, wallet_id: str) -> Wallet:
        """An e-CNY wallet. The node never returns its sealed identity (``sealed_identity`` is
        empty here), nor therefore the raw value, so this read is not proof-checked. Readable by
        its owner (or parent wallet's owner), its operator bank and the regulator (else
        ``ForbiddenError``)."""
        reply = self._get(f"/v1/wallets/{_seg(wallet_id)}")
        return record_from_json(Wallet, reply["record"], sealed_identity=b"")

    def tx(self, tx_hash: bytes | str) -> JsonObject:
        """``GET /v1/tx/{hash}``: a committed transaction, its receipt, height and index
        (readable by its sender, accounts of the sender's organization and the regulator)."""
        h = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        return self._get(f"/v1/tx/{h}")

    def fund(self, code: str, *, navs: int = 10, verify: bool = True) -> FundView:
        """``GET /v1/funds/{code}`` (public): the fund record (proof-checked with ``verify``), its
        security record and its ``navs`` most recent NAVs, newest first."""
        reply = self._get(f"/v1/funds/{_seg(code)}?navs={int(navs)}")
        fund = record_from_json(Fund, reply["record"])
        if verify:
            value = self._verified(reply, fund_key(code))
            if value is None or codec.decode_struct(Fund, value) != fund:
                raise ProofError("BAD_PROOF", "the fund record differs from the proven value")
        security = reply.get("security")
        return FundView(
            fund=fund,
            security=None if security is None else record_from_json(Security, security),
            navs=tuple(record_from_json(Nav, n) for n in reply.get("navs", [])),
            navs_total=int(reply.get("navs_total", 0)),
        )

    def fund_position(self, code: str, account_id: str, *, verify: bool = True) -> Position:
        """A securities account's fund position with its FIFO lots, proof-checked with
        ``verify``. Readable by the account's investor, its broker, the fund's manager and the
        regulator (else ``ForbiddenError``)."""
        path = f"/v1/funds/{_seg(code)}/positions/{_seg(account_id)}"
        return self._proven_record(path, position_key(code, account_id), Position, verify)

    def fund_order(self, order_id: str, *, verify: bool = True) -> Order:
        """A fund subscription / redemption order and its status, proof-checked with ``verify``
        (readable as fund positions are)."""
        path = f"/v1/fund-orders/{_seg(order_id)}"
        return self._proven_record(path, order_key(order_id), Order, verify)

    def insurance_product(self, product_id: str, *, verify: bool = True) -> Product:
        """An insurance product (public), proof-checked with ``verify``."""
        path = f"/v1/insurance/products/{_seg(product_id)}"
        return self._proven_record(path, product_key(product_id), Product, verify)

    def policy(self, policy_id: str, *, verify: bool = True) -> Policy:
        """An insurance policy, proof-checked with ``verify``. Readable by the policyholder, its
        broker, an insurer account of the policy's insurer and the regulator."""
        path = f"/v1/policies/{_seg(policy_id)}"
        return self._proven_record(path, policy_key(policy_id), Policy, verify)

    def me(self, *, limit: int | None = None, after: str | None = None) -> Me:
        """``GET /v1/me``: this account, its investor records, wallets, and (institutions) one
        page of customers (``limit`` per page, ``after`` = the previous ``next_customers``)."""
        query = urllib.parse.urlencode(
            {k: v for k, v in (("limit", limit), ("after", after)) if v is not None}
        )
        reply = self._get("/v1/me" + (f"?{query}" if query else ""))
        customers = reply.get("customers") or {"items": [], "next": None}
        return Me(
            address=bytes.fromhex(str(reply["address"])),
            org_id=str(reply["org_id"]),
            roles=tuple(str(r) for r in reply["roles"]),
            height=int(reply["height"]),
            investors=tuple(reply.get("investors", [])),
            wallets=tuple(
                record_from_json(Wallet, w["record"], sealed_identity=b"")
                for w in reply.get("wallets", [])
            ),
            customers=tuple(
                Customer(str(c["kind"]), str(c["id"]), dict(c["record"]))
                for c in customers["items"]
            ),
            next_customers=customers["next"],
            regulator=reply.get("regulator"),
            truncated=dict(reply.get("truncated", {})),
            raw=reply,
        )

    def _evidence(
        self,
        path: str,
        verify: bool,
        business_genesis: GenesisSource | None,
        supervision_genesis: GenesisSource | None,
    ) -> Evidence:
        if verify and (business_genesis is None or supervision_genesis is None):
            raise InvalidArgumentsError(
                "GENESIS_REQUIRED",
                "verify=True needs the business and supervision genesis documents you trust",
            )
        raw = self._get_document(path)
        try:
            text = raw.decode("ascii")
            bundle = parse_bundle(text)
            proven = (
                verify_bundle(bundle, _genesis(business_genesis), _genesis(supervision_genesis))
                if business_genesis is not None and supervision_genesis is not None and verify
                else None
            )
        except (UnicodeDecodeError, EvidenceError) as exc:
            raise BadEvidenceError("BAD_EVIDENCE", str(exc)) from exc
        return Evidence(text=text, bundle=bundle, proven=proven)

    def export_transaction_evidence(
        self,
        tx_hash: bytes | str,
        *,
        verify: bool = False,
        business_genesis: GenesisSource | None = None,
        supervision_genesis: GenesisSource | None = None,
    ) -> Evidence:
        """The evidence bundle of a committed transaction (``GET /v1/evidence/tx/{hash}``),
        built and verified by the node; with ``verify`` also verified here against the genesis
        documents given (``Genesis`` objects or paths of genesis.json; ``BadEvidenceError`` if it
        does not verify). Readable as ``tx`` is."""
        h = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        return self._evidence(
            f"/v1/evidence/tx/{_seg(h)}", verify, business_genesis, supervision_genesis
        )

    def export_holding_evidence(
        self,
        code: str,
        account_id: str,
        *,
        height: int | None = None,
        verify: bool = False,
        business_genesis: GenesisSource | None = None,
        supervision_genesis: GenesisSource | None = None,
    ) -> Evidence:
        """The evidence bundle of a holding at ``height`` (default: the head; ``ApiError``
        ``NOT_ANCHORED`` until the relayer anchored it), verified locally with ``verify``."""
        path = f"/v1/evidence/holding/{_seg(code)}/{_seg(account_id)}"
        if height is not None:
            path += f"?height={int(height)}"
        return self._evidence(path, verify, business_genesis, supervision_genesis)

    def export_wallet_evidence(
        self,
        wallet_id: str,
        *,
        height: int | None = None,
        verify: bool = False,
        business_genesis: GenesisSource | None = None,
        supervision_genesis: GenesisSource | None = None,
    ) -> Evidence:
        """The evidence bundle of an e-CNY wallet at ``height`` (default: the head), verified
        locally with ``verify``."""
        path = f"/v1/evidence/wallet/{_seg(wallet_id)}"
        if height is not None:
            path += f"?height={int(height)}"
        return self._evidence(path, verify, business_genesis, supervision_genesis)

    def export_contract_evidence(
        self,
        address: str,
        slot: int | None = None,
        *,
        height: int | None = None,
        verify: bool = False,
        business_genesis: GenesisSource | None = None,
        supervision_genesis: GenesisSource | None = None,
    ) -> Evidence:
        """The evidence bundle (``consortia-evidence/2``) of a contract's storage ``slot`` at
        ``height`` (default: the head), or of its account record when ``slot`` is None; the
        API answers it to the regulator only. Verified locally with ``verify``."""
        path = f"/v1/evidence/contract/{_seg(address.removeprefix('0x'))}"
        if slot is not None:
            if isinstance(slot, bool) or not isinstance(slot, int) or slot < 0:
                message = f"slot must be an integer >= 0, not {slot!r}"
                raise InvalidArgumentsError("BAD_ARGUMENTS", message)
            path += f"/{slot:#x}"
        if height is not None:
            path += f"?height={int(height)}"
        return self._evidence(path, verify, business_genesis, supervision_genesis)

    # -- transactions --------------------------------------------------------------------------

    def next_nonce(self, *, refresh: bool = False) -> int:
        """The nonce the next transaction will carry (fetched from the chain when unknown)."""
        if self._nonce is None or refresh:
            try:
                self._nonce = self.account(verify=False).nonce
            except NotFoundError:
                self._nonce = 0
        return self._nonce

    def sign(self, module: str, method: str, args: Mapping[str, Any]) -> Transaction:
        """Validate ``args`` client side (``InvalidArgumentsError``) and sign the transaction
        with the next nonce (which this client then counts as used)."""
        try:
            prepared = prepare_args(module, method, args)
        except InvalidOperationError as exc:
            raise InvalidArgumentsError(exc.code, exc.message) from exc
        tx = sign_transaction(
            self.suite,
            self.key,
            chain_id=self.chain_id,
            nonce=self.next_nonce(),
            module=module,
            method=method,
            args=prepared,
            sender=self._sender,
        )
        self._nonce = tx.nonce + 1
        return tx

    def submit(self, tx: Transaction) -> TxResult:
        """Submit a signed transaction and wait for it to commit. Raises ``RejectedError``
        (refused at admission; this client then refetches its nonce), ``FailedError`` (committed,
        refused by a business rule), ``NotCommittedError`` or ``TransportError``."""
        try:
            reply = self._request("POST", "/v1/tx", {"tx": tx.encode().hex(), "wait": True})
        except ApiError as exc:
            self._nonce = None  # the nonce was not used: learn it again
            raise RejectedError(exc.code, exc.message, status=exc.status) from None
        except TransportError:
            self._nonce = None
            raise
        tx_hash = bytes.fromhex(str(reply.get("tx_hash", "")))
        if "height" not in reply:
            self._nonce = None
            raise NotCommittedError(
                str(reply.get("code") or "NOT_COMMITTED_IN_TIME"),
                str(reply.get("message", "not committed in time")),
                tx_hash=tx_hash or None,
            )
        height = int(reply["height"])
        if not reply.get("ok"):
            raise FailedError(
                str(reply.get("code", "FAILED")),
                str(reply.get("message", "")),
                tx_hash=tx_hash,
                height=height,
            )
        events: tuple[TxEvent, ...] = ()
        if self.fetch_events:
            receipt = self.tx(tx_hash).get("receipt", {})
            events = tuple(
                TxEvent(str(e["module"]), str(e["kind"]), dict(e.get("attributes", {})))
                for e in receipt.get("events", [])
            )
        return TxResult(tx_hash=tx_hash, height=height, events=events)

    def call(self, module: str, method: str, /, **args: Any) -> TxResult:
        """Perform ``module.method`` with keyword ``args`` (plain data; a bytes field also takes
        hex): validate, sign, submit, wait. On ``STALE_NONCE`` the nonce is refetched and the
        call retried once."""
        try:
            return self.submit(self.sign(module, method, args))
        except RejectedError as exc:
            if exc.code not in RETRY_CODES:
                raise
        return self.submit(self.sign(module, method, args))

    # -- the regulator dashboard's data (``/v1/supervision/*``: the regulator only) -------------

    def _get_query(self, path: str, **params: str | int | None) -> JsonObject:
        given = {k: str(v) for k, v in params.items() if v is not None}
        return self._get(f"{path}?{urllib.parse.urlencode(given)}" if given else path)

    def supervision_overview(self) -> JsonObject:
        """Per business chain: indexed and anchored height, lag, alerts, open freezes, orders."""
        return self._get("/v1/supervision/overview")

    def supervision_alerts(
        self,
        *,
        rule: str | None = None,
        chain: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> JsonObject:
        """Surveillance alerts, newest first; pass the reply's ``next_after`` as ``after``."""
        return self._get_query(
            "/v1/supervision/alerts", rule=rule, chain=chain, limit=limit, after=after
        )

    def supervision_investor(self, investor_id: str, *, history: int | None = None) -> JsonObject:
        """Look-through of one investor across chains: accounts, holdings, wallets, history."""
        return self._get_query(f"/v1/supervision/investors/{_seg(investor_id)}", history=history)

    def supervision_holders(
        self, chain_id: str, code: str, *, height: int | None = None, limit: int | None = None
    ) -> JsonObject:
        """The holder register of ``code`` on ``chain_id`` (at ``height``; default: indexed)."""
        path = f"/v1/supervision/holders/{_seg(chain_id)}/{_seg(code)}"
        return self._get_query(path, height=height, limit=limit)

    def supervision_large_payments(
        self, *, chain: str | None = None, limit: int | None = None, after: int | None = None
    ) -> JsonObject:
        """Large-value e-CNY payments, newest first; ``after`` pages as for alerts."""
        return self._get_query(
            "/v1/supervision/large-payments", chain=chain, limit=limit, after=after
        )

    def supervision_freezes(
        self, *, chain: str | None = None, lifted: int | None = None
    ) -> JsonObject:
        """Open freezes across chains (and the ``lifted`` latest lifted ones)."""
        return self._get_query("/v1/supervision/freezes", chain=chain, lifted=lifted)

    def supervision_orders(
        self, *, chain: str | None = None, kind: str | None = None, limit: int | None = None
    ) -> JsonObject:
        """Regulatory orders from the supervision chain's state, newest first."""
        return self._get_query("/v1/supervision/orders", chain=chain, kind=kind, limit=limit)

    def supervision_anchoring(self) -> JsonObject:
        """Per business chain: registered, anchored height and time, index head, lag."""
        return self._get("/v1/supervision/anchoring")

    def activity(self, *, blocks: int | None = None) -> JsonObject:
        """``GET /v1/activity``: the last ``blocks`` blocks' time, tx count, round and interval
        (public)."""
        return self._get_query("/v1/activity", blocks=blocks)


def _seg(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# ---------------------------------------------------------------------------------------------
# Module namespaces


class ModuleOps:
    """The methods of one native module: ``ops.METHOD(**args)`` is
    ``client.call(MODULE, METHOD, **args)``; ``dir(ops)`` lists them."""

    def __init__(self, client: Client, module: str) -> None:
        self._client = client
        self._module = module

    def __getattr__(self, method: str) -> Callable[..., TxResult]:
        if method.startswith("_") or method not in NATIVE_MODULES[self._module].methods:
            raise AttributeError(f"module {self._module!r} has no method {method!r}")
        meth = find_method(self._module, method)

        def perform(**args: Any) -> TxResult:
            return self._client.call(self._module, method, **args)

        perform.__name__ = method
        perform.__qualname__ = f"{self._module}.{method}"
        perform.__doc__ = meth.handler.__doc__
        return perform

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(NATIVE_MODULES[self._module].methods))

    def __repr__(self) -> str:
        return f"<consortia.sdk module {self._module}: {', '.join(self.methods())}>"

    def methods(self) -> list[str]:
        """This module's method names."""
        return list(NATIVE_MODULES[self._module].methods)

    def _call(self, method: str, **args: Any) -> TxResult:
        return self._client.call(self._module, method, **args)


class EcnyOps(ModuleOps):
    """e-CNY: issuance to operator banks, tiered wallets, payments, escrow."""

    def pay(self, *, from_wallet: str, to_wallet: str, amount: int, memo: str = "") -> TxResult:
        """The holder pays ``amount`` fen from ``from_wallet`` to ``to_wallet`` (refused with
        e.g. ``INSUFFICIENT_FUNDS``, ``PER_PAYMENT_LIMIT_EXCEEDED``, ``WALLET_FROZEN``)."""
        return self._call(
            "pay", from_wallet=from_wallet, to_wallet=to_wallet, amount=amount, memo=memo
        )

    def issue(self, *, operator_org: str, amount: int, reserve_reference: str) -> TxResult:
        """The central bank issues ``amount`` fen to an operator bank against its reserve."""
        return self._call(
            "issue", operator_org=operator_org, amount=amount, reserve_reference=reserve_reference
        )


class SecuritiesOps(ModuleOps):
    """Securities: listing, issuance and transfers between securities accounts."""

    def transfer(
        self, *, code: str, from_account: str, to_account: str, amount: int, memo: str = ""
    ) -> TxResult:
        """Move ``amount`` units of ``code`` between two securities accounts."""
        return self._call(
            "transfer",
            code=code,
            from_account=from_account,
            to_account=to_account,
            amount=amount,
            memo=memo,
        )

    def issue(self, *, code: str, account_id: str, amount: int) -> TxResult:
        """The issuer issues ``amount`` units of an approved security to an account."""
        return self._call("issue", code=code, account_id=account_id, amount=amount)


class FundsOps(ModuleOps):
    """Funds: subscriptions and redemptions priced at the NAV of their trading day."""

    def subscribe(
        self, *, order_id: str, code: str, account_id: str, wallet_id: str, amount_fen: int
    ) -> TxResult:
        """Subscribe ``amount_fen`` to fund ``code`` paid from ``wallet_id`` (held in escrow
        until the NAV of the order's trading day confirms it)."""
        return self._call(
            "subscribe",
            order_id=order_id,
            code=code,
            account_id=account_id,
            wallet_id=wallet_id,
            amount_fen=amount_fen,
        )

    def redeem(
        self, *, order_id: str, code: str, account_id: str, wallet_id: str, units: int
    ) -> TxResult:
        """Redeem ``units`` of fund ``code``; proceeds go to ``wallet_id`` once confirmed."""
        return self._call(
            "redeem",
            order_id=order_id,
            code=code,
            account_id=account_id,
            wallet_id=wallet_id,
            units=units,
        )


class SettlementOps(ModuleOps):
    """Delivery versus payment: both sides instruct; the trade settles both legs or none."""

    def instruct(
        self,
        *,
        trade_id: str,
        side: str,
        code: str,
        seller_account: str,
        buyer_account: str,
        shares: int,
        price_fen: int,
    ) -> TxResult:
        """One side's (``"buy"`` or ``"sell"``) instruction of trade ``trade_id``."""
        return self._call(
            "instruct",
            trade_id=trade_id,
            side=side,
            code=code,
            seller_account=seller_account,
            buyer_account=buyer_account,
            shares=shares,
            price_fen=price_fen,
        )


class InsuranceOps(ModuleOps):
    """Insurance: products, policies (with a cooling-off period) and claims."""

    def buy_policy(
        self, *, policy_id: str, product_id: str, investor_id: str, wallet_id: str
    ) -> TxResult:
        """Buy a policy of ``product_id``, the premium paid from ``wallet_id``."""
        return self._call(
            "buy_policy",
            policy_id=policy_id,
            product_id=product_id,
            investor_id=investor_id,
            wallet_id=wallet_id,
        )


def _is_record(value: Any) -> bool:
    return is_dataclass(value) and not isinstance(value, type)


def as_json(value: Any) -> Any:
    """A record as plain JSON-able data (bytes as hex), for printing."""
    if _is_record(value):
        return {f.name: as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


__all__ = [
    "Client",
    "Customer",
    "EcnyOps",
    "Evidence",
    "ForbiddenError",
    "FundView",
    "FundsOps",
    "InsuranceOps",
    "Me",
    "ModuleOps",
    "SdkError",
    "SecuritiesOps",
    "SettlementOps",
    "StateValue",
    "TxEvent",
    "TxResult",
    "UnauthorizedError",
    "as_json",
    "record_from_json",
]
