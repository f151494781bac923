"""Compile Vyper and Solidity sources to EVM bytecode (tooling: tests, examples, the CLI).

The node never compiles: it executes bytecode. The compilers are installed by
``scripts/toolchain.sh``: Vyper as the ``vyper`` Python package (pinned in the ``dev`` extra),
Solidity as solc-js (the npm ``solc`` package: the official compiler built to WebAssembly) run by
``node`` from the project-local ``.tools/node_modules``. Both target the EVM version the engine
runs (``EVM_VERSION``), so a compiler never emits an opcode the engine lacks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

EVM_VERSION: Final = "cancun"
VYPER_VERSION: Final = "0.4.3"
SOLC_VERSION: Final = "0.8.37"

INSTALL_HINT: Final = "run scripts/toolchain.sh to install the contract compilers"
_PROJECT_ROOT: Final = Path(__file__).resolve().parents[3]
_SOLC_TIMEOUT_S: Final = 120


class ToolchainError(RuntimeError):
    """A compiler is missing, or the wrong version."""


class CompileError(ValueError):
    """The compiler rejected the source; the message holds its diagnostics."""


@dataclass(frozen=True)
class CompiledContract:
    """A compiled contract: its init code (deploy this), runtime code and ABI."""

    name: str
    init_code: bytes
    runtime_code: bytes
    abi: tuple[dict[str, Any], ...]


def compile_vyper(source: str, *, name: str = "contract") -> CompiledContract:
    """Compile one Vyper source with the pinned ``vyper`` package."""
    try:
        # A development tool, never needed by a running node (and untyped).
        import vyper  # type: ignore[import-untyped]  # noqa: PLC0415
        from vyper.compiler.settings import Settings  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError as exc:
        raise ToolchainError(f"the vyper compiler is not installed: {INSTALL_HINT}") from exc
    if vyper.__version__ != VYPER_VERSION:
        raise ToolchainError(
            f"vyper {vyper.__version__} is installed, consortia pins {VYPER_VERSION}: "
            f"{INSTALL_HINT}"
        )
    try:
        out = vyper.compile_code(
            source,
            output_formats=["bytecode", "bytecode_runtime", "abi"],
            settings=Settings(evm_version=EVM_VERSION),
        )
    except Exception as exc:  # vyper raises its own exception tree for every source error
        raise CompileError(f"vyper: {exc}") from exc
    return CompiledContract(
        name,
        bytes.fromhex(out["bytecode"].removeprefix("0x")),
        bytes.fromhex(out["bytecode_runtime"].removeprefix("0x")),
        tuple(out["abi"]),
    )


def solc_js_path() -> Path:
    """The solc-js package directory (``CONSORTIA_SOLC_JS`` overrides the project's .tools)."""
    override = os.environ.get("CONSORTIA_SOLC_JS")
    return Path(override) if override else _PROJECT_ROOT / ".tools" / "node_modules" / "solc"


# Reads a standard-JSON input on stdin and prints solc's standard-JSON output.
_SOLC_DRIVER: Final = (
    "const solc = require(process.argv[1]);"
    "let input = '';"
    "process.stdin.setEncoding('utf8');"
    "process.stdin.on('data', (chunk) => { input += chunk; });"
    "process.stdin.on('end', () => {"
    " process.stdout.write(JSON.stringify({version: solc.version(), output: solc.compile(input)}));"
    "});"
)


def compile_solidity(source: str, name: str) -> CompiledContract:
    """Compile contract ``name`` of one Solidity source with the pinned solc-js."""
    node = shutil.which("node")
    package = solc_js_path()
    if node is None:
        raise ToolchainError(f"node is not installed (solc-js needs it): {INSTALL_HINT}")
    if not (package / "package.json").is_file():
        raise ToolchainError(f"solc-js is not installed at {package}: {INSTALL_HINT}")
    request = {
        "language": "Solidity",
        "sources": {"contract.sol": {"content": source}},
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }
    proc = subprocess.run(
        [node, "-e", _SOLC_DRIVER, str(package)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=_SOLC_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolchainError(f"solc-js failed to run: {proc.stderr.strip()[:2000]}")
    reply = json.loads(proc.stdout)
    if not str(reply["version"]).startswith(SOLC_VERSION + "+"):
        raise ToolchainError(
            f"solc-js {reply['version']} is installed, consortia pins {SOLC_VERSION}: "
            f"{INSTALL_HINT}"
        )
    output = json.loads(reply["output"])
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError(
            "solc: " + "\n".join(e.get("formattedMessage", e["message"]) for e in errors)
        )
    contract = output.get("contracts", {}).get("contract.sol", {}).get(name)
    if contract is None:
        raise CompileError(f"solc: the source defines no contract {name!r}")
    return CompiledContract(
        name,
        bytes.fromhex(contract["evm"]["bytecode"]["object"]),
        bytes.fromhex(contract["evm"]["deployedBytecode"]["object"]),
        tuple(contract["abi"]),
    )
