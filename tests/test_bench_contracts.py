"""`bench/contracts.py --quick` still runs against the current module and examples (a smoke run:
it checks the script works and reports every figure, not how fast anything is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_contracts_bench_quick_run_reports_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "contracts.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    for key in (
        "erc20_transfer_vyper_chain_calls_per_s",
        "erc20_transfer_solidity_chain_calls_per_s",
        "erc20_transfer_vyper_engine_calls_per_s",
        "escrow_release_chain_calls_per_s",
    ):
        assert figures[key] > 0, key
