#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run the whole pipeline at tiny size on the
# bundled DailyDialog (recipes/quickstart.toml): retriever -> CORAL generator -> generate -> evaluate.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
recipe=recipes/quickstart.toml
runs=${CORAL_RUNS_DIR:-runs}
rm -rf "$runs/quickstart-retriever" "$runs/quickstart-coral"
coral env
coral retriever train --recipe "$recipe" --set "runtime.runs_dir=$runs" --name quickstart-retriever
coral coral train --recipe "$recipe" --set "runtime.runs_dir=$runs" --name quickstart-coral \
  --reward-checkpoint "$runs/quickstart-retriever/checkpoints/best"
coral generate -c "$runs/quickstart-coral/checkpoints/best" --recipe "$recipe" --split test --max-pairs 200 \
  --out "$runs/quickstart-coral/test-predictions.jsonl"
python - "$runs/quickstart-coral/test-predictions.jsonl" <<'PY'
import json, sys
for row in [json.loads(line) for line in open(sys.argv[1])][:2]:
    print(f"  context : {row['context'][-1]}\n  model   : {row['response']}\n  truth   : {row['reference']}\n")
PY
coral runs show "$runs/quickstart-coral"
echo "(tiny models trained for about two minutes on a CPU: expect poor responses, and an undertrained"
echo " reward that is easy to game; recipes/dailydialog/ holds the paper-size runs and tables)"
# Last, the evaluate table: Avg. Len, BLEU, METEOR, Dist-1/2, and R3 of the training reward.
coral evaluate -p "$runs/quickstart-coral/test-predictions.jsonl" \
  --reward-checkpoint "$runs/quickstart-retriever/checkpoints/best" --out "$runs/quickstart-coral/test-eval.json"
