#!/usr/bin/env bash
# Installs the smart-contract compilers consortia's tests and examples use, pinned:
#   - Vyper: the `vyper` Python package, into .venv (it is also in the `dev` extra of pyproject.toml);
#   - Solidity: solc-js (the `solc` package of the npm registry, the official compiler built to
#     WebAssembly, run by node) into the project-local, gitignored directory .tools/.
# The node itself only needs py-evm at run time (a runtime dependency); compilers are tooling.
# Idempotent: re-running does nothing when the pinned versions are already installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

VYPER_VERSION="0.4.3"
SOLC_VERSION="0.8.37"

if [ ! -x .venv/bin/python ]; then
  echo "toolchain.sh: .venv is missing; run scripts/bootstrap.sh first" >&2
  exit 2
fi
if [ "$(.venv/bin/python -c 'import importlib.metadata as m
try:
    print(m.version("vyper"))
except m.PackageNotFoundError:
    print("")' 2>/dev/null)" != "$VYPER_VERSION" ]; then
  echo "==> installing vyper $VYPER_VERSION into .venv"
  .venv/bin/python -m pip install --quiet "vyper==$VYPER_VERSION"
fi

tools=.tools
mkdir -p "$tools"
# The directory is never committed: a .gitignore inside it ignores everything, itself included.
[ -f "$tools/.gitignore" ] || printf '*\n' > "$tools/.gitignore"
installed=""
if [ -f "$tools/node_modules/solc/package.json" ]; then
  installed="$(node -p "require('./$tools/node_modules/solc/package.json').version" 2>/dev/null || true)"
fi
if [ "$installed" != "$SOLC_VERSION" ]; then
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "toolchain.sh: node and npm are needed for the Solidity compiler (solc-js);" \
      "install them (Debian: apt-get install nodejs npm) and re-run" >&2
    exit 2
  fi
  echo "==> installing solc-js $SOLC_VERSION (npm) into $tools/node_modules"
  [ -f "$tools/package.json" ] || printf '{"name": "consortia-tools", "private": true}\n' \
    > "$tools/package.json"
  npm install --prefix "$tools" --no-audit --no-fund --save-exact --silent "solc@$SOLC_VERSION"
fi
echo "==> contract toolchain ready: vyper $VYPER_VERSION, solc-js $SOLC_VERSION"
