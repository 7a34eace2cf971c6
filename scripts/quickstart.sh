#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run the whole pipeline at tiny size on the
# bundled DailyDialog (recipes/quickstart.toml): retriever -> CORAL generator -> generate -> score.
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
# Reward-model view of the generations (MAUDE-style): f_R of each generated response.
python - "$runs/quickstart-coral/test-predictions.jsonl" > "$runs/quickstart-coral/test-score-requests.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    print(json.dumps({"id": row["id"], "context": row["context"], "response": row["response"], "reference": row["reference"]}))
PY
coral retriever score -c "$runs/quickstart-retriever/checkpoints/best" -i "$runs/quickstart-coral/test-score-requests.jsonl" \
  > "$runs/quickstart-coral/test-scores.jsonl"
python - "$runs/quickstart-coral/test-scores.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"\n{len(rows)} generated test responses; mean retriever score f_R = {sum(r['score'] for r in rows) / len(rows):.4f}")
for row in rows[:2]:
    print(f"  context : {row['context'][-1]}\n  model   : {row['response']}\n  truth   : {row['reference']}\n  f_R     : {row['score']:.3f}\n")
PY
coral runs show "$runs/quickstart-coral"
