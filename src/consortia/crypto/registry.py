"""Suite lookup by the name a chain's genesis gives."""

from __future__ import annotations

from consortia.crypto.errors import UnknownSuiteError
from consortia.crypto.gm import GmSuite
from consortia.crypto.intl import IntlSuite
from consortia.crypto.suite import Suite

SUITES: tuple[str, ...] = ("intl", "gm")

# Suites hold no state, so one instance each is shared by the whole process.
_INSTANCES: dict[str, Suite] = {"intl": IntlSuite(), "gm": GmSuite()}
assert tuple(_INSTANCES) == SUITES


def get_suite(name: str) -> Suite:
    """The suite called ``name`` (one of ``SUITES``); UnknownSuiteError for anything else."""
    suite = _INSTANCES.get(name) if isinstance(name, str) else None
    if suite is None:
        raise UnknownSuiteError(f"unknown crypto suite {name!r}; expected one of {SUITES}")
    return suite
