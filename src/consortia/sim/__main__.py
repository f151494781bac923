"""``python -m consortia.sim --seeds A:B [--verbose]``: run seeds A..B-1 and print a summary."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from consortia.sim.simulation import Simulation


def _seed_range(text: str) -> range:
    if ":" in text:
        lo, hi = text.split(":", 1)
        return range(int(lo), int(hi))
    return range(int(text), int(text) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consortia.sim", description=__doc__)
    parser.add_argument("--seeds", default="0:100", help="A:B runs seeds A..B-1 (default 0:100)")
    parser.add_argument("--verbose", action="store_true", help="print each run and its trace")
    args = parser.parse_args(argv)
    seeds = _seed_range(args.seeds)
    started = time.perf_counter()
    failures: list[str] = []
    totals: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    max_round = 0
    for seed in seeds:
        sim = Simulation(seed, trace=args.verbose)
        result = sim.run()
        max_round = max(max_round, result.stats["max_round"])
        totals.update({k: v for k, v in result.stats.items() if k != "max_round"})
        totals["commits"] += len(result.commits)
        totals["virtual_ms"] += result.virtual_ms
        for r in result.scenario.roles:
            roles[r.value] += 1
        if args.verbose:
            print(f"seed {seed}: {'ok' if result.ok else 'FAIL'} {result.scenario.describe()}")
            print(f"  heights {result.heights} in {result.virtual_ms}ms, {result.stats}")
            if not result.ok and sim.trace is not None:
                print("\n".join("    " + line for line in sim.trace[-200:]))
        if not result.ok:
            assert result.failure is not None
            failures.append(result.failure)
            print(result.failure, file=sys.stderr)
    elapsed = time.perf_counter() - started
    n = len(seeds)
    print(
        f"{n} seeds, {len(failures)} failed, {elapsed:.1f}s ({n / elapsed:.1f} seeds/s); "
        f"{totals['commits']} commits ({totals['sync_commits']} by block sync), "
        f"virtual {totals['virtual_ms'] / 1000:.0f}s, highest commit round {max_round}, "
        f"evidence {totals['evidence']} ({totals['evidence_on_chain']} on chain), "
        f"messages {totals['messages_sent']} sent / "
        f"{totals['messages_dropped']} dropped / {totals['messages_duplicated']} duplicated"
    )
    print("roles: " + ", ".join(f"{k} {v}" for k, v in sorted(roles.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
