"""py-evm's account database, implemented as a journaled overlay over consortia's state.

py-evm runs opcodes against an ``AccountDatabaseAPI``; its own implementation keeps accounts in a
hexary Patricia trie. This one keeps nothing of its own: reads go through a write buffer to a
*state view* (anything with ``get(key) -> bytes | None``: the committed ``StateTree``, or a
transaction's ``TxContext``), and writes stay in the buffer as consortia state keys
(``consortia.contracts.keys``). The engine hands the buffer back only when the whole message
succeeded, so a revert or an out-of-gas run leaves the state exactly as it was.

Nested calls need nested undo: py-evm takes a checkpoint (``record``) before each call frame and
``discard``s it when the frame fails. The overlay keeps one undo log for the transaction; a
checkpoint is a position in that log. Warm addresses and slots (EIP-2929) are journaled the same
way, since a reverted frame's accesses turn cold again.
"""

from __future__ import annotations

from typing import Protocol

from eth.abc import AccountDatabaseAPI, MetaWitnessAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.journal import get_next_checkpoint
from eth.typing import JournalDBCheckpoint
from eth_hash.auto import keccak
from eth_typing import Address, Hash32

from consortia import codec
from consortia.contracts import keys
from consortia.ledger.types import Event


class StateView(Protocol):
    """Read access to consortia state: the tree, or a transaction's overlay of it."""

    def get(self, key: bytes) -> bytes | None: ...


class UnsupportedStateOperation(RuntimeError):
    """py-evm asked for something consortia's contract state never does (a trie root, ether)."""


_ABSENT = object()  # undo-log marker: the key was not in the write buffer

# Undo-log entry kinds.
_WRITE = 0
_WARM = 1
_WIPE = 2
_EVENT = 3

_CONTRACT_PREFIXES = (keys.ACCOUNT_PREFIX, keys.CODE_PREFIX, keys.STORAGE_PREFIX)


class OverlayAccountDB(AccountDatabaseAPI):
    """A write buffer over a ``StateView`` with checkpoints, in py-evm's account-DB shape.

    ``writes`` (after the engine's final commit) holds every changed consortia key: a value, or
    ``None`` for a deletion. ``original`` reads bypass the buffer: that is the value at the start
    of the transaction, which EIP-2200/3529 storage gas needs.
    """

    def __init__(self, view: StateView) -> None:  # the API's (db, state_root) is not used
        self._view = view
        self.writes: dict[bytes, bytes | None] = {}
        self._undo: list[tuple[int, object, object]] = []
        self._checkpoints: dict[int, int] = {}
        self._warm: set[object] = set()
        self._wiped: set[bytes] = set()  # contracts whose stored slots a wipe hid
        # Events of native module calls (precompiles), with the log counter that orders them
        # among the EVM's own LOGs; journaled, so a reverted frame's events go with its writes.
        self.native_events: list[tuple[int, Event]] = []

    # -- buffer --------------------------------------------------------------------------------

    def _get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._view.get(key)

    def _put(self, key: bytes, value: bytes | None) -> None:
        self._undo.append((_WRITE, key, self.writes.get(key, _ABSENT)))
        self.writes[key] = value

    def read(self, key: bytes) -> bytes | None:
        """A consortia state key as the running message sees it (its own writes first)."""
        return self._get(key)

    def put_native(self, key: bytes, value: bytes | None) -> None:
        """A write made by a native module call (a precompile): journaled like a storage write,
        so a failed frame undoes it. Never a contract key: native modules own their own keys."""
        if key.startswith(_CONTRACT_PREFIXES):
            raise UnsupportedStateOperation("a native module call wrote a contract key")
        self._put(key, value)

    def add_native_event(self, order: int, event: Event) -> None:
        """An event of a native module call, at log counter ``order`` (journaled)."""
        self._undo.append((_EVENT, None, None))
        self.native_events.append((order, event))

    # -- checkpoints ---------------------------------------------------------------------------

    def record(self) -> JournalDBCheckpoint:
        # py-evm's process-wide checkpoint counter: the Cancun transient storage journals under
        # the same ids next to its own, so they must never collide. Ids are never observable.
        checkpoint = get_next_checkpoint()
        self._checkpoints[checkpoint] = len(self._undo)
        return checkpoint

    def discard(self, checkpoint: JournalDBCheckpoint) -> None:
        mark = self._checkpoints.pop(checkpoint)
        while len(self._undo) > mark:
            kind, item, previous = self._undo.pop()
            if kind == _WRITE:
                assert isinstance(item, bytes)
                if previous is _ABSENT:
                    del self.writes[item]
                else:
                    assert previous is None or isinstance(previous, bytes)
                    self.writes[item] = previous
            elif kind == _WARM:
                self._warm.discard(item)
            elif kind == _EVENT:
                self.native_events.pop()
            else:
                assert isinstance(item, bytes)
                self._wiped.discard(item)

    def commit(self, checkpoint: JournalDBCheckpoint) -> None:
        # The entries stay in the log: an enclosing frame may still be discarded.
        self._checkpoints.pop(checkpoint)

    def lock_changes(self) -> None:
        """End of the message: nothing can be undone any more."""
        self._undo.clear()
        self._checkpoints.clear()

    # -- accounts ------------------------------------------------------------------------------

    def _account(self, address: Address) -> keys.ContractAccount | None:
        raw = self._get(keys.account_key(address))
        return None if raw is None else codec.decode_struct(keys.ContractAccount, raw)

    def _put_account(self, address: Address, account: keys.ContractAccount | None) -> None:
        key = keys.account_key(address)
        self._put(key, None if account is None else codec.encode_struct(account))

    def get_nonce(self, address: Address) -> int:
        account = self._account(address)
        return 0 if account is None else account.nonce

    def set_nonce(self, address: Address, nonce: int) -> None:
        account = self._account(address)
        code_hash = keys.EMPTY_CODE_HASH if account is None else account.code_hash
        self._put_account(address, keys.ContractAccount(nonce, code_hash))

    def increment_nonce(self, address: Address) -> None:
        self.set_nonce(address, self.get_nonce(address) + 1)

    def get_code(self, address: Address) -> bytes:
        return self._get(keys.code_key(address)) or b""

    def set_code(self, address: Address, code: bytes) -> None:
        self._put(keys.code_key(address), code if code else None)
        self._put_account(
            address, keys.ContractAccount(self.get_nonce(address), bytes(keccak(code)))
        )

    def get_code_hash(self, address: Address) -> Hash32:
        account = self._account(address)
        return Hash32(keys.EMPTY_CODE_HASH if account is None else account.code_hash)

    def delete_code(self, address: Address) -> None:
        self.set_code(address, b"")

    def account_has_code_or_nonce(self, address: Address) -> bool:
        account = self._account(address)
        return account is not None and (
            account.nonce > 0 or account.code_hash != keys.EMPTY_CODE_HASH
        )

    def account_exists(self, address: Address) -> bool:
        # Imported here, not at the top: the registry's package imports the contracts module,
        # which imports the engine and so this module; whichever is imported first must load.
        from consortia.modules.registry import account_key as registry_account_key  # noqa: PLC0415

        # A contract, or a registered consortia account (an externally owned account).
        return (
            self._get(keys.account_key(address)) is not None
            or self._view.get(registry_account_key(address)) is not None
        )

    def account_is_empty(self, address: Address) -> bool:
        return not self.account_has_code_or_nonce(address)  # balances are always zero

    def touch_account(self, address: Address) -> None:
        # EIP-161 touches matter only for empty accounts, which this state never stores.
        pass

    def delete_account(self, address: Address) -> None:
        self._put(keys.code_key(address), None)
        self._put_account(address, None)
        self.delete_storage(address)

    # -- balances: contract accounts hold no value -------------------------------------------

    def get_balance(self, address: Address) -> int:
        return 0

    def set_balance(self, address: Address, balance: int) -> None:
        if balance != 0:  # the engine refuses value, and every balance is 0, so never reached
            raise UnsupportedStateOperation("consortia contract accounts hold no balance")

    # -- storage -------------------------------------------------------------------------------

    def get_storage(self, address: Address, slot: int, from_journal: bool = True) -> int:
        key = keys.storage_key(address, slot)
        if not from_journal:
            raw = self._view.get(key)
        elif key in self.writes:
            raw = self.writes[key]
        elif address in self._wiped:
            raw = None
        else:
            raw = self._view.get(key)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def set_storage(self, address: Address, slot: int, value: int) -> None:
        word = value.to_bytes(keys.WORD_SIZE, "big") if value else None
        self._put(keys.storage_key(address, slot), word)

    def delete_storage(self, address: Address) -> None:
        """Wipe a contract's storage (SELFDESTRUCT of a contract created in this transaction).

        Only slots written in this transaction can exist: storage is only ever written for a
        contract, and a contract older than this transaction is never wiped (EIP-6780). So the
        wipe deletes the buffered slots and hides the view's, of which there are none.
        """
        prefix = keys.storage_prefix(address)
        for key in [k for k in self.writes if k.startswith(prefix)]:
            self._put(key, None)
        if address not in self._wiped:
            self._undo.append((_WIPE, bytes(address), None))
            self._wiped.add(bytes(address))

    # -- EIP-2929 warm sets ----------------------------------------------------------------------

    def _warm_up(self, item: object) -> None:
        if item not in self._warm:
            self._undo.append((_WARM, item, None))
            self._warm.add(item)

    def is_address_warm(self, address: Address) -> bool:
        return address in self._warm

    def mark_address_warm(self, address: Address) -> None:
        self._warm_up(bytes(address))

    def is_storage_warm(self, address: Address, slot: int) -> bool:
        return (bytes(address), slot) in self._warm

    def mark_storage_warm(self, address: Address, slot: int) -> None:
        self._warm_up((bytes(address), slot))

    # -- trie operations: consortia's state tree owns the root ----------------------------------

    @property
    def state_root(self) -> Hash32:
        # py-evm's snapshots carry a root alongside the checkpoint; a constant serves.
        return BLANK_ROOT_HASH

    @state_root.setter
    def state_root(self, value: Hash32) -> None:
        pass

    def has_root(self, state_root: bytes) -> bool:
        return state_root == BLANK_ROOT_HASH

    def make_state_root(self) -> Hash32:
        raise UnsupportedStateOperation("the state root is consortia's state tree's")

    def persist(self) -> MetaWitnessAPI:
        raise UnsupportedStateOperation("the engine returns writes; the block executor persists")
