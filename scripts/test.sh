#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv, then pytest (extra args are passed on; `-n 0` runs
# in one process). Two pytest-xdist workers, one file each at a time, one thread each (tests/conftest.py):
# on 2 cores the tiny models' matmuls gain little from a second thread, so two workers finish sooner.
#   CORAL_TEST_WORKERS   how many workers (default: 2)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
exec python -m pytest -n "${CORAL_TEST_WORKERS:-2}" --dist loadfile "$@"
