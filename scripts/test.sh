#!/usr/bin/env bash
# The test command: installs what it needs, then lint, type-check and the default (fast) test suite.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m slow` for the soak / crash tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
echo "==> ruff"
.venv/bin/ruff check src tests bench
echo "==> mypy --strict"
.venv/bin/mypy
echo "==> pytest"
if [ "$#" -eq 0 ]; then
  set -- -m "not slow" -n 2
fi
.venv/bin/python -m pytest "$@"
