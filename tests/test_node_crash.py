"""kill -9 a real node process while it commits blocks; it must always reopen consistent.

The child runs the real block path (propose, re-validate, certify, one atomic LMDB commit) in a
loop. The parent SIGKILLs it at random moments (seeded), then reopens the home exactly as a
restarting node does (``LocalChain`` restores state and checks it against the head's state root)
and re-verifies the whole chain from genesis with ``verify_chain``. Nothing committed may be lost:
the head never moves backwards across crashes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consortia.node.home import init_home
from consortia.node.local import VALIDATORS_DIR, LocalChain, load_key_dir
from consortia.node.verify import verify_chain

PASSWORD = "crash-test"

CHILD = r"""
import sys
from pathlib import Path
from consortia.ledger.types import sign_transaction
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir

home = Path(sys.argv[1])
vkeys = load_key_dir(home / VALIDATORS_DIR, "crash-test")
broker = load_key_dir(home / ACCOUNTS_DIR, "crash-test")["broker-a-admin"]
chain = LocalChain(home, vkeys)
suite = chain.suite
from consortia import codec
from consortia.modules.registry import Account, account_key
raw = chain.state.tree.get(account_key(suite.address(broker.public_key)))
nonce = codec.decode_struct(Account, raw).nonce
print("ready", chain.height, flush=True)
while True:
    txs = []
    for _ in range(40):
        kp = suite.generate_keypair()
        txs.append(sign_transaction(suite, broker, chain_id=chain.state.chain_id, nonce=nonce,
                   module="registry", method="register_account",
                   args={"public_key": kp.public_key, "org_id": "broker-a", "roles": ["investor"]}))
        nonce += 1
    chain.commit(txs)
    print("committed", chain.height, flush=True)
"""


def _crash_loop(tmp_path: Path, kills: int, seed: int) -> None:
    home = tmp_path / "node"
    init_home(home, password=PASSWORD, scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    rng = random.Random(seed)
    last_height = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_no in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready"), (ready, proc.stderr.read() if proc.stderr else "")
        assert int(ready.split()[1]) >= last_height  # nothing committed was lost
        # Kill at a random moment: often mid-commit, since commits take most of the loop.
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
        with LocalChain(home, vkeys) as chain:  # restores and checks the state root
            assert chain.height >= last_height, f"round {round_no}: head went backwards"
            last_height = chain.height
    verdict = verify_chain(home)
    assert verdict.ok, verdict.reason
    assert verdict.head_height == last_height
    assert last_height > 0


def test_kill_dash_nine_during_commits_20_times(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=20, seed=20261126)


@pytest.mark.slow
def test_kill_dash_nine_during_commits_soak(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=200, seed=7)
