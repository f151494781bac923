"""Document evidence (the ``notary`` module, ``consortia notary``, deposit evidence bundles).

Real chains throughout: an in-process business chain (real store, real certificates) whose
headers a supervision chain anchors, files of 0 B, 1 B and 200 MB generated in a temp directory
and hashed streaming, bundles verified offline by ``consortia evidence verify --file``; and the
``consortia notary`` commands against a running node process.
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consortia import codec
from consortia.cli import app
from consortia.cli.notary_cmd import hash_file
from consortia.crypto import KeyPair, get_suite
from consortia.evidence.bundle import (
    FileDigests,
    FileMismatchError,
    check_deposited_file,
    parse_bundle,
    verify_bundle,
)
from consortia.evidence.export import UnknownSubjectError, export_deposit
from consortia.ledger.types import Receipt, TxStatus
from consortia.modules import notary
from consortia.node.demo import RehearsalClock
from consortia.node.local import ACCOUNTS_DIR, LocalChain, load_key_dir
from tests.evidencekit import (
    PASSWORD,
    SUPERVISION_ID,
    InProcess,
    Signer,
    anchor_all,
    make_home,
    open_chain,
)
from tests.netkit import PASSWORD as NET_PASSWORD
from tests.netkit import LocalNet

runner = CliRunner()
BUSINESS_ID = "biz-notary"
BIG = 200 * 1024 * 1024
MIB = 1 << 20


def write_generated(path: Path, size: int, seed: bytes) -> None:
    """A deterministic pseudo-random file of ``size`` bytes, written 1 MiB at a time."""
    block = hashlib.shake_256(seed).digest(MIB)
    with path.open("wb") as f:
        written, n = 0, 0
        while written < size:
            # Vary every chunk (its number in front) so no two MiB are alike.
            chunk = (n.to_bytes(8, "big") + block)[: min(MIB, size - written)]
            f.write(chunk)
            written += len(chunk)
            n += 1


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x01]))


# ---------------------------------------------------------------------------------------------
# An in-process business chain


@dataclass
class Biz:
    chain: LocalChain
    harness: InProcess
    sign: Signer
    keys: dict[str, KeyPair]

    def run(self, who: str, method: str, args: dict[str, Any]) -> Receipt:
        tx = self.sign(self.keys[who], notary.NAME, method, args)
        (receipt,) = self.harness._commit([tx]).receipts
        return receipt

    def read(self, key: bytes) -> bytes | None:
        return self.chain.state.tree.get(key)


def deposit_args(digests: FileDigests, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "suite_hash": digests.suite_hash,
        "sha256": digests.sha256,
        "doc_type": "working-paper",
        "title": "Audit working paper",
        "project": "IPO-2026-001",
        "version": None,
        "previous": "",
        "size": digests.size,
        "sealed_metadata": b"",
    }
    args.update(over)
    return args


def deposited_id(receipt: Receipt) -> str:
    assert receipt.status == TxStatus.OK, (receipt.code, receipt.message)
    (event,) = [e for e in receipt.events if (e.module, e.kind) == ("notary", "deposited")]
    deposit_id = event.attributes["deposit_id"]
    assert isinstance(deposit_id, str)
    return deposit_id


@pytest.fixture
def biz(tmp_path: Path) -> Iterator[Biz]:
    home = tmp_path / "business"
    make_home(home, BUSINESS_ID)
    clock = RehearsalClock()
    chain = open_chain(home, clock)
    keys = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)
    try:
        yield Biz(chain, InProcess(chain, clock, keys), Signer(chain.suite, BUSINESS_ID), keys)
    finally:
        chain.close()


def digests_of(data: bytes) -> FileDigests:
    d = hashlib.sha256(data).digest()
    return FileDigests(len(data), d, d)  # intl suite: the suite hash is SHA-256


def test_hash_file_streams_sha256_and_the_suite_hash(tmp_path: Path) -> None:
    data = b"working paper v1\n" * 1000 + b"\x00\xff"
    path = tmp_path / "wp.bin"
    path.write_bytes(data)
    got = hash_file(path, get_suite("intl"), quiet=True)
    assert got == FileDigests(
        len(data), hashlib.sha256(data).digest(), hashlib.sha256(data).digest()
    )
    gm = hash_file(path, get_suite("gm"), quiet=True)
    assert gm.sha256 == got.sha256
    assert gm.suite_hash == get_suite("gm").hash(data) != got.sha256
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty, get_suite("intl"), quiet=True).sha256 == hashlib.sha256().digest()


def test_deposit_versions_and_withdraw(biz: Biz) -> None:
    v1 = deposited_id(biz.run("broker-a-admin", "deposit", deposit_args(digests_of(b"v1"))))
    assert v1 == "ND-0000000001"
    v2 = deposited_id(
        biz.run(
            "broker-a-admin", "deposit", deposit_args(digests_of(b"v2"), previous=v1, version=2)
        )
    )
    v3 = deposited_id(
        biz.run("broker-a-admin", "deposit", deposit_args(digests_of(b"v3"), previous=v2))
    )
    assert (v2, v3) == ("ND-0000000002", "ND-0000000003")
    history = notary.version_history(biz.read, v2)
    assert [(d.deposit_id, d.version, d.previous, d.next) for d in history] == [
        (v1, 1, "", v2),
        (v2, 2, v1, v3),
        (v3, 3, v2, ""),
    ]
    assert {d.org_id for d in history} == {"broker-a"}
    first = history[0]
    assert first.height >= 1 and first.time_ms > 0 and first.size == 2
    (found,) = notary.deposits_by_sha256(biz.read, hashlib.sha256(b"v1").digest())
    assert found.deposit_id == v1

    # A version chain does not fork, and another organization cannot extend it.
    forked = biz.run("broker-a-admin", "deposit", deposit_args(digests_of(b"x"), previous=v1))
    assert forked.code == "NOTARY_SUPERSEDED"
    foreign = biz.run("broker-b-admin", "deposit", deposit_args(digests_of(b"x"), previous=v3))
    assert foreign.code == "NOTARY_FORBIDDEN"
    wrong = biz.run(
        "broker-a-admin", "deposit", deposit_args(digests_of(b"x"), previous=v3, version=9)
    )
    assert wrong.code == "NOTARY_VERSION_MISMATCH"
    missing = biz.run(
        "broker-a-admin", "deposit", deposit_args(digests_of(b"x"), previous="ND-0000000099")
    )
    assert missing.code == "NOTARY_NOT_FOUND"

    # Withdrawing: only the depositor's side; never erased; not twice; no new version after.
    refused = biz.run("broker-b-admin", "withdraw", {"deposit_id": v3, "reason": "not mine"})
    assert refused.code == "NOTARY_FORBIDDEN"
    done = biz.run(
        "broker-a-admin", "withdraw", {"deposit_id": v3, "reason": "superseded by audit"}
    )
    assert done.status == TxStatus.OK
    assert [(e.kind, e.attributes["deposit_id"]) for e in done.events] == [("withdrawn", v3)]
    gone = notary.load_deposit(biz.read, v3)
    assert gone is not None and gone.withdrawn and gone.withdraw_reason == "superseded by audit"
    assert gone.sha256 == hashlib.sha256(b"v3").digest()  # still there, still findable
    assert notary.deposits_by_sha256(biz.read, gone.sha256) == (gone,)
    again = biz.run("broker-a-admin", "withdraw", {"deposit_id": v3, "reason": "again"})
    assert again.code == "NOTARY_WITHDRAWN"
    after = biz.run("broker-a-admin", "deposit", deposit_args(digests_of(b"v4"), previous=v3))
    assert after.code == "NOTARY_WITHDRAWN"
    # An org_admin withdraws a deposit made by another account of its organization.
    custodian = deposited_id(biz.run("ccb-custodian", "deposit", deposit_args(digests_of(b"c"))))
    by_admin = biz.run("ccb-admin", "withdraw", {"deposit_id": custodian, "reason": "revoked"})
    assert by_admin.status == TxStatus.OK
    # Failed deposits used no deposit number.
    assert notary.load_deposit(biz.read, "ND-0000000005") is None
    counter = biz.read(notary.COUNTER_KEY)
    assert counter is not None
    assert codec.decode_struct(notary.DepositCounter, counter).count == 4


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"sha256": b"\x01" * 31}, "sha256"),
        ({"suite_hash": b""}, "suite_hash"),
        ({"doc_type": "working paper"}, "doc_type"),
        ({"title": " "}, "title"),
        ({"project": ""}, "project"),
        ({"version": 0}, "version"),
        ({"previous": "7"}, "previous"),
        ({"size": -1}, "size"),
        ({"sealed_metadata": b"\x00" * 4097}, "sealed_metadata"),
    ],
)
def test_bad_deposit_arguments_are_refused_and_change_nothing(
    biz: Biz, over: dict[str, Any], field: str
) -> None:
    receipt = biz.run("broker-a-admin", "deposit", deposit_args(digests_of(b"doc"), **over))
    assert receipt.code == "INVALID_ARGUMENT" and field in receipt.message
    assert biz.read(notary.COUNTER_KEY) is None
    assert notary.deposits_by_sha256(biz.read, hashlib.sha256(b"doc").digest()) == ()


def test_the_sha256_index_is_bounded(biz: Biz, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notary, "MAX_PER_SHA256", 2)
    d = digests_of(b"same")
    deposited_id(biz.run("broker-a-admin", "deposit", deposit_args(d)))
    deposited_id(biz.run("broker-b-admin", "deposit", deposit_args(d)))
    full = biz.run("ccb-custodian", "deposit", deposit_args(d))
    assert full.code == "NOTARY_INDEX_FULL"
    assert [x.org_id for x in notary.deposits_by_sha256(biz.read, d.sha256)] == [
        "broker-a",
        "broker-b",
    ]


# ---------------------------------------------------------------------------------------------
# Deposits of 0 B, 1 B and 200 MB, exported and verified offline with the file


def test_files_of_0_1_and_200mb_deposit_export_and_verify_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {
        "empty": tmp_path / "empty.bin",
        "one": tmp_path / "one.bin",
        "big": tmp_path / "big.bin",
    }
    files["empty"].write_bytes(b"")
    files["one"].write_bytes(b"\x2a")
    write_generated(files["big"], BIG, b"notary-200mb")
    assert files["big"].stat().st_size == BIG
    suite = get_suite("intl")
    # Hashing 200 MB streams: the Python heap never holds more than a few chunks.
    tracemalloc.start()
    try:
        big = hash_file(files["big"], suite, quiet=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, peak
    assert big.size == BIG
    digests = {
        "empty": hash_file(files["empty"], suite, quiet=True),
        "one": hash_file(files["one"], suite, quiet=True),
        "big": big,
    }
    assert digests["empty"].sha256 == hashlib.sha256(b"").digest()
    assert digests["one"].sha256 == hashlib.sha256(b"\x2a").digest()

    bhome, shome = tmp_path / "business", tmp_path / "supervision"
    bgen = make_home(bhome, BUSINESS_ID)
    sgen = make_home(shome, SUPERVISION_ID, tier="supervision")
    clock = RehearsalClock()
    chain = open_chain(bhome, clock)
    keys = load_key_dir(bhome / ACCOUNTS_DIR, PASSWORD)
    harness = InProcess(chain, clock, keys)
    b = Biz(chain, harness, Signer(chain.suite, BUSINESS_ID), keys)
    ids: dict[str, str] = {}
    try:
        for name in ("empty", "one", "big"):
            ids[name] = deposited_id(
                b.run("broker-a-admin", "deposit", deposit_args(digests[name], title=name))
            )
        harness._commit([])
    finally:
        chain.close()
    sup = open_chain(shome, RehearsalClock())
    skeys = load_key_dir(shome / ACCOUNTS_DIR, PASSWORD)
    ssign = Signer(sup.suite, SUPERVISION_ID)
    try:
        register = ssign(
            skeys["regulator"],
            "anchoring",
            "register_chain",
            {
                "chain_id": bgen.chain_id,
                "suite": bgen.suite,
                "genesis_hash": bgen.hash(),
                "genesis_time_ms": bgen.genesis_time_ms,
                "validators": codec.to_cbor(bgen.validator_set()),
            },
        )
        assert [r.code for r in sup.commit([register]).receipts] == [""]
        anchor_all(sup, ssign, skeys["relayer"], bhome, harness.announced, first=1)
        sup.commit([])
    finally:
        sup.close()

    genesis_args = [
        "--genesis",
        str(bhome / "genesis.json"),
        "--genesis",
        str(shome / "genesis.json"),
    ]
    for name in ("empty", "one", "big"):
        out = tmp_path / f"{name}.json"
        r = runner.invoke(
            app,
            [
                "notary",
                "evidence",
                ids[name],
                "--home",
                str(bhome),
                "--supervision-home",
                str(shome),
                "-o",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
        bundle = parse_bundle(out.read_bytes())
        proven = verify_bundle(bundle, bgen, sgen)
        assert proven.kind == "transaction" and "notary.deposit" in proven.what
        assert check_deposited_file(bundle, digests[name]) == ids[name]
        ok = runner.invoke(
            app,
            ["evidence", "verify", str(out), *genesis_args, "--file", str(files[name]), "--json"],
        )
        assert ok.exit_code == 0, ok.output
        result = json.loads(ok.stdout)
        assert result["ok"] is True and result["file"]["deposit_id"] == ids[name]
        assert result["file"]["sha256"] == digests[name].sha256.hex()
        # Any other file fails: the other deposited files, ...
        for other in ("empty", "one", "big"):
            if other == name:
                continue
            bad = runner.invoke(
                app, ["evidence", "verify", str(out), *genesis_args, "--file", str(files[other])]
            )
            assert bad.exit_code == 1, bad.output
            assert "NOT VERIFIED — FileMismatchError: file:" in bad.stdout
    # ... and a one-byte change of the 200 MB file (in its middle), or of the 1-byte file.
    flip_byte(files["big"], BIG // 2)
    changed = runner.invoke(
        app,
        [
            "evidence",
            "verify",
            str(tmp_path / "big.json"),
            *genesis_args,
            "--file",
            str(files["big"]),
            "--json",
        ],
    )
    assert changed.exit_code == 1, changed.output
    assert json.loads(changed.stdout)["type"] == "FileMismatchError"
    flip_byte(files["big"], BIG // 2)  # restored: verifies again
    restored = runner.invoke(
        app,
        [
            "evidence",
            "verify",
            str(tmp_path / "big.json"),
            *genesis_args,
            "--file",
            str(files["big"]),
        ],
    )
    assert restored.exit_code == 0, restored.output
    assert f"is deposit {ids['big']}" in restored.stdout
    flip_byte(files["one"], 0)
    with pytest.raises(FileMismatchError):
        check_deposited_file(
            parse_bundle((tmp_path / "one.json").read_bytes()),
            hash_file(files["one"], suite, quiet=True),
        )
    # A bundle that is not a deposit's is refused as such; an unknown deposit cannot be exported.
    with pytest.raises(UnknownSubjectError):
        export_deposit(bhome, shome, "ND-0000000042")
    missing = runner.invoke(
        app,
        [
            "evidence",
            "verify",
            str(tmp_path / "one.json"),
            *genesis_args,
            "--file",
            str(tmp_path / "nope"),
        ],
    )
    assert missing.exit_code == 2 and "cannot read" in missing.output


# ---------------------------------------------------------------------------------------------
# The commands against a running node


def test_notary_commands_against_a_node(tmp_path: Path) -> None:
    net = LocalNet(tmp_path / "net", validators=1)
    accounts = net.home / "accounts"
    node = str(net.home / "validator-0")
    env = {"CONSORTIA_KEY_PASSWORD": NET_PASSWORD}
    key_a = str(accounts / "broker-a-admin.key")
    key_b = str(accounts / "broker-b-admin.key")
    paper = tmp_path / "paper.txt"
    try:
        net.start_all()
        net.wait_for(net.names, 1)
        ids: list[str] = []
        for n in range(3):
            paper.write_bytes(f"working paper, version {n + 1}\n".encode())
            argv = ["notary", "submit", str(paper), "--type", "working-paper", "--project", "P-7"]
            argv += ["--key", key_a, "--node", node, "--json"]
            if ids:
                argv += ["--previous", ids[-1]]
            if n == 2:
                argv += ["--seal"]
            r = runner.invoke(app, argv, env=env)
            assert r.exit_code == 0, r.output
            out = json.loads(r.stdout)
            assert out["ok"] and out["deposit_id"].startswith("ND-")
            assert out["sha256"] == hashlib.sha256(paper.read_bytes()).hexdigest()
            ids.append(out["deposit_id"])
        # The file as it is now (version 3) is found; version 1's content too; a changed byte not.
        found = runner.invoke(app, ["notary", "verify", str(paper), "--node", node, "--json"])
        assert found.exit_code == 0, found.output
        (dep,) = json.loads(found.stdout)["deposits"]
        assert (dep["deposit_id"], dep["org_id"], dep["version"]) == (ids[2], "broker-a", 3)
        assert dep["sealed_metadata"] is True and dep["previous"] == ids[1]
        human = runner.invoke(app, ["notary", "verify", str(paper), "--node", node])
        assert human.exit_code == 0 and f"FOUND {paper}" in human.stdout
        assert "deposited by broker-a" in human.stdout
        paper.write_bytes(b"working paper, version 3\r")  # one byte differs
        lost = runner.invoke(app, ["notary", "verify", str(paper), "--node", node])
        assert lost.exit_code == 1 and lost.stdout.startswith("NOT FOUND")
        history = runner.invoke(app, ["notary", "history", ids[0], "--node", node, "--json"])
        assert history.exit_code == 0, history.output
        chain = json.loads(history.stdout)
        assert [(d["deposit_id"], d["version"]) for d in chain] == list(
            zip(ids, [1, 2, 3], strict=True)
        )
        # Withdraw: not by another organization (exit 1, the code), then by the depositor.
        refused = runner.invoke(
            app,
            ["notary", "withdraw", ids[2], "--reason", "x", "--key", key_b, "--node", node],
            env=env,
        )
        assert refused.exit_code == 1 and "NOTARY_FORBIDDEN" in refused.output
        done = runner.invoke(
            app,
            ["notary", "withdraw", ids[2], "--reason", "replaced", "--key", key_a, "--node", node],
            env=env,
        )
        assert done.exit_code == 0, done.output
        shown = runner.invoke(app, ["notary", "history", ids[2], "--node", node])
        assert shown.exit_code == 0 and "WITHDRAWN" in shown.stdout
        # Bad input: one clear line, exit 2, nothing submitted.
        keyed = ["--key", key_a, "--node", node]
        bad = runner.invoke(
            app,
            ["notary", "submit", str(paper), "--type", "bad type", "--project", "P-7", *keyed],
            env=env,
        )
        assert bad.exit_code == 2 and "INVALID_ARGUMENT" in bad.output and "doc_type" in bad.output
        none = runner.invoke(app, ["notary", "history", "ND-0000000099", "--node", node])
        assert none.exit_code == 1 and "NOTARY_NOT_FOUND" in none.output
        nofile = runner.invoke(app, ["notary", "verify", str(tmp_path / "absent"), "--node", node])
        assert nofile.exit_code == 2 and "not a readable file" in nofile.output
    finally:
        net.stop_all()
