"""``consortia crypto ...`` (the Typer sub-app in consortia.cli.crypto_cmd)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli.crypto_cmd import app
from consortia.crypto import SUITES, decrypt_key_file, get_suite
from tests.conftest import load_vector

runner = CliRunner()


def _rfc8032_test2() -> dict[str, str]:
    vec: dict[str, str] = next(
        v for v in load_vector("ed25519_rfc8032.json")["vectors"] if v["name"] == "TEST 2"
    )
    return vec


def _verify_args(suite: str, public_key: str, message: str, signature: str) -> list[str]:
    return [
        "verify",
        "--suite",
        suite,
        "--public-key",
        public_key,
        "--message-hex",
        message,
        "--signature",
        signature,
    ]


def _assert_usage_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_rfc8032_test2_valid() -> None:
    vec = _rfc8032_test2()
    result = runner.invoke(
        app, _verify_args("intl", vec["public_key"], vec["message"], vec["signature"])
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "valid"


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_rfc8032_test2_flipped_signature_byte_invalid(index: int) -> None:
    vec = _rfc8032_test2()
    sig = bytearray.fromhex(vec["signature"])
    sig[index] ^= 0x01
    result = runner.invoke(app, _verify_args("intl", vec["public_key"], vec["message"], sig.hex()))
    assert result.exit_code == 1, result.output
    assert result.stdout.strip() == "invalid"


def test_rfc8032_test2_flipped_message_invalid() -> None:
    vec = _rfc8032_test2()
    result = runner.invoke(app, _verify_args("intl", vec["public_key"], "73", vec["signature"]))
    assert result.exit_code == 1
    assert result.stdout.strip() == "invalid"


def test_sm2_vector_valid_and_invalid() -> None:
    vec = load_vector("sm2_sign.json")
    public_key = "04" + vec["public_key_x"] + vec["public_key_y"]
    message = vec["message_ascii"].encode().hex()
    signature = vec["r"] + vec["s"]
    args = _verify_args("gm", public_key, message, signature)
    result = runner.invoke(app, [*args, "--user-id", vec["user_id_ascii"]])
    assert (result.exit_code, result.stdout.strip()) == (0, "valid")
    result = runner.invoke(app, args)  # default user ID is the vector's
    assert (result.exit_code, result.stdout.strip()) == (0, "valid")
    result = runner.invoke(app, [*args, "--user-id", "someone else"])
    assert (result.exit_code, result.stdout.strip()) == (1, "invalid")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    result = runner.invoke(app, _verify_args("gm", public_key, message, flipped))
    assert (result.exit_code, result.stdout.strip()) == (1, "invalid")


def test_verify_malformed_inputs_exit_2() -> None:
    vec = _rfc8032_test2()
    pk, msg, sig = vec["public_key"], vec["message"], vec["signature"]
    cases = {
        "--public-key": _verify_args("intl", "xyz", msg, sig),
        "--message-hex": _verify_args("intl", pk, "7", sig),
        "--signature": _verify_args("intl", pk, msg, sig + "0"),
    }
    for option, args in cases.items():
        assert option in _assert_usage_error(args)
    assert "64 bytes" in _assert_usage_error(_verify_args("intl", pk, msg, sig[:-2]))
    assert "32 bytes" in _assert_usage_error(_verify_args("intl", pk[:-2], msg, sig))
    small_order = "01" + "00" * 31
    assert "Ed25519" in _assert_usage_error(_verify_args("intl", small_order, msg, sig))
    # An Ed25519 key given to the gm suite, and an off-curve SM2 key.
    assert "SM2" in _assert_usage_error(_verify_args("gm", pk, msg, sig))
    assert "curve" in _assert_usage_error(_verify_args("gm", "04" + "01" * 64, msg, sig))
    assert "unknown" in _assert_usage_error(_verify_args("rsa", pk, msg, sig))
    assert "gm" in _assert_usage_error([*_verify_args("intl", pk, msg, sig), "--user-id", "x"])


def test_verify_accepts_0x_prefix() -> None:
    vec = _rfc8032_test2()
    args = _verify_args("intl", "0x" + vec["public_key"], "0x72", "0X" + vec["signature"])
    assert runner.invoke(app, args).exit_code == 0


@pytest.mark.parametrize(
    ("suite", "data", "digest"),
    [
        ("intl", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("intl", "616263", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("gm", "616263", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    ],
)
def test_hash(suite: str, data: str, digest: str) -> None:
    result = runner.invoke(app, ["hash", "--suite", suite, "--hex", data])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == digest


def test_hash_bad_input() -> None:
    assert "--hex" in _assert_usage_error(["hash", "--suite", "intl", "--hex", "abc"])
    assert "unknown" in _assert_usage_error(["hash", "--suite", "x", "--hex", "00"])


def _parse_keygen_output(text: str) -> dict[str, str]:
    fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
    assert set(fields) == {"address", "public_key"}
    return fields


@pytest.mark.parametrize("suite", SUITES)
def test_keygen_with_password_env(suite: str, tmp_path: Path) -> None:
    path = tmp_path / "validator.key"
    result = runner.invoke(
        app,
        ["keygen", "--suite", suite, "-o", str(path), "--password-env", "KEY_PW"],
        env={"KEY_PW": "s3cret"},
    )
    assert result.exit_code == 0, result.output
    printed = _parse_keygen_output(result.stdout)
    keypair = decrypt_key_file(path.read_bytes(), "s3cret")
    assert keypair.suite == suite
    assert printed["public_key"] == keypair.public_key.hex()
    assert printed["address"] == get_suite(suite).address(keypair.public_key).hex()
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_prompts_for_password(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    result = runner.invoke(app, ["keygen", "--suite", "intl", "-o", str(path)], input="pw\npw\n")
    assert result.exit_code == 0, result.output
    assert decrypt_key_file(path.read_bytes(), "pw").suite == "intl"


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("precious")
    args = ["keygen", "--suite", "intl", "-o", str(path), "--password-env", "KEY_PW"]
    result = runner.invoke(app, args, env={"KEY_PW": "pw"})
    assert result.exit_code == 2
    assert "exists" in result.stderr
    assert path.read_text() == "precious"
    result = runner.invoke(app, [*args, "--force"], env={"KEY_PW": "pw"})
    assert result.exit_code == 0, result.output
    assert decrypt_key_file(path.read_bytes(), "pw").suite == "intl"


def test_keygen_password_problems(tmp_path: Path) -> None:
    path = str(tmp_path / "k.json")
    base = ["keygen", "--suite", "gm", "-o", path, "--password-env", "KEY_PW"]
    result = runner.invoke(app, base, env={"KEY_PW": None})
    assert result.exit_code == 2 and "KEY_PW" in result.stderr
    result = runner.invoke(app, base, env={"KEY_PW": ""})
    assert result.exit_code == 2 and "empty" in result.stderr
    missing_dir = ["keygen", "--suite", "gm", "-o", str(tmp_path / "no" / "k.json")]
    result = runner.invoke(app, [*missing_dir, "--password-env", "KEY_PW"], env={"KEY_PW": "x"})
    assert result.exit_code == 2 and "cannot create" in result.stderr
    assert not (tmp_path / "k.json").exists()
