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
# (`executable_path`; Playwright's own browser downloads are never used). Install it if missing.
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (apt) for the browser tests"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
    if ! { $sudo_cmd apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { $sudo_cmd apt-get update -qq >/dev/null 2>&1 \
             && $sudo_cmd apt-get install -y -qq chromium >/dev/null 2>&1; }; }; then
      echo "warning: could not install chromium with apt-get; tests/test_browser.py will be" \
        "skipped (install the Debian package 'chromium' by hand)" >&2
    fi
  else
    echo "note: /usr/bin/chromium is missing and apt-get is unavailable; tests/test_browser.py" \
      "will be skipped" >&2
  fi
fi
