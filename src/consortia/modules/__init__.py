"""Native modules of the execution layer; ``NATIVE_MODULES`` maps a module name to its table."""

from __future__ import annotations

from consortia.execution.module import Module
from consortia.modules import (
    corporate_actions,
    ecny,
    enforcement,
    funds,
    governance,
    insurance,
    investors,
    registry,
    securities,
    settlement,
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
    )
}

__all__ = ["NATIVE_MODULES"]
