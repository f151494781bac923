"""The authenticated state tree against a plain dict model: contents, canonical roots, persistence,
and state proofs that verify for the truth and never for a tampered claim."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia import codec
from consortia.ledger.merkle import HashFn
from consortia.ledger.state_tree import (
    EMPTY,
    DuplicateStateKeyError,
    InvalidStateProofError,
    StateProof,
    StateTree,
    verify_state_proof,
)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha3_256(data: bytes) -> bytes:
    # Stands in for SM3: another 256-bit hash, to show the tree takes h as a parameter.
    return hashlib.sha3_256(data).digest()


def path_is_key(data: bytes) -> bytes:
    """A "hash" under which a 32-byte key is its own path, so tests can choose paths that share
    long prefixes (chains down to depth 256). Structure only: not collision resistant."""
    return data if len(data) == 32 else sha256(data)


HASHES = [sha256, sha3_256]
HASH_IDS = ["sha256", "sha3_256"]


# ---------------------------------------------------------------------------------------------
# The specification, written directly: split the sorted paths bit by bit, one level at a time.


def reference_root(h: HashFn, contents: Mapping[bytes, bytes]) -> bytes:
    leaves = sorted((int.from_bytes(h(k), "big"), h(k), h(v)) for k, v in contents.items())

    def subtree(entries: list[tuple[int, bytes, bytes]], depth: int) -> bytes:
        if not entries:
            return bytes(32)
        if len(entries) == 1:
            _, path, value_hash = entries[0]
            return h(b"\x00" + path + value_hash)
        left = [e for e in entries if not e[0] >> (255 - depth) & 1]
        right = [e for e in entries if e[0] >> (255 - depth) & 1]
        return h(b"\x01" + subtree(left, depth + 1) + subtree(right, depth + 1))

    return subtree(leaves, 0)


def check_against_model(tree: StateTree, model: Mapping[bytes, bytes], h: HashFn) -> None:
    """Everything observable about ``tree`` agrees with the dict ``model``."""
    assert len(tree) == len(model)
    items = list(tree.items())
    assert dict(items) == model
    paths = [h(k) for k, _ in items]
    assert paths == sorted(paths)
    for key, value in model.items():
        assert tree.get(key) == value
    assert tree.root == reference_root(h, model)
    assert tree.root == StateTree.from_items(h, model.items()).root


def check_proof(h: HashFn, tree: StateTree, key: bytes, expected: bytes | None) -> StateProof:
    proof = tree.prove(key)
    assert proof.key == key
    assert verify_state_proof(h, tree.root, proof) == expected
    decoded = StateProof.from_bytes(proof.to_bytes())
    assert decoded == proof
    assert verify_state_proof(h, tree.root, decoded) == expected
    return proof


def assert_tampering_never_forges(
    h: HashFn, root: bytes, proof: StateProof, truth: Callable[[bytes], bytes | None]
) -> int:
    """Flip every byte of the encoded proof (xor 0x01, then xor 0xFF). Each tampered proof must
    fail to decode or to verify; the only other outcome allowed is a *true* claim about a
    *different* key (an absence proof can also prove that a key with the same path prefix is
    absent). It must never verify as a proof about the original key. Returns how many of the
    tampered proofs were rejected outright."""
    data = proof.to_bytes()
    rejected = 0
    for i in range(len(data)):
        for mask in (0x01, 0xFF):
            tampered = data[:i] + bytes((data[i] ^ mask,)) + data[i + 1 :]
            try:
                forged = StateProof.from_bytes(tampered)
                claim = verify_state_proof(h, root, forged)
            except InvalidStateProofError:
                rejected += 1
                continue
            assert forged.key != proof.key, f"byte {i} ^ {mask:#x} still verifies for the key"
            assert claim == truth(forged.key), f"byte {i} ^ {mask:#x} proves a false claim"
    return rejected


# ---------------------------------------------------------------------------------------------
# Hypothesis: random update sequences against a dict

keys = st.binary(max_size=3)  # a small key space, so updates and deletes hit existing keys
values = st.binary(max_size=6)
batches = st.lists(st.dictionaries(keys, st.none() | values, max_size=8), max_size=12)


@pytest.mark.parametrize("h", HASHES, ids=HASH_IDS)
@given(batches=batches)
@settings(max_examples=150)
def test_updates_match_a_dict_and_old_versions_stay_valid(
    h: HashFn, batches: list[dict[bytes, bytes | None]]
) -> None:
    tree = StateTree.empty(h)
    model: dict[bytes, bytes] = {}
    versions: list[tuple[StateTree, dict[bytes, bytes], bytes]] = [(tree, {}, tree.root)]
    for batch in batches:
        tree = tree.update(batch)
        for key, value in batch.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        check_against_model(tree, model, h)
        for key in batch:
            assert tree.get(key) == model.get(key)
        versions.append((tree, dict(model), tree.root))
    # Persistence: every earlier version still holds exactly what it held.
    for old, old_model, old_root in versions:
        assert old.root == old_root
        check_against_model(old, old_model, h)


@given(
    contents=st.dictionaries(keys, values, max_size=24),
    extra=st.dictionaries(keys, values, max_size=6),
    data=st.data(),
)
def test_root_depends_only_on_contents(
    contents: dict[bytes, bytes], extra: dict[bytes, bytes], data: st.DataObject
) -> None:
    h = sha256
    expected = reference_root(h, contents)
    all_at_once = StateTree.empty(h).update(contents)
    assert all_at_once.root == expected
    # One key at a time, in an arbitrary order.
    order = data.draw(st.permutations(list(contents)))
    one_by_one = StateTree.empty(h)
    for key in order:
        one_by_one = one_by_one.update({key: contents[key]})
    assert one_by_one.root == expected
    # In arbitrary chunks, after first writing (and then deleting or overwriting) other keys.
    noisy = StateTree.empty(h).update({**extra, **contents})
    cleanup: dict[bytes, bytes | None] = {k: None for k in extra if k not in contents}
    cleanup.update({k: contents[k] for k in extra if k in contents})
    noisy = noisy.update(cleanup)
    assert noisy.root == expected
    chunked = StateTree.empty(h)
    cut = data.draw(st.integers(0, len(order)))
    chunked = chunked.update({k: contents[k] for k in order[:cut]})
    chunked = chunked.update({k: contents[k] for k in order[cut:]})
    assert chunked.root == expected
    assert StateTree.from_items(h, reversed(list(contents.items()))).root == expected


@pytest.mark.parametrize("h", HASHES, ids=HASH_IDS)
@given(contents=st.dictionaries(keys, values, max_size=30), absent=st.lists(keys, max_size=10))
def test_proofs_verify_for_present_and_absent_keys(
    h: HashFn, contents: dict[bytes, bytes], absent: list[bytes]
) -> None:
    tree = StateTree.from_items(h, contents.items())
    for key, value in contents.items():
        proof = check_proof(h, tree, key, value)
        # The same evidence must not verify for another key, except as a true statement.
        for other in [*list(contents)[:3], *absent[:3]]:
            if other != key:
                with pytest.raises(InvalidStateProofError):
                    verify_state_proof(h, tree.root, dataclasses.replace(proof, key=other))
    for key in absent:
        if key in contents:
            continue
        proof = check_proof(h, tree, key, None)
        for other in [*list(contents)[:3], *absent[:3]]:
            try:
                claim = verify_state_proof(h, tree.root, dataclasses.replace(proof, key=other))
            except InvalidStateProofError:
                continue
            assert claim == contents.get(other)
        if contents:
            # A proof is only good for the root it was made for.
            with pytest.raises(InvalidStateProofError):
                verify_state_proof(h, StateTree.empty(h).root, proof)


@given(contents=st.dictionaries(keys, values, min_size=1, max_size=20), probe=keys)
@settings(max_examples=40)
def test_tampered_proofs_never_verify_for_their_key(
    contents: dict[bytes, bytes], probe: bytes
) -> None:
    tree = StateTree.from_items(sha256, contents.items())
    for key in (next(iter(contents)), probe):
        proof = tree.prove(key)
        assert_tampering_never_forges(sha256, tree.root, proof, contents.get)


# Paths chosen to share long prefixes: the last bit, the last byte, the first byte differ...
_BASE = bytes(range(32))
_CHOSEN_PATHS = [
    _BASE,
    _BASE[:31] + bytes((_BASE[31] ^ 0x01,)),  # differs only in bit 255: leaves at depth 256
    _BASE[:31] + bytes((_BASE[31] ^ 0x80,)),
    _BASE[:16] + bytes((_BASE[16] ^ 0x40,)) + _BASE[17:],
    bytes((_BASE[0] ^ 0x80,)) + _BASE[1:],  # differs in bit 0
    bytes(32),
    b"\xff" * 32,
    b"\xff" * 31 + b"\xfe",
]


@given(
    st.lists(
        st.dictionaries(st.sampled_from(_CHOSEN_PATHS), st.none() | values, max_size=5),
        max_size=10,
    )
)
def test_long_shared_prefixes_down_to_depth_256(batches: list[dict[bytes, bytes | None]]) -> None:
    h = path_is_key
    tree = StateTree.empty(h)
    model: dict[bytes, bytes] = {}
    for batch in batches:
        tree = tree.update(batch)
        for key, value in batch.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        check_against_model(tree, model, h)
        for key in _CHOSEN_PATHS:
            check_proof(h, tree, key, model.get(key))


def test_deepest_leaves_have_256_siblings() -> None:
    h = path_is_key
    tree = StateTree.empty(h).update({_CHOSEN_PATHS[0]: b"a", _CHOSEN_PATHS[1]: b"b"})
    proof = check_proof(h, tree, _CHOSEN_PATHS[0], b"a")
    assert len(proof.siblings) == 256
    assert proof.siblings[:255] == (EMPTY,) * 255
    # Deleting one of the two lifts the other to the root: the chain disappears.
    lifted = tree.update({_CHOSEN_PATHS[1]: None})
    assert check_proof(h, lifted, _CHOSEN_PATHS[0], b"a").siblings == ()
    assert lifted.root == reference_root(h, {_CHOSEN_PATHS[0]: b"a"})


# ---------------------------------------------------------------------------------------------
# Small cases and the exact failure kinds


def test_empty_tree() -> None:
    tree = StateTree.empty(sha256)
    assert tree.root == EMPTY == bytes(32)
    assert len(tree) == 0
    assert list(tree.items()) == []
    assert tree.get(b"k") is None
    proof = check_proof(sha256, tree, b"k", None)
    assert proof.siblings == ()
    assert proof.other_path is None


def test_single_leaf_tree_proves_other_keys_absent_by_that_leaf() -> None:
    tree = StateTree.empty(sha256).update({b"a": b"1"})
    assert tree.root == sha256(b"\x00" + sha256(b"a") + sha256(b"1"))
    assert check_proof(sha256, tree, b"a", b"1").siblings == ()
    proof = check_proof(sha256, tree, b"b", None)
    assert proof.other_path == sha256(b"a")
    assert proof.other_value_hash == sha256(b"1")


def test_update_returns_the_same_tree_when_nothing_changes() -> None:
    tree = StateTree.from_items(sha256, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    assert tree.update({}) is tree
    assert tree.update({b"zz": None}) is tree
    assert tree.update({b"a": b"1"}) is tree
    assert tree.update({b"a": b"1", b"b": b"2", b"q": None}) is tree
    changed = tree.update({b"a": b"9"})
    assert changed is not tree
    assert tree.get(b"a") == b"1"
    assert changed.get(b"a") == b"9"
    assert len(changed) == 3
    assert len(tree.update({b"a": None, b"d": b"4", b"e": b""})) == 4
    assert tree.update({b"e": b""}).get(b"e") == b""  # empty value is present, not absent


def test_from_items_refuses_duplicates_and_updates_refuse_non_bytes() -> None:
    with pytest.raises(DuplicateStateKeyError):
        StateTree.from_items(sha256, [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    with pytest.raises(TypeError):
        StateTree.empty(sha256).update({b"a": "text"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        StateTree.from_items(sha256, [(b"a", 1)])  # type: ignore[list-item]


def _valid_proofs() -> tuple[bytes, StateProof, StateProof, StateProof]:
    """A root and one proof of each kind: membership, absence at an empty subtree, absence at
    another leaf."""
    rnd = random.Random(7)
    tree = StateTree.from_items(sha256, [(rnd.randbytes(8), rnd.randbytes(8)) for _ in range(50)])
    member = tree.prove(next(iter(tree.items()))[0])
    at_empty = at_leaf = None
    while at_empty is None or at_leaf is None:
        proof = tree.prove(rnd.randbytes(8))
        if proof.value is None and proof.other_path is None:
            at_empty = proof
        elif proof.other_path is not None:
            at_leaf = proof
    return tree.root, member, at_empty, at_leaf


def test_verify_rejections_say_what_is_wrong() -> None:
    root, member, at_empty, at_leaf = _valid_proofs()
    assert at_leaf.other_path is not None
    cases = [
        (dataclasses.replace(member, value=member.value + b"x"), "root mismatch"),  # type: ignore[operator]
        (dataclasses.replace(at_empty, siblings=at_empty.siblings[1:]), "root mismatch"),
        (dataclasses.replace(at_leaf, other_path=sha256(at_leaf.key)), "own path"),
        (
            dataclasses.replace(
                at_leaf, other_path=bytes((at_leaf.other_path[0] ^ 0x80,)) + at_leaf.other_path[1:]
            ),
            "off the key's path",
        ),
        (dataclasses.replace(member, siblings=(*member.siblings, EMPTY)), "non-canonical"),
        (dataclasses.replace(at_empty, siblings=(*at_empty.siblings, EMPTY)), "non-canonical"),
    ]
    for proof, message in cases:
        with pytest.raises(InvalidStateProofError, match=message):
            verify_state_proof(sha256, root, proof)
    for proof in (member, at_empty, at_leaf):
        with pytest.raises(InvalidStateProofError, match="root mismatch"):
            verify_state_proof(sha256, sha256(b"another root"), proof)


def test_membership_cannot_be_recast_as_absence_or_moved() -> None:
    root, member, at_empty, at_leaf = _valid_proofs()
    assert member.value is not None and at_leaf.other_path is not None
    # The key's own leaf offered as "another leaf" would hash exactly right: it must be refused.
    recast = StateProof(member.key, None, member.siblings, sha256(member.key), sha256(member.value))
    with pytest.raises(InvalidStateProofError, match="own path"):
        verify_state_proof(sha256, root, recast)
    # The other leaf of an absence proof claimed as the key's own value: wrong path in the hash.
    with pytest.raises(InvalidStateProofError, match="root mismatch"):
        verify_state_proof(sha256, root, StateProof(at_leaf.key, b"", at_leaf.siblings))
    # An empty-subtree absence proof does not prove absence of keys elsewhere in the tree.
    with pytest.raises(InvalidStateProofError):
        verify_state_proof(sha256, root, dataclasses.replace(at_empty, key=member.key))


def test_proof_shape_is_checked_on_construction() -> None:
    h32 = bytes(range(32))
    bad: list[Callable[[], object]] = [
        lambda: StateProof("k", None, ()),  # type: ignore[arg-type]
        lambda: StateProof(b"k", "v", ()),  # type: ignore[arg-type]
        lambda: StateProof(b"k", None, [h32]),  # type: ignore[arg-type]
        lambda: StateProof(b"k", None, (h32[:31],)),
        lambda: StateProof(b"k", None, (h32,) * 257),
        lambda: StateProof(b"k", None, (), h32, None),
        lambda: StateProof(b"k", None, (), None, h32),
        lambda: StateProof(b"k", b"v", (), h32, h32),
        lambda: StateProof(b"k", None, (), h32 + b"\x00", h32),
        lambda: StateProof(b"k", None, (), h32, h32[:16]),
    ]
    for make in bad:
        with pytest.raises(InvalidStateProofError):
            make()


def test_from_bytes_is_strict() -> None:
    _, member, at_empty, at_leaf = _valid_proofs()
    for proof in (member, at_empty, at_leaf):
        assert StateProof.from_bytes(proof.to_bytes()) == proof
    fields = {
        "key": member.key,
        "value": member.value,
        "siblings": list(member.siblings),
        "other_path": None,
        "other_value_hash": None,
    }
    assert codec.encode(fields) == member.to_bytes()  # the documented format
    bad_objects: list[object] = [
        [member.key, member.value, list(member.siblings), None, None],
        {k: v for k, v in fields.items() if k != "other_path"},
        {**fields, "extra": 1},
        {**fields, "key": "text"},
        {**fields, "value": 5},
        {**fields, "siblings": member.siblings[0]},
        {**fields, "siblings": [*member.siblings[:-1], member.siblings[-1][:31]]},
        {**fields, "siblings": [1]},
        {**fields, "other_path": bytes(32)},
        {**fields, "value": None, "other_path": bytes(31), "other_value_hash": bytes(32)},
    ]
    for obj in bad_objects:
        with pytest.raises(InvalidStateProofError):
            StateProof.from_bytes(codec.encode(obj))
    encoded = member.to_bytes()
    for data in (b"", encoded[:-1], encoded + b"\x00", b"\xf6", b"\xa0"):
        with pytest.raises(InvalidStateProofError):
            StateProof.from_bytes(data)
    with pytest.raises(InvalidStateProofError):
        StateProof.from_bytes(encoded, max_size=len(encoded) - 1)


# ---------------------------------------------------------------------------------------------
# 10,000 keys


_N_KEYS = 10_000


def _big_tree() -> tuple[StateTree, dict[bytes, bytes], list[bytes]]:
    rnd = random.Random(2024)
    contents = {rnd.randbytes(16): rnd.randbytes(rnd.randrange(0, 48)) for _ in range(_N_KEYS)}
    absent = [rnd.randbytes(16) for _ in range(_N_KEYS)]
    return StateTree.from_items(sha256, contents.items()), contents, absent


def test_ten_thousand_keys_membership_and_absence_proofs() -> None:
    tree, contents, absent = _big_tree()
    assert len(tree) == _N_KEYS
    # Built in batches of 1,000 through update, the tree has the same root as the bulk load.
    incremental = StateTree.empty(sha256)
    items = list(contents.items())
    for start in range(0, len(items), 1000):
        incremental = incremental.update(dict(items[start : start + 1000]))
    assert incremental.root == tree.root
    root = tree.root
    kinds = {"member": 0, "empty": 0, "other leaf": 0}
    for key, value in contents.items():
        proof = tree.prove(key)
        assert verify_state_proof(sha256, root, proof) == value
        kinds["member"] += 1
    for key in absent:
        proof = tree.prove(key)
        assert verify_state_proof(sha256, root, proof) is None
        kinds["empty" if proof.other_path is None else "other leaf"] += 1
    assert min(kinds.values()) > 1000, kinds  # both kinds of absence proof were exercised


def _tamper_sample(tree: StateTree, contents: dict[bytes, bytes], keys: list[bytes]) -> None:
    root = tree.root
    for key in keys:
        proof = tree.prove(key)
        assert verify_state_proof(sha256, root, proof) == contents.get(key)
        assert_tampering_never_forges(sha256, root, proof, contents.get)


def test_every_byte_tamper_of_sampled_proofs_fails() -> None:
    tree, contents, absent = _big_tree()
    members = list(contents)[:50]
    at_empty = [k for k in absent if tree.prove(k).other_path is None][:25]
    at_leaf = [k for k in absent if tree.prove(k).other_path is not None][:25]
    _tamper_sample(tree, contents, members + at_empty + at_leaf)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(10))
def test_every_byte_tamper_of_all_ten_thousand_keys_proofs_fails(chunk: int) -> None:
    tree, contents, absent = _big_tree()
    size = _N_KEYS // 10
    members = list(contents)[chunk * size : (chunk + 1) * size]
    _tamper_sample(tree, contents, members + absent[chunk * size : (chunk + 1) * size])
