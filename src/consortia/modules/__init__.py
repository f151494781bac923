"""Native modules of the execution layer; ``NATIVE_MODULES`` maps a module name to its table."""

from __future__ import annotations

from consortia.execution.module import Module
from consortia.modules import (
    corporate_actions,
    enforcement,
    governance,
    investors,
    registry,
    securities,
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
    )
}

__all__ = ["NATIVE_MODULES"]
