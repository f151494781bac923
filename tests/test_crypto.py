"""consortia.crypto: published vectors for both suites, then the properties the rest of the system
relies on (domain separation, strict key and signature formats, sealing, key files)."""

from __future__ import annotations

import json
from typing import Any

import gmssl_pyx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortia import codec
from consortia.crypto import (
    MAX_SEAL_PLAINTEXT,
    MAX_SEAL_RECIPIENTS,
    SUITES,
    CryptoError,
    InvalidKeyError,
    InvalidSignatureFormatError,
    InvalidUserIdError,
    KeyFileError,
    KeyPair,
    NotARecipientError,
    PayloadTooLargeError,
    RecipientListError,
    SealCorruptedError,
    Suite,
    UnknownSuiteError,
    WrongPasswordError,
    decrypt_key_file,
    encrypt_key_file,
    get_suite,
    sm2_curve,
)
from consortia.crypto.gm import sm2_message_digest, sm2_z_a
from consortia.crypto.sm2_der import der_to_rs, rs_to_der
from tests.conftest import load_vector

FAST_N = 1 << 10  # scrypt cost for tests: the minimum accepted, ~1 ms


@pytest.fixture(params=SUITES)
def suite(request: pytest.FixtureRequest) -> Suite:
    return get_suite(request.param)


@pytest.fixture(scope="module")
def keys() -> dict[str, list[KeyPair]]:
    """Three key pairs per suite, generated once (gm derivation is pure Python)."""
    return {name: [get_suite(name).generate_keypair() for _ in range(3)] for name in SUITES}


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# ------------------------------------------------------------------------------------------
# Published vectors: RFC 8032 (Ed25519)


def _ed25519_vectors() -> list[dict[str, str]]:
    return list(load_vector("ed25519_rfc8032.json")["vectors"])


@pytest.mark.parametrize("vec", _ed25519_vectors(), ids=lambda v: v["name"])
def test_rfc8032_vectors(vec: dict[str, str]) -> None:
    intl = get_suite("intl")
    kp = intl.keypair_from_secret(bytes.fromhex(vec["secret_key"]))
    message = bytes.fromhex(vec["message"])
    signature = bytes.fromhex(vec["signature"])
    assert kp.public_key.hex() == vec["public_key"]
    assert intl.sign_raw(kp, message) == signature
    assert intl.verify_raw(kp.public_key, message, signature)
    assert not intl.verify_raw(kp.public_key, message + b"x", signature)


# ------------------------------------------------------------------------------------------
# Published vectors: GB/T 32905 (SM3), GB/T 32907 (SM4)


def _sm3_vectors() -> list[dict[str, str]]:
    return list(load_vector("sm3_sm4.json")["sm3"])


@pytest.mark.parametrize("vec", _sm3_vectors(), ids=lambda v: v["message_ascii"][:8])
def test_sm3_vectors(vec: dict[str, str]) -> None:
    gm = get_suite("gm")
    assert gm.hash_name == "sm3"
    assert gm.hash(vec["message_ascii"].encode("ascii")).hex() == vec["digest"]


def test_sm4_single_block_vector() -> None:
    vec = load_vector("sm3_sm4.json")["sm4_ecb_single_block"]
    key, plaintext = bytes.fromhex(vec["key"]), bytes.fromhex(vec["plaintext"])
    # No ECB in gmssl_pyx: CBC with a zero IV encrypts the first block exactly like ECB
    # (C1 = E(P1 xor 0)); the second block is PKCS#7 padding.
    out = gmssl_pyx.sm4_cbc_padding_encrypt(key, bytes(16), plaintext)
    assert len(out) == 32
    assert out[:16].hex() == vec["ciphertext"]
    assert gmssl_pyx.sm4_cbc_padding_decrypt(key, bytes(16), out) == plaintext


# ------------------------------------------------------------------------------------------
# Published vectors: GB/T 32918.2 (SM2 signature)


def _sm2_vector() -> dict[str, str]:
    vec: dict[str, str] = load_vector("sm2_sign.json")
    return vec


def _sm2_vector_public_key(vec: dict[str, str]) -> bytes:
    return b"\x04" + bytes.fromhex(vec["public_key_x"]) + bytes.fromhex(vec["public_key_y"])


def test_sm2_public_key_from_private_key() -> None:
    vec = _sm2_vector()
    kp = get_suite("gm").keypair_from_secret(bytes.fromhex(vec["private_key"]))
    assert kp.public_key == _sm2_vector_public_key(vec)


def test_sm2_z_a_and_e_from_curve_parameters() -> None:
    vec = _sm2_vector()
    user_id = vec["user_id_ascii"].encode("ascii")
    message = vec["message_ascii"].encode("ascii")
    # Independent of consortia.crypto: the curve constants as printed in GB/T 32918.5.
    curve_hex = (
        "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC"  # a
        "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93"  # b
        "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"  # Gx
        "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0"  # Gy
    )
    entl = (len(user_id) * 8).to_bytes(2, "big")
    z_input = entl + user_id + bytes.fromhex(curve_hex) + _sm2_vector_public_key(vec)[1:]
    z_a = gmssl_pyx.sm3_hash(z_input)
    e = gmssl_pyx.sm3_hash(z_a + message)
    assert z_a.hex().upper() == vec["z_a"]
    assert e.hex().upper() == vec["e"]
    # ... and our implementation agrees.
    public_key = _sm2_vector_public_key(vec)
    assert sm2_z_a(public_key, user_id) == z_a
    assert sm2_message_digest(public_key, message, user_id) == e


def test_sm2_published_signature_verifies() -> None:
    vec = _sm2_vector()
    gm = get_suite("gm")
    public_key = _sm2_vector_public_key(vec)
    user_id = vec["user_id_ascii"].encode("ascii")
    message = vec["message_ascii"].encode("ascii")
    signature = bytes.fromhex(vec["r"] + vec["s"])
    assert gm.verify_raw(public_key, message, signature, user_id=user_id)
    assert gm.verify_raw(public_key, message, signature)  # the vector uses the default ID
    assert not gm.verify_raw(public_key, message + b"!", signature, user_id=user_id)
    assert not gm.verify_raw(public_key, message, signature, user_id=b"another signer")
    assert not gm.verify_raw(public_key, message, _flip(signature, 63), user_id=user_id)


def test_sm2_published_signature_recomputed_from_k() -> None:
    """r = (e + x1) mod n with (x1, y1) = kG; s = (1 + d)^-1 (k - r d) mod n: exercises the
    pure-Python curve arithmetic against the published fixed-k signature."""
    vec = _sm2_vector()
    n = sm2_curve.N
    d, k = int(vec["private_key"], 16), int(vec["k"], 16)
    point = sm2_curve.multiply_base(k)
    assert point is not None
    r = (int(vec["e"], 16) + point[0]) % n
    s = pow(1 + d, -1, n) * (k - r * d) % n
    assert (r, s) == (int(vec["r"], 16), int(vec["s"], 16))


# ------------------------------------------------------------------------------------------
# Suite selection and basic shape


def test_get_suite_names() -> None:
    assert SUITES == ("intl", "gm")
    assert get_suite("intl").hash_name == "sha256"
    assert get_suite("gm").hash_name == "sm3"
    for name in SUITES:
        assert get_suite(name).name == name


@pytest.mark.parametrize("name", ["", "INTL", "sm2", "ed25519", "gm ", None, 1])
def test_unknown_suite(name: Any) -> None:
    with pytest.raises(UnknownSuiteError):
        get_suite(name)


def test_hash_and_address_shape(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    assert len(suite.hash(b"")) == 32
    kp = keys[suite.name][0]
    assert len(kp.public_key) == suite.public_key_size
    address = suite.address(kp.public_key)
    assert address == suite.hash(b"consortia/address/v1" + kp.public_key)[:20]
    assert address != suite.address(keys[suite.name][1].public_key)


def test_keypair_repr_hides_secret(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    kp = keys[suite.name][0]
    for text in (repr(kp), str(kp)):
        assert kp.secret.hex() not in text
        assert str(kp.secret) not in text
        assert kp.public_key.hex() in text


def test_keypair_from_secret_is_deterministic(suite: Suite) -> None:
    secret = bytes(range(1, 33))
    assert suite.keypair_from_secret(secret) == suite.keypair_from_secret(secret)
    assert suite.generate_keypair() != suite.generate_keypair()


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_secret_of_wrong_length(suite: Suite, length: int) -> None:
    with pytest.raises(InvalidKeyError):
        suite.keypair_from_secret(b"\x01" * length)


@pytest.mark.parametrize("d", [0, sm2_curve.N - 1, sm2_curve.N, (1 << 256) - 1])
def test_sm2_secret_out_of_range(d: int) -> None:
    with pytest.raises(InvalidKeyError):
        get_suite("gm").keypair_from_secret(d.to_bytes(32, "big"))


def test_sm2_public_keys_from_library_match_ours() -> None:
    gm = get_suite("gm")
    for _ in range(3):
        raw_public, secret = gmssl_pyx.sm2_key_generate()
        assert gm.keypair_from_secret(secret).public_key == b"\x04" + raw_public


# ------------------------------------------------------------------------------------------
# Signatures


def test_sign_verify_round_trip(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    kp = keys[suite.name][0]
    sig = suite.sign(kp, "chain-a", "tx", b"payload")
    assert len(sig) == suite.signature_size == 64
    assert suite.verify(kp.public_key, "chain-a", "tx", b"payload", sig)


def test_signature_bound_to_chain_and_purpose(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    kp = keys[suite.name][0]
    sig = suite.sign(kp, "chain-a", "tx", b"payload")
    assert not suite.verify(kp.public_key, "chain-b", "tx", b"payload", sig)
    assert not suite.verify(kp.public_key, "chain-a", "vote", b"payload", sig)
    # The raw bytes are not the domain-separated bytes either.
    assert not suite.verify_raw(kp.public_key, b"payload", sig)
    # Moving bytes between fields does not collide (the encoding is length-prefixed).
    assert suite.signing_bytes("ab", "c", b"") != suite.signing_bytes("a", "bc", b"")


def test_signing_bytes_are_the_documented_encoding(suite: Suite) -> None:
    expected = codec.encode(["consortia/sig/v1", "c", "p", b"m"])
    assert suite.signing_bytes("c", "p", b"m") == expected


def test_signature_by_another_key_rejected(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys[suite.name]
    sig = suite.sign(a, "c", "tx", b"m")
    assert not suite.verify(b.public_key, "c", "tx", b"m", sig)


def test_flipped_bits_rejected(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    kp = keys[suite.name][0]
    message = b"transfer 100 shares"
    sig = suite.sign_raw(kp, message)
    for i in range(0, len(sig), 7):
        assert not suite.verify_raw(kp.public_key, message, _flip(sig, i, i % 8))
    for i in range(len(message)):
        assert not suite.verify_raw(kp.public_key, _flip(message, i, 3), sig)
    assert not suite.verify_raw(kp.public_key, message + b"\x00", sig)


@pytest.mark.parametrize(
    "bad_sig",
    [b"", b"\x00" * 63, b"\x00" * 65, b"\x00" * 64, b"\xff" * 64, b"\x30" + b"\x00" * 71],
    ids=["empty", "short", "long", "zeros", "ones", "der-length"],
)
def test_malformed_signature_is_false_not_error(
    suite: Suite, keys: dict[str, list[KeyPair]], bad_sig: bytes
) -> None:
    assert suite.verify_raw(keys[suite.name][0].public_key, b"m", bad_sig) is False


def test_sm2_signature_with_r_or_s_out_of_range_is_false(keys: dict[str, list[KeyPair]]) -> None:
    gm = get_suite("gm")
    kp = keys["gm"][0]
    sig = gm.sign_raw(kp, b"m")
    n = sm2_curve.N.to_bytes(32, "big")
    assert not gm.verify_raw(kp.public_key, b"m", n + sig[32:])
    assert not gm.verify_raw(kp.public_key, b"m", sig[:32] + n)
    assert not gm.verify_raw(kp.public_key, b"m", bytes(32) + sig[32:])


def test_sm2_user_id(keys: dict[str, list[KeyPair]]) -> None:
    gm = get_suite("gm")
    kp = keys["gm"][0]
    sig = gm.sign_raw(kp, b"m", user_id=b"alice@broker")
    assert gm.verify_raw(kp.public_key, b"m", sig, user_id=b"alice@broker")
    assert not gm.verify_raw(kp.public_key, b"m", sig)
    default_sig = gm.sign_raw(kp, b"m")
    assert gm.verify_raw(kp.public_key, b"m", default_sig, user_id=b"1234567812345678")
    for bad in (b"", b"x" * 8192):
        with pytest.raises(InvalidUserIdError):
            gm.sign_raw(kp, b"m", user_id=bad)
        with pytest.raises(InvalidUserIdError):
            gm.verify_raw(kp.public_key, b"m", sig, user_id=bad)


def test_sm2_signatures_interoperate_with_library(keys: dict[str, list[KeyPair]]) -> None:
    """Our digest-level signing equals the library's message-level SM2 (Z_A computed there)."""
    gm = get_suite("gm")
    kp = keys["gm"][0]
    for uid in (b"1234567812345678", b"bank-7"):
        sig = gm.sign_raw(kp, b"hello", user_id=uid)
        assert gmssl_pyx.sm2_verify(kp.public_key[1:], b"hello", rs_to_der(sig), signer_id=uid)
        theirs = gmssl_pyx.sm2_sign(kp.secret, kp.public_key[1:], b"hello", signer_id=uid)
        assert gm.verify_raw(kp.public_key, b"hello", der_to_rs(theirs), user_id=uid)


def test_intl_takes_no_user_id(keys: dict[str, list[KeyPair]]) -> None:
    intl = get_suite("intl")
    kp = keys["intl"][0]
    with pytest.raises(InvalidUserIdError):
        intl.sign_raw(kp, b"m", user_id=b"x")
    with pytest.raises(InvalidUserIdError):
        intl.verify_raw(kp.public_key, b"m", bytes(64), user_id=b"x")


def test_mismatched_keypair_refused(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys[suite.name]
    forged = KeyPair(suite.name, a.secret, b.public_key)
    with pytest.raises(InvalidKeyError):
        suite.sign_raw(forged, b"m")
    other = "gm" if suite.name == "intl" else "intl"
    with pytest.raises(InvalidKeyError):
        suite.sign_raw(keys[other][0], b"m")


@given(message=st.binary(max_size=256))
def test_sign_verify_property(message: bytes) -> None:
    for name in SUITES:
        suite = get_suite(name)
        kp = suite.keypair_from_secret(b"\x07" * 32)
        sig = suite.sign(kp, "c", "p", message)
        assert suite.verify(kp.public_key, "c", "p", message, sig)
        assert not suite.verify(kp.public_key, "c", "p", message + b"\x01", sig)


# ------------------------------------------------------------------------------------------
# Malformed public keys


def _not_on_curve_gm() -> bytes:
    x = 1
    while True:  # find an x with no matching y: then (x, 1) is certainly not on the curve
        point = b"\x04" + x.to_bytes(32, "big") + (1).to_bytes(32, "big")
        if not sm2_curve.is_on_curve(x, 1):
            return point
        x += 1


def _bad_public_keys(name: str) -> list[bytes]:
    if name == "intl":
        return [
            b"",
            bytes(31),
            bytes(33),
            b"\x01" + bytes(31),  # the identity point: small order
            bytes(32),  # a small-order point
            b"\xff" * 32,  # non-canonical y >= p
            # y = p - 1: the order-2 point (0, -1)
            bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        ]
    gm = get_suite("gm")
    good = gm.keypair_from_secret(b"\x05" * 32).public_key
    p = sm2_curve.P.to_bytes(32, "big")
    return [
        b"",
        good[1:],  # raw x||y without the prefix
        b"\x02" + good[1:33],  # compressed: not our format
        b"\x03" + good[1:],  # wrong prefix on a 65-byte key
        good + b"\x00",
        _not_on_curve_gm(),
        b"\x04" + p + good[33:],  # x out of the field
        b"\x04" + bytes(64),
        good[:-1] + bytes([good[-1] ^ 1]),  # y changed: off the curve
    ]


@pytest.mark.parametrize("name", SUITES)
def test_malformed_public_keys_raise(name: str) -> None:
    suite = get_suite(name)
    sig = bytes(64)
    for bad in _bad_public_keys(name):
        with pytest.raises(InvalidKeyError):
            suite.check_public_key(bad)
        with pytest.raises(InvalidKeyError):
            suite.address(bad)
        with pytest.raises(InvalidKeyError):
            suite.verify_raw(bad, b"m", sig)
        with pytest.raises(InvalidKeyError):
            suite.verify(bad, "c", "p", b"m", sig)
        with pytest.raises(InvalidKeyError):
            suite.seal([bad], b"m")


def test_keys_of_the_other_suite_are_malformed(keys: dict[str, list[KeyPair]]) -> None:
    with pytest.raises(InvalidKeyError):
        get_suite("intl").check_public_key(keys["gm"][0].public_key)
    with pytest.raises(InvalidKeyError):
        get_suite("gm").check_public_key(keys["intl"][0].public_key)


# ------------------------------------------------------------------------------------------
# DER <-> r||s


@given(r=st.integers(1, sm2_curve.N - 1), s=st.integers(1, sm2_curve.N - 1))
def test_der_round_trip(r: int, s: int) -> None:
    rs = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = rs_to_der(rs)
    assert der_to_rs(der) == rs
    assert len(der) <= 72


@pytest.mark.parametrize(
    "der_hex",
    [
        "",
        "3006020101020101" + "00",  # trailing byte
        "3007020101020101",  # sequence length too long
        "300602010102010100",  # trailing inside
        "31060201010201 01".replace(" ", ""),  # SET, not SEQUENCE
        "3007020200010201 01".replace(" ", ""),  # non-minimal integer (leading 00)
        "30060201ff020101",  # negative integer
        "3006020100020101",  # r = 0
        "30050201010201",  # truncated
        "308106020101020101",  # long-form length
        "3006040101020101",  # OCTET STRING, not INTEGER
        "30030201010000",
    ],
)
def test_der_rejects_non_strict_encodings(der_hex: str) -> None:
    with pytest.raises(InvalidSignatureFormatError):
        der_to_rs(bytes.fromhex(der_hex))


def test_der_rejects_r_at_least_n() -> None:
    n = sm2_curve.N
    body = b"\x02\x21\x00" + n.to_bytes(32, "big") + b"\x02\x01\x01"
    with pytest.raises(InvalidSignatureFormatError):
        der_to_rs(b"\x30" + bytes([len(body)]) + body)
    with pytest.raises(InvalidSignatureFormatError):
        rs_to_der(n.to_bytes(32, "big") + (1).to_bytes(32, "big"))


# ------------------------------------------------------------------------------------------
# Sealing


def test_seal_opens_for_each_recipient_only(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, outsider = keys[suite.name]
    sealed = suite.seal([a.public_key, b.public_key], b"identity: Zhang San")
    assert suite.open_sealed(a, sealed) == b"identity: Zhang San"
    assert suite.open_sealed(b, sealed) == b"identity: Zhang San"
    with pytest.raises(NotARecipientError):
        suite.open_sealed(outsider, sealed)
    assert b"Zhang San" not in sealed


@pytest.mark.parametrize("size", [0, 1, 16, 1000, 70_000])
def test_seal_sizes(suite: Suite, keys: dict[str, list[KeyPair]], size: int) -> None:
    kp = keys[suite.name][0]
    plaintext = bytes(i % 251 for i in range(size))
    assert suite.open_sealed(kp, suite.seal([kp.public_key], plaintext)) == plaintext


def test_seal_size_limit(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    kp = keys[suite.name][0]
    biggest = bytes(MAX_SEAL_PLAINTEXT)
    assert suite.open_sealed(kp, suite.seal([kp.public_key], biggest)) == biggest
    with pytest.raises(PayloadTooLargeError):
        suite.seal([kp.public_key], biggest + b"\x00")


def test_seal_is_randomized_and_deduplicates(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    kp = keys[suite.name][0]
    one = suite.seal([kp.public_key, kp.public_key], b"x")
    two = suite.seal([kp.public_key], b"x")
    assert one != two
    assert len(codec.decode(one)["recipients"]) == 1
    assert suite.open_sealed(kp, one) == b"x"


def test_seal_recipient_list_errors(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    with pytest.raises(RecipientListError):
        suite.seal([], b"x")
    too_many = [
        suite.keypair_from_secret(i.to_bytes(32, "big")).public_key
        for i in range(1, MAX_SEAL_RECIPIENTS + 2)
    ]
    with pytest.raises(RecipientListError):
        suite.seal(too_many, b"x")
    with pytest.raises(TypeError):
        suite.seal(keys[suite.name][0].public_key, b"x")


def test_seal_envelope_format(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys[suite.name]
    env = codec.decode(suite.seal([a.public_key, b.public_key], b"x"))
    assert set(env) == {"v", "suite", "recipients", "nonce", "ciphertext"}
    assert env["suite"] == suite.name
    ids = [entry["id"] for entry in env["recipients"]]
    assert ids == [suite.address(a.public_key), suite.address(b.public_key)]


def _reencode(sealed: bytes, change: Any) -> bytes:
    env = codec.decode(sealed)
    change(env)
    return codec.encode(env)


def test_tampered_envelope_detected(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys[suite.name]
    sealed = suite.seal([a.public_key, b.public_key], b"sealed payload")

    def flip_other_wrapped(env: Any) -> None:
        env["recipients"][1]["key"] = _flip(env["recipients"][1]["key"], 5)

    def drop_other(env: Any) -> None:
        env["recipients"].pop(1)

    def swap_order(env: Any) -> None:
        env["recipients"].reverse()

    changes = [
        lambda env: env.update(ciphertext=_flip(env["ciphertext"], 0)),
        lambda env: env.update(ciphertext=env["ciphertext"][:-1]),
        lambda env: env.update(ciphertext=env["ciphertext"] + b"\x00"),
        lambda env: env.update(nonce=_flip(env["nonce"], 3)),
        lambda env: env.update(v=2),
        lambda env: env.update(suite="gm" if suite.name == "intl" else "intl"),
        lambda env: env.update(extra=1),
        lambda env: env.pop("nonce"),
        lambda env: env["recipients"][0].update(key=_flip(env["recipients"][0]["key"], 7)),
        lambda env: env["recipients"][0].update(key=env["recipients"][0]["key"][:-1]),
        lambda env: env["recipients"].append(env["recipients"][0]),
        flip_other_wrapped,
        drop_other,
        swap_order,
    ]
    for change in changes:
        with pytest.raises(SealCorruptedError):
            suite.open_sealed(a, _reencode(sealed, change))


def test_every_flipped_byte_detected(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys[suite.name]
    sealed = suite.seal([a.public_key, b.public_key], b"p")
    my_id = suite.address(a.public_key)
    id_at = sealed.index(my_id)
    for i in range(len(sealed)):
        tampered = _flip(sealed, i, i % 8)
        expected: type[CryptoError] = SealCorruptedError
        if id_at <= i < id_at + len(my_id):
            expected = NotARecipientError  # our entry now names someone else
        with pytest.raises(expected):
            suite.open_sealed(a, tampered)


@pytest.mark.parametrize(
    "garbage", [b"", b"\x00", b"\xa0", b"not cbor at all", codec.encode([1, 2, 3])]
)
def test_garbage_envelope(suite: Suite, keys: dict[str, list[KeyPair]], garbage: bytes) -> None:
    with pytest.raises(SealCorruptedError):
        suite.open_sealed(keys[suite.name][0], garbage)


def test_envelope_of_other_suite_rejected(keys: dict[str, list[KeyPair]]) -> None:
    sealed = get_suite("intl").seal([keys["intl"][0].public_key], b"x")
    with pytest.raises(SealCorruptedError):
        get_suite("gm").open_sealed(keys["gm"][0], sealed)


def test_aead_binds_associated_data(suite: Suite) -> None:
    key = b"\x11" * suite.cipher_key_size
    nonce = b"\x22" * suite.cipher_nonce_size
    ct = suite.encrypt_aead(key, nonce, b"header", b"body")
    assert len(ct) == 4 + suite.cipher_overhead
    assert suite.decrypt_aead(key, nonce, b"header", ct) == b"body"
    with pytest.raises(CryptoError):
        suite.decrypt_aead(key, nonce, b"headex", ct)


# ------------------------------------------------------------------------------------------
# Key files


def test_key_file_round_trip(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    kp = keys[suite.name][0]
    data = encrypt_key_file(kp, "correct horse", scrypt_n=FAST_N)
    doc = json.loads(data)
    assert doc["suite"] == suite.name
    assert doc["kdf"] == "scrypt"
    assert doc["kdf_params"] == {"n": FAST_N, "r": 8, "p": 1, "dklen": suite.cipher_key_size}
    assert doc["public_key"] == kp.public_key.hex()
    assert doc["address"] == suite.address(kp.public_key).hex()
    assert doc["cipher"] == suite.cipher_name
    assert kp.secret.hex() not in data.decode()
    assert decrypt_key_file(data, "correct horse") == kp


def test_key_file_default_cost(keys: dict[str, list[KeyPair]]) -> None:
    data = encrypt_key_file(keys["intl"][0], "pw")
    assert json.loads(data)["kdf_params"]["n"] == 1 << 15
    assert decrypt_key_file(data, "pw") == keys["intl"][0]


def test_key_file_unicode_password_normalized(keys: dict[str, list[KeyPair]]) -> None:
    kp = keys["gm"][0]
    data = encrypt_key_file(kp, "caf\u00e9 密码", scrypt_n=FAST_N)  # precomposed é
    assert decrypt_key_file(data, "cafe\u0301 密码") == kp  # e + combining acute


def test_key_file_wrong_password(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    data = encrypt_key_file(keys[suite.name][0], "right", scrypt_n=FAST_N)
    for wrong in ("wrong", "", "right ", "Right"):
        with pytest.raises(WrongPasswordError):
            decrypt_key_file(data, wrong)


def _edit(data: bytes, **changes: Any) -> bytes:
    doc = json.loads(data)
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def test_key_file_header_swaps_detected(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys[suite.name]
    data = encrypt_key_file(a, "pw", scrypt_n=FAST_N)
    doc = json.loads(data)
    # Another valid public key with its matching address: only the authentication notices.
    swapped_key = _edit(
        data, public_key=b.public_key.hex(), address=suite.address(b.public_key).hex()
    )
    params = dict(doc["kdf_params"], n=FAST_N * 2)
    for tampered in (
        swapped_key,
        _edit(data, kdf_params=params),
        _edit(data, salt=_flip(bytes.fromhex(doc["salt"]), 0).hex()),
        _edit(data, nonce=_flip(bytes.fromhex(doc["nonce"]), 0).hex()),
        _edit(data, ciphertext=_flip(bytes.fromhex(doc["ciphertext"]), 9).hex()),
    ):
        with pytest.raises(WrongPasswordError):
            decrypt_key_file(tampered, "pw")


def test_key_file_malformed(suite: Suite, keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys[suite.name]
    data = encrypt_key_file(a, "pw", scrypt_n=FAST_N)
    doc = json.loads(data)
    other = "gm" if suite.name == "intl" else "intl"
    bad_files = [
        b"",
        b"\xff\xfe",
        b"[]",
        b"{}",
        data[:-10],
        _edit(data, version=2),
        _edit(data, version=True),
        _edit(data, suite=other),
        _edit(data, suite="rsa"),
        _edit(data, kdf="pbkdf2"),
        _edit(data, cipher="aes-gcm"),
        _edit(data, salt=None),
        _edit(data, extra="x"),
        _edit(data, address=suite.address(b.public_key).hex()),  # does not match the key
        _edit(data, public_key="zz" + doc["public_key"][2:]),
        _edit(data, public_key=doc["public_key"][:-2]),
        _edit(data, ciphertext=doc["ciphertext"][:-2]),
        _edit(data, nonce=doc["nonce"] + "00"),
        _edit(data, salt=doc["salt"] + " "),
        _edit(data, kdf_params=dict(doc["kdf_params"], n=1000)),  # not a power of two
        _edit(data, kdf_params=dict(doc["kdf_params"], n=16)),  # too cheap
        _edit(data, kdf_params=dict(doc["kdf_params"], n=1 << 30)),  # too expensive
        _edit(data, kdf_params=dict(doc["kdf_params"], p=1000)),
        _edit(data, kdf_params=dict(doc["kdf_params"], dklen=64)),
        _edit(data, kdf_params=dict(doc["kdf_params"], r="8")),
        _edit(data, kdf_params={"n": FAST_N}),
        data.replace(b'"version": 1', b'"version": 1, "version": 1'),
    ]
    for bad in bad_files:
        with pytest.raises(KeyFileError):
            decrypt_key_file(bad, "pw")


def test_key_file_refuses_bad_inputs(keys: dict[str, list[KeyPair]]) -> None:
    a, b, _ = keys["intl"]
    with pytest.raises(InvalidKeyError):
        encrypt_key_file(KeyPair("intl", a.secret, b.public_key), "pw", scrypt_n=FAST_N)
    with pytest.raises(UnknownSuiteError):
        encrypt_key_file(KeyPair("rsa", a.secret, a.public_key), "pw", scrypt_n=FAST_N)
    with pytest.raises(KeyFileError):
        encrypt_key_file(a, "pw", scrypt_n=3)
