"""Authenticated state: an immutable, compact sparse Merkle tree with membership proofs.

Shape. A key's place is its *path* ``h(key)``: 256 bits, most significant first, bit ``d`` choosing
the child (0 left, 1 right) at depth ``d``. The tree is canonical:

- an empty subtree hashes to ``EMPTY`` (32 zero bytes; the empty tree's root is ``EMPTY``);
- a subtree holding exactly one leaf *is* that leaf, placed at the highest depth where it is alone;
- a subtree holding two or more leaves is an internal node (so two leaves sharing a long prefix hang
  below a chain of internal nodes whose other child is empty).

    leaf hash     = h(0x00 || path || h(value))
    internal hash = h(0x01 || left hash || right hash)

The shape follows from the set of paths alone, so the root depends only on the contents, never on
insertion order or batching. The 0x00/0x01 prefixes keep leaves and internal nodes apart, and a leaf
hash commits to its whole path, so a proof cannot move a leaf to another place.

Persistence. ``StateTree`` never changes after construction: ``update`` copies the nodes on the
touched paths and shares every other node with the old version, because execution is a pure
function ``apply_block(state, block) -> (state, receipts)`` and older versions must stay valid
(proofs at past heights, a block that turns out not to commit). ``update`` applies a whole batch in
one descent and builds each touched node once, so a block's changes hash each new node once, however
many changes lie below it.

Like ``merkle``, this module takes the hash function as a parameter and imports only the codec, so a
proof can be checked with nothing but the proof, the root and the suite's hash.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, TypeAlias

from consortia.codec import DEFAULT_MAX_SIZE, CodecError, decode, encode
from consortia.ledger.merkle import HashFn

HASH_SIZE = 32
PATH_BITS = 256
EMPTY = bytes(HASH_SIZE)
"""The hash of an empty subtree, and the root of the empty tree."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_TOP_BIT = PATH_BITS - 1


class StateTreeError(ValueError):
    """Base class of the state tree errors."""


class InvalidStateProofError(StateTreeError):
    """A state proof is malformed, or does not prove its claim against the given root."""


class DuplicateStateKeyError(StateTreeError):
    """A bulk load was given the same key twice (a corrupt snapshot, not a last-wins update)."""


# ---------------------------------------------------------------------------------------------
# Nodes are plain tuples, hashed when built:
#
#   leaf  = (hash, path_int, key, value)     path_int: h(key) as a 256-bit integer
#   inner = (hash, left, right)              a child is a node, or None for an empty subtree
#
# Why tuples rather than objects: CPython's cyclic garbage collector stops tracking a tuple once it
# sees that it holds only bytes, ints, None and untracked tuples, so most of the tree (millions of
# nodes in a live chain) drops out of its full collections. With __slots__ node objects, full
# collections walking the whole tree took about 80 % of update time at 100k keys, a cost that grows
# with the state. The tree has no cycles: reference counting alone frees the nodes an update
# replaces.
#
# Why hashed when built rather than lazily: a lazily filled hash needs a mutable node, which the
# collector must track. Nothing is hashed twice: one ``update`` call builds each new node once,
# and execution applies a block's writes in one call.

_Leaf: TypeAlias = tuple[bytes, int, bytes, bytes]
_Inner: TypeAlias = tuple[bytes, "_Node", "_Node"]
_Node: TypeAlias = "_Leaf | _Inner | None"

_HASH: Final = 0
_LEFT: Final = 1  # inner
_RIGHT: Final = 2  # inner
_PATH_INT: Final = 1  # leaf
_KEY: Final = 2  # leaf
_VALUE: Final = 3  # leaf
_INNER_LEN: Final = 3

_path_int_of = itemgetter(_PATH_INT)


def _leaf(h: HashFn, key: bytes, value: bytes, path: bytes) -> _Leaf:
    return (h(_LEAF_PREFIX + path + h(value)), int.from_bytes(path, "big"), key, value)


def _inner(h: HashFn, left: _Node, right: _Node) -> _Inner:
    left_hash = EMPTY if left is None else left[_HASH]
    right_hash = EMPTY if right is None else right[_HASH]
    return (h(_NODE_PREFIX + left_hash + right_hash), left, right)


def _join(h: HashFn, left: _Node, right: _Node) -> _Node:
    """The canonical node over two canonical children: a lone leaf moves up, empties vanish."""
    if left is None:
        if right is None or len(right) != _INNER_LEN:
            return right
    elif right is None and len(left) != _INNER_LEN:
        return left
    return _inner(h, left, right)


def _build(h: HashFn, leaves: list[_Leaf], lo: int, hi: int, depth: int) -> _Node:
    """The canonical subtree at ``depth`` over ``leaves[lo:hi]`` (sorted by path, sharing the
    subtree's ``depth``-bit prefix)."""
    if hi - lo < 2:
        return leaves[lo] if hi > lo else None
    first = leaves[lo][_PATH_INT]
    last = leaves[hi - 1][_PATH_INT]
    # Sorted paths: the whole range shares the prefix that its first and last paths share, so the
    # split depth follows from one XOR instead of a descent through the chain, level by level.
    split = PATH_BITS - (first ^ last).bit_length()
    shift = _TOP_BIT - split
    mid = bisect_left(leaves, (last >> shift) << shift, lo, hi, key=_path_int_of)
    node = _inner(h, _build(h, leaves, lo, mid, split + 1), _build(h, leaves, mid, hi, split + 1))
    # The chain of one-child internal nodes from the split back up to ``depth``.
    for d in range(split - 1, depth - 1, -1):
        node = _inner(h, None, node) if first >> (_TOP_BIT - d) & 1 else _inner(h, node, None)
    return node


class _Batch:
    """One ``update`` call: the changes sorted by path, applied to the tree in one descent."""

    __slots__ = ("added", "h", "news", "paths")

    def __init__(self, h: HashFn, paths: list[int], news: list[_Leaf | None]) -> None:
        self.h = h
        self.paths = paths  # sorted path integers
        self.news = news  # the new leaf for each path, or None to delete it
        self.added = 0  # net change in the number of keys

    def apply(self, node: _Node, depth: int, base: int, lo: int, hi: int) -> _Node:
        """The canonical subtree replacing ``node`` (at ``depth``, prefix ``base``) once changes
        ``lo:hi`` are applied; ``node`` itself when nothing in it changes."""
        if hi - lo == 1:
            return self._apply_one(node, depth, lo)
        if node is not None and len(node) == _INNER_LEN:
            bit = 1 << (_TOP_BIT - depth)
            mid = bisect_left(self.paths, base | bit, lo, hi)
            left, right = node[_LEFT], node[_RIGHT]
            new_left = self.apply(left, depth + 1, base, lo, mid) if lo < mid else left
            new_right = self.apply(right, depth + 1, base | bit, mid, hi) if mid < hi else right
            if new_left is left and new_right is right:
                return node
            return _join(self.h, new_left, new_right)
        news = self.news
        merged: list[_Leaf]
        if node is None:
            merged = [leaf for leaf in news[lo:hi] if leaf is not None]
            self.added += len(merged)
            return _build(self.h, merged, 0, len(merged), depth)
        # A leaf, and several changes in its subtree: merge it into them and rebuild.
        old_path = node[_PATH_INT]
        pos = bisect_left(self.paths, old_path, lo, hi)
        merged = [leaf for leaf in news[lo:pos] if leaf is not None]
        added = len(merged)
        if pos < hi and self.paths[pos] == old_path:
            new = news[pos]
            if new is None:
                added -= 1
            else:
                # Same value: keep the old leaf, so that rewriting a value changes nothing.
                merged.append(node if new[_VALUE] == node[_VALUE] else new)
            pos += 1
        else:
            merged.append(node)
        tail = [leaf for leaf in news[pos:hi] if leaf is not None]
        added += len(tail)
        merged += tail
        self.added += added
        # When only the old leaf remains, _build returns it as it is.
        return _build(self.h, merged, 0, len(merged), depth)

    def _apply_one(self, top: _Node, depth: int, index: int) -> _Node:
        """``apply`` for the single change ``index``: a loop down and back up, no recursion.

        Below the first few levels every change is alone in its subtree, so this loop does most
        of a large batch's work; it is ``apply``'s logic specialised to one path.
        """
        h = self.h
        path_int = self.paths[index]
        new = self.news[index]
        parents: list[_Inner] = []
        node = top
        while node is not None and len(node) == _INNER_LEN:
            parents.append(node)
            node = node[_RIGHT] if path_int >> (_TOP_BIT - depth) & 1 else node[_LEFT]
            depth += 1
        replacement: _Node
        if node is None:
            if new is None:
                return top
            replacement = new
            self.added += 1
        elif node[_PATH_INT] == path_int:
            if new is None:
                replacement = None
                self.added -= 1
            elif new[_VALUE] == node[_VALUE]:
                return top
            else:
                replacement = new
        elif new is None:
            return top
        else:
            pair = [node, new] if node[_PATH_INT] < path_int else [new, node]
            replacement = _build(h, pair, 0, 2, depth)
            self.added += 1
        # Back up the path, copying each parent with its new child (a lone leaf moves up).
        for parent in reversed(parents):
            depth -= 1
            if path_int >> (_TOP_BIT - depth) & 1:
                replacement = _join(h, parent[_LEFT], replacement)
            else:
                replacement = _join(h, replacement, parent[_RIGHT])
        return replacement


class StateTree:
    """An immutable map from byte keys to byte values with a Merkle root and state proofs.

    ``update`` returns a new tree and leaves this one valid and unchanged.
    """

    __slots__ = ("_count", "_h", "_root")

    def __init__(self, h: HashFn) -> None:
        """The empty tree over hash function ``h`` (same as ``StateTree.empty(h)``)."""
        self._h = h
        self._root: _Node = None
        self._count = 0

    @classmethod
    def empty(cls, h: HashFn) -> StateTree:
        """The empty tree; its root is ``EMPTY``."""
        return cls(h)

    @classmethod
    def _of(cls, h: HashFn, root: _Node, count: int) -> StateTree:
        tree = cls(h)
        tree._root = root
        tree._count = count
        return tree

    @classmethod
    def from_items(cls, h: HashFn, items: Iterable[tuple[bytes, bytes]]) -> StateTree:
        """The tree holding exactly ``items`` (key, value), built bottom-up in one pass over the
        sorted paths (for reloading state from disk). Raises ``DuplicateStateKeyError`` if a key
        repeats. The result equals, root for root, any sequence of updates with these contents.
        """
        leaves: list[_Leaf] = []
        for key, value in items:
            _check_value(value)
            leaves.append(_leaf(h, key, value, h(key)))
        leaves.sort(key=_path_int_of)
        for i in range(1, len(leaves)):
            if leaves[i][_PATH_INT] == leaves[i - 1][_PATH_INT]:
                raise DuplicateStateKeyError(f"key {leaves[i][_KEY].hex()} appears twice")
        return cls._of(h, _build(h, leaves, 0, len(leaves), 0), len(leaves))

    @property
    def root(self) -> bytes:
        """The Merkle root: ``EMPTY`` for the empty tree."""
        return EMPTY if self._root is None else self._root[_HASH]

    def __len__(self) -> int:
        return self._count

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None if it is absent."""
        path_int = int.from_bytes(self._h(key), "big")
        node = self._root
        depth = 0
        while node is not None and len(node) == _INNER_LEN:
            node = node[_RIGHT] if path_int >> (_TOP_BIT - depth) & 1 else node[_LEFT]
            depth += 1
        if node is not None and node[_KEY] == key:
            return node[_VALUE]
        return None

    def update(self, changes: Mapping[bytes, bytes | None]) -> StateTree:
        """A new tree with ``changes`` applied: a value sets its key, None deletes it (deleting an
        absent key is a no-op). This tree is unchanged. Each touched node is rebuilt (and hashed)
        once, however many changes lie below it; returns ``self`` when nothing changes.
        """
        if not changes:
            return self
        h = self._h
        entries: list[tuple[int, _Leaf | None]] = []
        for key, value in changes.items():
            path = h(key)
            if value is None:
                entries.append((int.from_bytes(path, "big"), None))
            else:
                _check_value(value)
                leaf = _leaf(h, key, value, path)
                entries.append((leaf[_PATH_INT], leaf))
        # Sorted by path, the changes below any node form one contiguous run.
        entries.sort(key=itemgetter(0))
        batch = _Batch(h, [e[0] for e in entries], [e[1] for e in entries])
        root = batch.apply(self._root, 0, 0, 0, len(entries))
        if root is self._root:
            return self
        return StateTree._of(h, root, self._count + batch.added)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), in path order (the order of ``h(key)``)."""
        stack: list[_Node] = [self._root]
        while stack:
            node = stack.pop()
            if node is None:
                continue
            if len(node) == _INNER_LEN:
                stack.append(node[_RIGHT])
                stack.append(node[_LEFT])
            else:
                yield node[_KEY], node[_VALUE]

    def prove(self, key: bytes) -> StateProof:
        """A proof of ``key``'s value (or of its absence) against ``self.root``."""
        h = self._h
        path_int = int.from_bytes(h(key), "big")
        siblings: list[bytes] = []
        node = self._root
        depth = 0
        while node is not None and len(node) == _INNER_LEN:
            left, right = node[_LEFT], node[_RIGHT]
            if path_int >> (_TOP_BIT - depth) & 1:
                siblings.append(EMPTY if left is None else left[_HASH])
                node = right
            else:
                siblings.append(EMPTY if right is None else right[_HASH])
                node = left
            depth += 1
        if node is None:
            return StateProof(key, None, tuple(siblings))
        if node[_KEY] == key:
            return StateProof(key, node[_VALUE], tuple(siblings))
        other_path = node[_PATH_INT].to_bytes(HASH_SIZE, "big")
        return StateProof(key, None, tuple(siblings), other_path, h(node[_VALUE]))


def _check_value(value: object) -> None:
    # Checked on the way in, before anything is hashed or stored.
    if type(value) is not bytes:
        raise TypeError(f"state values are bytes, got {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Proofs


_PROOF_FIELDS = frozenset({"key", "value", "siblings", "other_path", "other_value_hash"})


@dataclass(frozen=True, slots=True)
class StateProof:
    """A claim ``key -> value`` (value None: ``key`` is absent) with the evidence for it.

    ``siblings`` are the hashes beside the key's path, from the root down to the depth where the
    walk ended. It ended at one of: the key's own leaf (membership); an empty subtree; or another
    key's leaf, given by ``other_path`` and ``other_value_hash`` (both absence proofs).

    Construction checks the shape (types, 32-byte hashes, at most 256 siblings, an other leaf only
    in an absence proof) and raises ``InvalidStateProofError``; ``verify_state_proof`` checks the
    rest.
    """

    key: bytes
    value: bytes | None
    siblings: tuple[bytes, ...]
    other_path: bytes | None = None
    other_value_hash: bytes | None = None

    def __post_init__(self) -> None:
        if type(self.key) is not bytes:
            raise InvalidStateProofError("key must be bytes")
        if self.value is not None and type(self.value) is not bytes:
            raise InvalidStateProofError("value must be bytes or None")
        if type(self.siblings) is not tuple:
            raise InvalidStateProofError("siblings must be a tuple")
        if len(self.siblings) > PATH_BITS:
            raise InvalidStateProofError(
                f"{len(self.siblings)} siblings: a path has only {PATH_BITS} levels"
            )
        for i, sibling in enumerate(self.siblings):
            if type(sibling) is not bytes or len(sibling) != HASH_SIZE:
                raise InvalidStateProofError(f"sibling {i} is not a {HASH_SIZE}-byte hash")
        if (self.other_path is None) != (self.other_value_hash is None):
            raise InvalidStateProofError("other_path and other_value_hash go together")
        if self.other_path is not None:
            if self.value is not None:
                raise InvalidStateProofError("a membership proof cannot end at another leaf")
            for name, field in (
                ("other_path", self.other_path),
                ("other_value_hash", self.other_value_hash),
            ):
                if type(field) is not bytes or len(field) != HASH_SIZE:
                    raise InvalidStateProofError(f"{name} is not a {HASH_SIZE}-byte hash")

    def to_bytes(self) -> bytes:
        """The deterministic CBOR encoding: a map keyed by field name (as ``codec.encode_struct``
        would write it)."""
        return encode(
            {
                "key": self.key,
                "value": self.value,
                "siblings": list(self.siblings),
                "other_path": self.other_path,
                "other_value_hash": self.other_value_hash,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> StateProof:
        """Decode ``to_bytes`` output strictly: canonical CBOR, exactly the five fields, right
        types and lengths; anything else raises ``InvalidStateProofError``. The result re-encodes
        to exactly ``data``, so distinct bytes never decode to the same proof.
        """
        try:
            # Depth 2 is all the shape needs: map -> siblings array -> hashes.
            obj = decode(data, max_size=max_size, max_depth=2)
        except CodecError as exc:
            raise InvalidStateProofError(f"not a canonical CBOR item: {exc}") from exc
        if not isinstance(obj, dict):
            raise InvalidStateProofError("a state proof is a CBOR map")
        fields = set(obj)
        if fields != _PROOF_FIELDS:
            missing = sorted(map(str, _PROOF_FIELDS - fields))
            extra = sorted(map(repr, fields - _PROOF_FIELDS))
            raise InvalidStateProofError(f"wrong fields: missing {missing}, unexpected {extra}")
        siblings = obj["siblings"]
        if not isinstance(siblings, list):
            raise InvalidStateProofError("siblings must be an array")
        proof = cls(
            key=obj["key"],
            value=obj["value"],
            siblings=tuple(siblings),
            other_path=obj["other_path"],
            other_value_hash=obj["other_value_hash"],
        )
        # The codec promises canonical input; re-encoding makes that promise ours too.
        if proof.to_bytes() != bytes(data):
            raise InvalidStateProofError("not the canonical encoding of the proof it decodes to")
        return proof


def verify_state_proof(h: HashFn, root: bytes, proof: StateProof) -> bytes | None:
    """Check ``proof`` against ``root``: return the proven value of ``proof.key`` (None: proven
    absent) or raise ``InvalidStateProofError`` saying which check failed.

    Sound for ``proof.key`` only: the walk follows ``h(proof.key)``, and a membership leaf hash
    commits to that path. Besides the root, it checks that an absence proof's other leaf sits on
    the key's path yet is not the key's own, and that the proof has the canonical shape (no
    empty sibling beside a leaf or an empty subtree, which an honest tree never has).
    """
    siblings = proof.siblings
    depth = len(siblings)
    path = h(proof.key)
    path_int = int.from_bytes(path, "big")
    if proof.value is not None:
        node = h(_LEAF_PREFIX + path + h(proof.value))
    elif proof.other_path is not None and proof.other_value_hash is not None:
        other_int = int.from_bytes(proof.other_path, "big")
        if other_int == path_int:
            raise InvalidStateProofError(
                "the other leaf has the key's own path: it would prove presence, not absence"
            )
        if (other_int ^ path_int) >> (PATH_BITS - depth):
            raise InvalidStateProofError(
                f"the other leaf is off the key's path: the paths differ within {depth} bits"
            )
        node = h(_LEAF_PREFIX + proof.other_path + proof.other_value_hash)
    else:
        node = EMPTY
    if depth and siblings[-1] == EMPTY:
        # A leaf beside an empty subtree would have moved up; two empty children make an empty
        # parent. An honest tree never has either, so such a proof is malformed.
        raise InvalidStateProofError("non-canonical proof: the last sibling is an empty subtree")
    for d in range(depth - 1, -1, -1):
        if path_int >> (_TOP_BIT - d) & 1:
            node = h(_NODE_PREFIX + siblings[d] + node)
        else:
            node = h(_NODE_PREFIX + node + siblings[d])
    if node != root:
        raise InvalidStateProofError("root mismatch: the proof does not lead to the given root")
    return proof.value


__all__ = [
    "EMPTY",
    "HASH_SIZE",
    "PATH_BITS",
    "DuplicateStateKeyError",
    "InvalidStateProofError",
    "StateProof",
    "StateTree",
    "StateTreeError",
    "verify_state_proof",
]
