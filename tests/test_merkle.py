"""RFC 6962 Merkle trees: published vectors, every rejection case, and properties against the RFC's
recursive definitions."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.ledger.merkle import (
    HashFn,
    InvalidProofError,
    MerkleLog,
    TreeRangeError,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)
from tests.conftest import load_vector


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha3_256(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


VECTORS = load_vector("rfc6962_merkle.json")
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves_hex"]]
ROOTS = {int(size): bytes.fromhex(root) for size, root in VECTORS["roots_by_size"].items()}
PROOF_3_8 = MerkleLog(sha256, LEAVES).consistency_proof(3, 8)


# ---------------------------------------------------------------------------------------------
# The RFC 9162 §2.1 definitions, written recursively and independently of the implementation.


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root(h: HashFn, d: Sequence[bytes]) -> bytes:
    if not d:
        return h(b"")
    if len(d) == 1:
        return h(b"\x00" + d[0])
    k = _k(len(d))
    return h(b"\x01" + ref_root(h, d[:k]) + ref_root(h, d[k:]))


def ref_path(h: HashFn, m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(h, m, d[:k]), ref_root(h, d[k:])]
    return [*ref_path(h, m - k, d[k:]), ref_root(h, d[:k])]


def ref_subproof(h: HashFn, m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_root(h, d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(h, m, d[:k], b), ref_root(h, d[k:])]
    return [*ref_subproof(h, m - k, d[k:], False), ref_root(h, d[:k])]


def ref_consistency(h: HashFn, m: int, d: Sequence[bytes]) -> list[bytes]:
    return [] if m in (0, len(d)) else ref_subproof(h, m, d, True)


# ---------------------------------------------------------------------------------------------
# Published vectors


def test_leaf_hashes_match_vectors() -> None:
    expected = [bytes.fromhex(x) for x in VECTORS["leaf_hashes"]]
    assert [leaf_hash(sha256, d) for d in LEAVES] == expected
    log = MerkleLog(sha256, LEAVES)
    assert [log.leaf_hash(i) for i in range(len(LEAVES))] == expected


@pytest.mark.parametrize("size", range(9))
def test_roots_match_vectors_for_every_size(size: int) -> None:
    log = MerkleLog(sha256, LEAVES)
    assert merkle_root(sha256, LEAVES[:size]) == ROOTS[size]
    assert log.root(size) == ROOTS[size]
    assert ref_root(sha256, LEAVES[:size]) == ROOTS[size]
    assert MerkleLog(sha256, LEAVES[:size]).root() == ROOTS[size]


def test_empty_root_is_hash_of_nothing() -> None:
    assert merkle_root(sha256, []) == sha256(b"") == MerkleLog(sha256).root()


@pytest.mark.parametrize("vec", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['leaf_index']}")
def test_inclusion_proof_vectors(vec: dict[str, Any]) -> None:
    index, size = vec["leaf_index"], vec["tree_size"]
    path = [bytes.fromhex(x) for x in vec["path"]]
    assert MerkleLog(sha256, LEAVES).inclusion_proof(index, size) == path
    verify_inclusion(sha256, LEAVES[index], index, size, path, ROOTS[size])
    verify_inclusion_hash(sha256, leaf_hash(sha256, LEAVES[index]), index, size, path, ROOTS[size])


@pytest.mark.parametrize("vec", VECTORS["consistency_proofs"], ids=lambda v: f"{v['size1']}")
def test_consistency_proof_vectors(vec: dict[str, Any]) -> None:
    size1, size2 = vec["size1"], vec["size2"]
    proof = [bytes.fromhex(x) for x in vec["proof"]]
    assert MerkleLog(sha256, LEAVES).consistency_proof(size1, size2) == proof
    verify_consistency(sha256, size1, size2, ROOTS[size1], ROOTS[size2], proof)


# ---------------------------------------------------------------------------------------------
# Every rejection case the vectors' "must_reject" lists, for the published proofs and for every
# proof of the 8-leaf tree.

Check = Callable[[], None]


def _bit_flips(proof: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    for i, element in enumerate(proof):
        for bit in range(len(element) * 8):
            flipped = bytearray(element)
            flipped[bit // 8] ^= 0x80 >> (bit % 8)
            yield f"bit {bit} of element {i}", [*proof[:i], bytes(flipped), *proof[i + 1 :]]


def _element_changes(proof: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    junk = sha256(b"extra")
    yield "extra element at the end", [*proof, junk]
    yield "extra element at the start", [junk, *proof]
    yield "last element repeated", [*proof, *proof[-1:]] if proof else [junk]
    if proof:
        yield "first element missing", proof[1:]
        yield "last element missing", proof[:-1]
        yield "no elements", []
        yield "an element truncated", [proof[0][:31], *proof[1:]]
    yield from _bit_flips(proof)


def inclusion_rejections(
    index: int, size: int, proof: list[bytes], root: bytes
) -> Iterator[tuple[str, Check]]:
    leaf = LEAVES[index]

    def check(
        leaf: bytes = leaf,
        index: int = index,
        size: int = size,
        proof: list[bytes] = proof,
        root: bytes = root,
    ) -> Check:
        return lambda: verify_inclusion(sha256, leaf, index, size, proof, root)

    yield "index + 1", check(index=index + 1)
    yield "index - 1", check(index=index - 1)
    yield "size doubled", check(size=size * 2)
    yield "size halved", check(size=size // 2)
    yield "wrong leaf", check(leaf=leaf + b"\x00")
    yield "another leaf", check(leaf=LEAVES[(index + 1) % len(LEAVES)])
    yield "leaf hash as leaf data", check(leaf=leaf_hash(sha256, leaf))
    yield "empty root", check(root=b"")
    yield "random root", check(root=random.Random(index).randbytes(32))
    yield "root of another size", check(root=ROOTS[size - 1])
    for what, changed in _element_changes(proof):
        yield what, check(proof=changed)


def consistency_rejections(
    size1: int, size2: int, proof: list[bytes]
) -> Iterator[tuple[str, Check]]:
    root1, root2 = ROOTS[size1], ROOTS[size2]

    def check(
        size1: int = size1,
        size2: int = size2,
        root1: bytes = root1,
        root2: bytes = root2,
        proof: list[bytes] = proof,
    ) -> Check:
        return lambda: verify_consistency(sha256, size1, size2, root1, root2, proof)

    yield "size1 doubled", check(size1=size1 * 2)
    yield "size1 halved", check(size1=size1 // 2)
    yield "size2 doubled", check(size2=size2 * 2)
    yield "size2 halved", check(size2=size2 // 2)
    yield "size1 > size2", check(size1=size2, size2=size1)
    yield "size1 > size2 (by one)", check(size1=size2 + 1)
    yield "swapped roots", check(root1=root2, root2=root1)
    yield "empty root1", check(root1=b"")
    yield "empty root2", check(root2=b"")
    yield "random root1", check(root1=random.Random(size1).randbytes(32))
    yield "random root2", check(root2=random.Random(size2).randbytes(32))
    yield "root1 of another size", check(root1=ROOTS[size1 - 1])
    yield "root2 of another size", check(root2=ROOTS[size2 - 1])
    for what, changed in _element_changes(proof):
        yield what, check(proof=changed)


def _assert_all_rejected(cases: Iterator[tuple[str, Check]]) -> int:
    count = 0
    for what, verify in cases:
        with pytest.raises(InvalidProofError):
            verify()
            pytest.fail(f"accepted: {what}")
        count += 1
    return count


@pytest.mark.parametrize("vec", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['leaf_index']}")
def test_vector_inclusion_proofs_reject_every_listed_tampering(vec: dict[str, Any]) -> None:
    index, size = vec["leaf_index"], vec["tree_size"]
    path = [bytes.fromhex(x) for x in vec["path"]]
    n = _assert_all_rejected(inclusion_rejections(index, size, path, ROOTS[size]))
    assert n > 256 * len(path)  # every bit of every element was flipped


@pytest.mark.parametrize("vec", VECTORS["consistency_proofs"], ids=lambda v: f"{v['size1']}")
def test_vector_consistency_proofs_reject_every_listed_tampering(vec: dict[str, Any]) -> None:
    size1, size2 = vec["size1"], vec["size2"]
    proof = [bytes.fromhex(x) for x in vec["proof"]]
    n = _assert_all_rejected(consistency_rejections(size1, size2, proof))
    assert n > 256 * len(proof)


@pytest.mark.parametrize("size", range(1, 9))
def test_every_inclusion_proof_of_the_vector_tree_rejects_tampering(size: int) -> None:
    log = MerkleLog(sha256, LEAVES)
    for index in range(size):
        proof = log.inclusion_proof(index, size)
        verify_inclusion(sha256, LEAVES[index], index, size, proof, ROOTS[size])
        _assert_all_rejected(inclusion_rejections(index, size, proof, ROOTS[size]))


@pytest.mark.parametrize("size2", range(2, 9))
def test_every_consistency_proof_of_the_vector_tree_rejects_tampering(size2: int) -> None:
    log = MerkleLog(sha256, LEAVES)
    for size1 in range(1, size2):
        proof = log.consistency_proof(size1, size2)
        verify_consistency(sha256, size1, size2, ROOTS[size1], ROOTS[size2], proof)
        _assert_all_rejected(consistency_rejections(size1, size2, proof))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: verify_inclusion(sha256, b"", 8, 8, [], ROOTS[8]), "out of range"),
        (lambda: verify_inclusion(sha256, b"", -1, 8, [], ROOTS[8]), "out of range"),
        (lambda: verify_inclusion(sha256, b"", 0, 0, [], ROOTS[0]), "out of range"),
        (lambda: verify_inclusion(sha256, b"", 0, 8, [], ROOTS[8]), "wrong proof length"),
        (lambda: verify_inclusion(sha256, b"", 0, 1, [], ROOTS[2]), "root mismatch"),
        (lambda: verify_inclusion(sha256, b"", 0, 2, [b"x"], ROOTS[2]), "element 0 is 1 bytes"),
        (lambda: verify_consistency(sha256, 3, 2, ROOTS[3], ROOTS[2], []), "size1 3 > size2 2"),
        (lambda: verify_consistency(sha256, -1, 2, ROOTS[0], ROOTS[2], []), "negative"),
        (lambda: verify_consistency(sha256, 2, 2, ROOTS[2], ROOTS[3], []), "root mismatch"),
        (lambda: verify_consistency(sha256, 2, 2, ROOTS[2], ROOTS[2], [b""]), "proof length"),
        (lambda: verify_consistency(sha256, 0, 2, ROOTS[1], ROOTS[2], []), "empty tree"),
        (lambda: verify_consistency(sha256, 0, 2, ROOTS[0], ROOTS[2], [ROOTS[1]]), "length"),
        (lambda: verify_consistency(sha256, 1, 2, ROOTS[1], ROOTS[2], []), "wrong proof length"),
        (
            lambda: verify_consistency(sha256, 3, 8, ROOTS[2], ROOTS[8], PROOF_3_8),
            "root1",
        ),
        (
            lambda: verify_consistency(sha256, 1, 2, ROOTS[1], ROOTS[1], [leaf_hash(sha256, b"")]),
            "root2",
        ),
    ],
)
def test_rejections_say_what_is_wrong(call: Check, message: str) -> None:
    with pytest.raises(InvalidProofError, match=message):
        call()


def test_trivial_consistency_cases_verify() -> None:
    verify_consistency(sha256, 0, 0, ROOTS[0], ROOTS[0], [])
    verify_consistency(sha256, 0, 5, ROOTS[0], ROOTS[5], [])
    verify_consistency(sha256, 5, 5, ROOTS[5], ROOTS[5], [])
    log = MerkleLog(sha256, LEAVES)
    assert log.consistency_proof(0, 8) == []
    assert log.consistency_proof(8, 8) == []


def test_log_refuses_what_it_does_not_hold() -> None:
    log = MerkleLog(sha256, LEAVES[:5])
    for call in (
        lambda: log.root(6),
        lambda: log.root(-1),
        lambda: log.inclusion_proof(5, 5),
        lambda: log.inclusion_proof(0, 6),
        lambda: log.inclusion_proof(-1, 5),
        lambda: log.consistency_proof(4, 3),
        lambda: log.consistency_proof(2, 6),
        lambda: log.leaf_hash(5),
        lambda: log.append_leaf_hash(b"short"),
    ):
        with pytest.raises(TreeRangeError):
            call()
    assert log.size == 5


def test_append_returns_indices_and_accepts_leaf_hashes() -> None:
    log = MerkleLog(sha256)
    assert [log.append(d) for d in LEAVES[:4]] == [0, 1, 2, 3]
    assert log.append_leaf_hash(leaf_hash(sha256, LEAVES[4])) == 4
    assert log.size == 5
    assert log.root() == ROOTS[5]
    assert node_hash(sha256, log.leaf_hash(0), log.leaf_hash(1)) == log.root(2)


# ---------------------------------------------------------------------------------------------
# Properties


leaf_lists = st.lists(st.binary(max_size=12), max_size=40)


@given(leaf_lists)
def test_log_roots_match_merkle_root_and_the_recursive_definition(leaves: list[bytes]) -> None:
    log = MerkleLog(sha256)
    for data in leaves:
        log.append(data)
    for size in range(len(leaves) + 1):
        expected = ref_root(sha256, leaves[:size])
        assert merkle_root(sha256, leaves[:size]) == expected
        assert log.root(size) == expected


@given(leaf_lists)
def test_every_inclusion_proof_verifies(leaves: list[bytes]) -> None:
    log = MerkleLog(sha256, leaves)
    for size in range(1, len(leaves) + 1):
        root = log.root(size)
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert proof == ref_path(sha256, index, leaves[:size])
            verify_inclusion(sha256, leaves[index], index, size, proof, root)


@given(leaf_lists)
@settings(max_examples=60)
def test_every_consistency_proof_verifies(leaves: list[bytes]) -> None:
    log = MerkleLog(sha256, leaves)
    roots = [log.root(size) for size in range(len(leaves) + 1)]
    for size2 in range(len(leaves) + 1):
        for size1 in range(size2 + 1):
            proof = log.consistency_proof(size1, size2)
            assert proof == ref_consistency(sha256, size1, leaves[:size2])
            verify_consistency(sha256, size1, size2, roots[size1], roots[size2], proof)


@given(st.lists(st.binary(max_size=4), min_size=2, max_size=40, unique=True), st.data())
def test_a_flipped_bit_anywhere_breaks_a_proof(leaves: list[bytes], data: st.DataObject) -> None:
    log = MerkleLog(sha256, leaves)
    size2 = data.draw(st.integers(2, len(leaves)))
    size1 = data.draw(st.integers(1, size2 - 1))
    index = data.draw(st.integers(0, size2 - 1))

    def inclusion(p: list[bytes]) -> None:
        verify_inclusion(sha256, leaves[index], index, size2, p, log.root(size2))

    def consistency(p: list[bytes]) -> None:
        verify_consistency(sha256, size1, size2, log.root(size1), log.root(size2), p)

    for proof, verify in (
        (log.inclusion_proof(index, size2), inclusion),
        (log.consistency_proof(size1, size2), consistency),
    ):
        if not proof:
            continue
        verify(proof)
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        flipped = bytearray(proof[i])
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidProofError):
            verify([*proof[:i], bytes(flipped), *proof[i + 1 :]])


@given(leaf_lists)
@settings(max_examples=30)
def test_hash_function_is_a_parameter(leaves: list[bytes]) -> None:
    log = MerkleLog(sha3_256, leaves)
    assert log.root() == ref_root(sha3_256, leaves) == merkle_root(sha3_256, leaves)
    if leaves:
        assert log.root() != merkle_root(sha256, leaves)
        last = len(leaves) - 1
        proof = log.inclusion_proof(last, len(leaves))
        verify_inclusion(sha3_256, leaves[last], last, len(leaves), proof, log.root())
        with pytest.raises(InvalidProofError):
            verify_inclusion(sha256, leaves[last], last, len(leaves), proof, log.root())
