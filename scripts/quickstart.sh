#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run coral on the bundled DailyDialog.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
coral env
coral data stats --recipe recipes/quickstart.toml
coral data show --recipe recipes/quickstart.toml --split test -n 2
