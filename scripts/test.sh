#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv, then pytest (extra args are passed on).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
exec python -m pytest "$@"
