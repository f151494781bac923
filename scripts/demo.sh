#!/usr/bin/env bash
# The main job: installs what it needs, then runs the demo chain on embedded defaults.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec .venv/bin/consortia demo "$@"
