"""Native modules of the execution layer; ``NATIVE_MODULES`` maps a module name to its table."""

from __future__ import annotations

from collections.abc import Callable

from consortia.execution.module import Module
from consortia.modules import (
    anchoring,
    contracts,
    corporate_actions,
    ecny,
    enforcement,
    funds,
    futures,
    governance,
    insurance,
    investors,
    notary,
    orders,
    registry,
    reports,
    securities,
    settlement,
    supervision,
)

NATIVE_MODULES: dict[str, Module] = {
    m.name: m
    for m in (
        registry.MODULE,
        governance.MODULE,
        investors.MODULE,
        securities.MODULE,
        enforcement.MODULE,
        corporate_actions.MODULE,
        ecny.MODULE,
        funds.MODULE,
        settlement.MODULE,
        insurance.MODULE,
        anchoring.MODULE,
        reports.MODULE,
        orders.MODULE,
        supervision.MODULE,
        contracts.MODULE,
        futures.MODULE,
        notary.MODULE,
    )
}


# Which modules each tier of the two-tier architecture runs (a chain's genesis names its tier).
# Registry and governance run everywhere: members, keys, roles and votes exist on both tiers.
TIER_MODULES: dict[str, frozenset[str]] = {
    "business": frozenset(
        {
            "registry",
            "governance",
            "investors",
            "securities",
            "enforcement",
            "corporate_actions",
            "ecny",
            "settlement",
            "funds",
            "insurance",
            "supervision",
            "contracts",
            "futures",
            "notary",
        }
    ),
    "supervision": frozenset({"registry", "governance", "anchoring", "reports", "orders"}),
}
TIER_KEY = b"chain/tier"


def modules_of_chain(read: Callable[[bytes], bytes | None]) -> frozenset[str]:
    """The modules enabled on a chain, by the tier its genesis recorded (``read`` reads its
    state; no transaction changes the tier, so the executor asks once per block)."""
    raw = read(TIER_KEY)
    return TIER_MODULES["business" if raw is None else raw.decode()]


__all__ = ["NATIVE_MODULES", "TIER_KEY", "TIER_MODULES", "modules_of_chain"]
