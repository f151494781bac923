#!/usr/bin/env bash
# Creates .venv beside the project (if missing or stale) and installs consortia with its dev tools.
# Idempotent: re-running only reinstalls when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "consortia needs Python >= 3.11 (found: $("$py" --version 2>&1))" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtual environment in .venv"
  "$py" -m venv .venv
fi
stamp=.venv/.consortia-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing consortia and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
# The browser tests (tests/test_browser.py) drive the distribution's Chromium through Playwright
# (`executable_path`; Playwright's own browser downloads are never used). Install it if missing:
# as root, or through sudo; non-interactively (a debconf prompt must not hang a silent install);
# apt's output goes to .venv/chromium-install.log, shown in part if the install fails.
chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (apt) for the browser tests"
    as_root=(env DEBIAN_FRONTEND=noninteractive)
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
      as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
    fi
    apt_log=.venv/chromium-install.log
    # Try without refreshing the package lists first (fast when they are current).
    if ! { "${as_root[@]}" apt-get install -y -q chromium >"$apt_log" 2>&1 \
        || { "${as_root[@]}" apt-get update -q >>"$apt_log" 2>&1 \
             && "${as_root[@]}" apt-get install -y -q chromium >>"$apt_log" 2>&1; }; }; then
      tail -n 5 "$apt_log" >&2 || true
    fi
  fi
  if [ ! -x "$chromium" ]; then
    echo "warning: $chromium is missing (no apt-get, no root or sudo, or the Debian package" \
      "'chromium' is not available: see .venv/chromium-install.log); tests/test_browser.py" \
      "will fail until it is installed, or skip with CONSORTIA_SKIP_BROWSER=1" >&2
  fi
fi
# The smart-contract compilers (vyper, solc-js) the contract tests use: pinned, idempotent.
bash "$root/scripts/toolchain.sh"
