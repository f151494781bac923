"""One business chain that ran the whole demo story (funds confirmed on a rehearsal clock,
policies, wallets, holdings) and a supervision chain that registered it and anchored every header,
both reopened as ``LocalChain``s to serve the REST API: for the typed-read, ``/v1/me``, evidence
and schema tests. Unlike ``tests.evidencekit.build_world`` it keeps the story's keys (the
investors' keys are generated as the story runs), since the API tests sign requests with them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from consortia import codec
from consortia.crypto import KeyPair
from consortia.execution.genesis import Genesis
from consortia.node.demo import RehearsalClock
from consortia.node.local import ACCOUNTS_DIR, LocalChain, load_key_dir
from consortia.node.story import Story, run_story
from tests.evidencekit import (
    BUSINESS_ID,
    PASSWORD,
    SUPERVISION_ID,
    InProcess,
    Signer,
    anchor_all,
    make_home,
    open_chain,
)


@dataclass(frozen=True)
class ApiWorld:
    business_home: Path
    supervision_home: Path
    business_genesis: Genesis
    supervision_genesis: Genesis
    keys: dict[str, KeyPair]  # the business chain's accounts (the story's, investors included)
    supervision_keys: dict[str, KeyPair]
    anchored: int  # business heights 1..anchored are anchored on the supervision chain


def build_api_world(root: Path, *, anchor: bool = True) -> ApiWorld:
    bhome, shome = root / "business", root / "supervision"
    bgen = make_home(bhome, BUSINESS_ID)
    sgen = make_home(shome, SUPERVISION_ID, tier="supervision")
    clock = RehearsalClock()
    chain = open_chain(bhome, clock)
    keys = load_key_dir(bhome / ACCOUNTS_DIR, PASSWORD)
    failures: list[str] = []

    def check(label: str, ok: bool, detail: str) -> None:
        if not ok:
            failures.append(f"{label}: {detail}")

    harness = InProcess(chain, clock, {})
    story = Story(
        harness, chain.suite, keys, Signer(chain.suite, BUSINESS_ID), check, lambda _: None
    )
    harness.keys = story.keys
    try:
        run_story(story)
        assert not failures, failures
    finally:
        chain.close()
    sup = open_chain(shome, RehearsalClock())
    skeys = load_key_dir(shome / ACCOUNTS_DIR, PASSWORD)
    ssign = Signer(sup.suite, SUPERVISION_ID)
    anchored = 0
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
        committed = sup.commit([register])
        assert [r.code for r in committed.receipts] == [""], committed.receipts
        if anchor:
            anchored = anchor_all(sup, ssign, skeys["relayer"], bhome, harness.announced, first=1)
        sup.commit([])
    finally:
        sup.close()
    return ApiWorld(bhome, shome, bgen, sgen, dict(story.keys), skeys, anchored)


@contextmanager
def opened(home: Path) -> Iterator[LocalChain]:
    """``home``'s chain, open (its clock starts after its last block)."""
    chain = open_chain(home, RehearsalClock())
    try:
        yield chain
    finally:
        chain.close()
