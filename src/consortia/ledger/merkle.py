"""RFC 6962 / RFC 9162 Merkle trees: roots, an append-only log, and inclusion/consistency proofs.

The tree over leaves ``d[0..n)`` is the one RFC 9162 §2.1.1 defines:

    MTH({})       = HASH()
    MTH({d0})     = HASH(0x00 || d0)                           leaf hash
    MTH(D[n])     = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of two < n

The 0x00/0x01 prefixes separate leaves from interior nodes, so no leaf can pose as a subtree (the
second-preimage attack on unprefixed Merkle trees).

The hash function is a parameter (``HashFn``: bytes -> 32 bytes) because each chain's crypto
suite chooses it (SHA-256 or SM3); this module therefore depends on nothing but the standard
library, so an outside auditor can check a proof with it alone.

Guarantees:
- ``merkle_root``, ``MerkleLog.root`` and the proofs all describe the same tree for the same leaves.
- ``verify_inclusion``/``verify_consistency`` follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step,
  return ``None`` on success and raise ``InvalidProofError`` naming the first check that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

HashFn = Callable[[bytes], bytes]
"""A hash function of the chain's suite: any bytes in, exactly ``HASH_SIZE`` bytes out."""

HASH_SIZE = 32

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleError(ValueError):
    """Base class of the Merkle tree errors."""


class InvalidProofError(MerkleError):
    """An inclusion or consistency proof does not prove what it claims."""


class TreeRangeError(MerkleError):
    """A log was asked about a leaf index or tree size it does not hold."""


def leaf_hash(h: HashFn, data: bytes) -> bytes:
    """Return the RFC 6962 hash of one leaf: ``h(0x00 || data)``."""
    return h(_LEAF_PREFIX + data)


def node_hash(h: HashFn, left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 hash of an interior node: ``h(0x01 || left || right)``."""
    return h(_NODE_PREFIX + left + right)


def merkle_root(h: HashFn, leaves: Sequence[bytes]) -> bytes:
    """Return MTH of the raw leaf data ``leaves``; the empty tree's root is ``h(b"")``.

    Computed level by level: pairing neighbours and promoting an odd last node unchanged builds
    exactly RFC 6962's left-heavy tree, with n - 1 node hashes and no recursion.
    """
    if not leaves:
        return h(b"")
    level = [h(_LEAF_PREFIX + d) for d in leaves]
    while len(level) > 1:
        paired = [h(_NODE_PREFIX + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n >= 2): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleLog:
    """An append-only Merkle log that can prove inclusion and consistency for any past size.

    It keeps, per level ``l``, the hash of every *complete* subtree of ``2**l`` leaves aligned on a
    multiple of ``2**l``. Those hashes never change once written, so an append costs amortized
    O(1) hashes, and the root of any past size is a fold of at most log2(n) stored hashes.
    Memory: about two hashes per leaf.
    """

    __slots__ = ("_h", "_levels")

    def __init__(self, h: HashFn, leaves: Iterable[bytes] = ()) -> None:
        self._h = h
        # _levels[0] holds the leaf hashes; _levels[l][i] = MTH of leaves [i * 2**l, (i+1) * 2**l).
        self._levels: list[list[bytes]] = [[]]
        for data in leaves:
            self.append(data)

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Append a leaf holding ``data``; return its index."""
        return self.append_leaf_hash(self._h(_LEAF_PREFIX + data))

    def append_leaf_hash(self, leaf: bytes) -> int:
        """Append a leaf given its leaf hash (``leaf_hash(h, data)``); return its index."""
        if len(leaf) != HASH_SIZE:
            raise TreeRangeError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
        h = self._h
        levels = self._levels
        index = len(levels[0])
        levels[0].append(leaf)
        # Each trailing zero bit of the new size is a subtree this leaf has just completed.
        level = 0
        n = index + 1
        while not n & 1:
            row = levels[level]
            node = h(_NODE_PREFIX + row[-2] + row[-1])
            level += 1
            if level == len(levels):
                levels.append([])
            levels[level].append(node)
            n >>= 1
        return index

    def leaf_hash(self, index: int) -> bytes:
        """Return the stored leaf hash at ``index``."""
        self._check_index(index, self.size)
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """Return MTH of the first ``size`` leaves (default: all of them)."""
        if size is None:
            size = self.size
        self._check_size(size)
        if size == 0:
            return self._h(b"")
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Return PATH(index, D[size]) (RFC 9162 §2.1.3.1), the sibling nearest the leaf first."""
        self._check_size(size)
        self._check_index(index, size)
        proof: list[bytes] = []
        start, end = 0, size
        # Walk down from the root, taking the subtree that holds the leaf; the other half is the
        # sibling at this level. The RFC lists siblings bottom-up, hence the final reverse.
        while end - start > 1:
            mid = start + _split(end - start)
            if index < mid:
                proof.append(self._range_hash(mid, end))
                end = mid
            else:
                proof.append(self._range_hash(start, mid))
                start = mid
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Return PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1).

        Empty when ``size1 == size2`` or ``size1 == 0`` (the empty tree is a prefix of every tree).
        """
        self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise TreeRangeError(f"need 0 <= size1 <= size2, got size1={size1}, size2={size2}")
        proof: list[bytes] = []
        if size1 == 0:
            return proof
        # SUBPROOF(m, D[start:end], b) unrolled: m counts the old leaves inside [start, end);
        # ``complete`` is b, true while [start, end) is still a left edge of the old tree.
        start, end, m, complete = 0, size2, size1, True
        while m != end - start:
            mid = start + _split(end - start)
            if m <= mid - start:
                proof.append(self._range_hash(mid, end))
                end = mid
            else:
                proof.append(self._range_hash(start, mid))
                m -= mid - start
                start = mid
                complete = False
        if not complete:
            proof.append(self._range_hash(start, end))
        proof.reverse()
        return proof

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), for ranges RFC 6962's recursion produces.

        Such a range (end > start) starts on a multiple of the smallest power of two >= its
        length, so it splits into complete aligned subtrees of sizes given by the bits of
        ``end - start``, largest first; its hash nests them to the right.
        """
        levels = self._levels
        n = end - start
        chunks: list[bytes] = []
        pos = start
        for level in range(n.bit_length() - 1, -1, -1):
            if n >> level & 1:
                chunks.append(levels[level][pos >> level])
                pos += 1 << level
        h = self._h
        acc = chunks[-1]
        for i in range(len(chunks) - 2, -1, -1):
            acc = h(_NODE_PREFIX + chunks[i] + acc)
        return acc

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise TreeRangeError(f"tree size {size} is outside 0..{self.size}")

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise TreeRangeError(f"leaf index {index} is outside 0..{size - 1}")


def _check_elements(proof: Sequence[bytes]) -> None:
    for i, element in enumerate(proof):
        if len(element) != HASH_SIZE:
            raise InvalidProofError(
                f"proof element {i} is {len(element)} bytes, expected {HASH_SIZE}"
            )


def _inclusion_proof_length(index: int, size: int) -> int:
    """The exact length of PATH(index, D[size]).

    Below the highest bit where ``index`` and ``size - 1`` differ, the leaf's path runs through
    full subtrees, one sibling per level; above it the path follows the tree's right border,
    where a level has a sibling only where ``index`` has a 1 bit (a left neighbour).
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


# Positional parameters in RFC 9162's order, so call sites read like the specification.
def verify_inclusion(
    h: HashFn, leaf_data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` of the tree of ``size`` leaves with root ``root`` holds
    ``leaf_data``; return ``None`` or raise ``InvalidProofError``."""
    verify_inclusion_hash(h, h(_LEAF_PREFIX + leaf_data), index, size, proof, root)


def verify_inclusion_hash(
    h: HashFn, leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """As ``verify_inclusion``, given the leaf hash instead of the leaf data.

    RFC 9162 §2.1.3.2, after checking the proof's exact length so that errors say what is wrong.
    """
    if not 0 <= index < size:
        raise InvalidProofError(f"leaf index {index} is out of range for tree size {size}")
    expected = _inclusion_proof_length(index, size)
    if len(proof) != expected:
        raise InvalidProofError(
            f"wrong proof length: index {index} in size {size} needs {expected} hashes, "
            f"got {len(proof)}"
        )
    _check_elements(proof)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise InvalidProofError("proof has more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            r = h(_NODE_PREFIX + p + r)
            # On the right border, levels where this node has no sibling are skipped.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = h(_NODE_PREFIX + r + p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("proof has fewer hashes than the tree has levels")
    if r != root:
        raise InvalidProofError("root mismatch: the proof does not lead to the given root")


def _consistency_proof_length(size1: int, size2: int) -> int:
    """The exact length of PROOF(size1, D[size2]) for 0 < size1 < size2.

    The old tree's last leaf ``size1 - 1`` is proven in the new tree from the level where its
    complete subtree of 2**shift leaves starts; that subtree's hash is sent unless it is the whole
    old tree (size1 a power of two), in which case the verifier already has it as root1.
    """
    shift = ((size1 & -size1).bit_length()) - 1  # trailing zero bits of size1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    seed = 0 if size1 == 1 << shift else 1
    return seed + (inner - shift) + border


def verify_consistency(
    h: HashFn, size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``size1`` leaves with root ``root1`` is a prefix of the tree of
    ``size2`` leaves with root ``root2``; return ``None`` or raise ``InvalidProofError``.

    RFC 9162 §2.1.4.2, after the cases it leaves to the caller: equal sizes need an empty proof
    and equal roots; size1 == 0 needs an empty proof and the empty tree's root as ``root1``.
    """
    if size1 < 0 or size2 < 0:
        raise InvalidProofError(f"tree sizes must not be negative, got {size1} and {size2}")
    if size1 > size2:
        raise InvalidProofError(f"size1 {size1} > size2 {size2}: a log cannot shrink")
    if size1 in (size2, 0):
        if proof:
            raise InvalidProofError(
                f"wrong proof length: sizes {size1} -> {size2} need 0 hashes, got {len(proof)}"
            )
        if size1 == size2 and root1 != root2:
            raise InvalidProofError("root mismatch: equal sizes with different roots")
        if size1 == 0 and root1 != h(b""):
            raise InvalidProofError("root mismatch: root1 is not the empty tree's root")
        return
    expected = _consistency_proof_length(size1, size2)
    if len(proof) != expected:
        raise InvalidProofError(
            f"wrong proof length: sizes {size1} -> {size2} need {expected} hashes, got {len(proof)}"
        )
    _check_elements(proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # The old tree is one complete subtree of the new one: its root is the first hash.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProofError("proof has more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            fr = h(_NODE_PREFIX + c + fr)
            sr = h(_NODE_PREFIX + c + sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = h(_NODE_PREFIX + sr + c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("proof has fewer hashes than the tree has levels")
    if fr != root1:
        raise InvalidProofError("root mismatch: the proof does not lead to root1")
    if sr != root2:
        raise InvalidProofError("root mismatch: the proof does not lead to root2")


__all__ = [
    "HASH_SIZE",
    "HashFn",
    "InvalidProofError",
    "MerkleError",
    "MerkleLog",
    "TreeRangeError",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_hash",
]
