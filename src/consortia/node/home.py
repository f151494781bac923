"""Create a node home: keys for validators and member accounts, and the genesis document.

The default consortium is the one the demo runs: a regulator, an exchange that administers the
consortium, two securities firms, an operator bank and the central bank; four validators run by
the exchange, both brokers and the bank (n = 4 = 3f + 1, f = 1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from consortia.crypto import KeyPair, encrypt_key_file, get_suite
from consortia.execution.consortium import (
    DEFAULT_ACCOUNTS,
    DEFAULT_GENESIS_TIME_MS,
    DEFAULT_ORGS,
    DEFAULT_VALIDATORS,
)
from consortia.execution.genesis import (
    Genesis,
    GenesisAccount,
    GenesisValidator,
    validate_genesis,
)
from consortia.node.local import ACCOUNTS_DIR, GENESIS_FILE, VALIDATORS_DIR, NodeError

PASSWORD_ENV = "CONSORTIA_KEY_PASSWORD"
DEMO_PASSWORD = "consortia-demo-only"  # used only when the env var is unset; never in production


def key_password() -> str:
    return os.environ.get(PASSWORD_ENV) or DEMO_PASSWORD


def init_home(
    home: Path,
    *,
    suite_name: str = "intl",
    chain_id: str = "consortia-demo",
    password: str | None = None,
    scrypt_n: int = 1 << 15,
    progress: Callable[[int, int], None] | None = None,
) -> Genesis:
    """Write keys and genesis into an empty ``home``; refuses to overwrite an existing chain.
    ``progress(done, total)`` is called after each key file (scrypt makes each take a while)."""
    suite = get_suite(suite_name)
    if (home / GENESIS_FILE).exists():
        raise NodeError(f"{home / GENESIS_FILE} already exists; choose another --home")
    password = password if password is not None else key_password()
    (home / VALIDATORS_DIR).mkdir(parents=True, exist_ok=True)
    (home / ACCOUNTS_DIR).mkdir(parents=True, exist_ok=True)

    total, done = len(DEFAULT_VALIDATORS) + len(DEFAULT_ACCOUNTS), 0

    def new_key(directory: str, name: str) -> KeyPair:
        nonlocal done
        kp = suite.generate_keypair()
        path = home / directory / f"{name}.key"
        path.write_bytes(encrypt_key_file(kp, password, scrypt_n=scrypt_n))
        path.chmod(0o600)
        done += 1
        if progress is not None:
            progress(done, total)
        return kp

    validators = tuple(
        GenesisValidator(name, new_key(VALIDATORS_DIR, name).public_key, 10)
        for name in DEFAULT_VALIDATORS
    )
    accounts = tuple(
        GenesisAccount(
            spec.name, new_key(ACCOUNTS_DIR, spec.name).public_key, spec.org_id, spec.roles
        )
        for spec in DEFAULT_ACCOUNTS
    )
    genesis = Genesis(
        chain_id=chain_id,
        suite=suite_name,
        tier="business",
        genesis_time_ms=DEFAULT_GENESIS_TIME_MS,
        orgs=DEFAULT_ORGS,
        accounts=accounts,
        validators=validators,
        params={},
    )
    validate_genesis(genesis)
    (home / GENESIS_FILE).write_text(genesis.to_json())
    return genesis
