"""The default consortium of the demo, the tests and the simulator: its organizations, member
accounts and validator operators (genesis data, no keys)."""

from __future__ import annotations

from dataclasses import dataclass

from consortia.execution.genesis import GenesisOrg

DEFAULT_GENESIS_TIME_MS = (
    1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so genesis is reproducible
)


@dataclass(frozen=True)
class AccountSpec:
    name: str
    org_id: str
    roles: tuple[str, ...]


DEFAULT_ORGS: tuple[GenesisOrg, ...] = (
    GenesisOrg("csrc", "Securities Regulator", "regulator"),
    GenesisOrg("exchange", "Regional Equity Exchange", "exchange"),
    GenesisOrg("broker-a", "Alpha Securities", "broker"),
    GenesisOrg("broker-b", "Beta Securities", "broker"),
    GenesisOrg("bank-ccb", "Construction Bank (e-CNY operator)", "bank"),
    GenesisOrg("bank-bocom", "Bank of Communications (e-CNY operator)", "bank"),
    GenesisOrg("pboc", "Central Bank", "central_bank"),
    GenesisOrg("fund-harvest", "Harvest Fund Management", "fund_manager"),
    GenesisOrg("insurer-ping", "Ping Insurance", "insurer"),
    GenesisOrg("court-sh", "Shanghai Financial Court", "court"),
)

DEFAULT_ACCOUNTS: tuple[AccountSpec, ...] = (
    AccountSpec("regulator", "csrc", ("regulator",)),
    AccountSpec("exchange-admin", "exchange", ("admin", "exchange", "org_admin")),
    AccountSpec("broker-a-admin", "broker-a", ("broker", "org_admin")),
    AccountSpec("broker-b-admin", "broker-b", ("broker", "org_admin")),
    AccountSpec("ccb-admin", "bank-ccb", ("operator_bank", "org_admin")),
    AccountSpec("bocom-admin", "bank-bocom", ("operator_bank", "org_admin")),
    AccountSpec("pboc-admin", "pboc", ("central_bank", "org_admin")),
    AccountSpec("fund-admin", "fund-harvest", ("fund_manager", "org_admin")),
    AccountSpec("insurer-admin", "insurer-ping", ("insurer", "org_admin")),
    AccountSpec("court-officer", "court-sh", ("court",)),
    # The regulator's relayer carries headers up to the supervision chain and orders down.
    AccountSpec("relayer", "csrc", ("relayer",)),
    AccountSpec("ccb-custodian", "bank-ccb", ("custodian",)),
)

DEFAULT_VALIDATORS: tuple[str, ...] = ("exchange", "broker-a", "broker-b", "bank-ccb")


# The supervision chain (the upper tier): run by the regulator and the securities association.
SUPERVISION_ORGS: tuple[GenesisOrg, ...] = (
    GenesisOrg("csrc", "Securities Regulator", "regulator"),
    GenesisOrg("sac", "Securities Association", "association"),
)
SUPERVISION_ACCOUNTS: tuple[AccountSpec, ...] = (
    AccountSpec("regulator", "csrc", ("regulator",)),
    AccountSpec("sac-admin", "sac", ("org_admin",)),
    AccountSpec("relayer", "csrc", ("relayer",)),
)
SUPERVISION_VALIDATORS: tuple[str, ...] = ("csrc", "sac", "csrc", "sac")
