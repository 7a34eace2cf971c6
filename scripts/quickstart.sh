#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then show CORAL working on the bundled data with the
# bundled models (recipes/quickstart.toml): train a reward and an independent evaluator, CORAL-fine-tune
# SmolLM2-135M-Instruct (LoRA + KL guard), generate for 100 test contexts with the zero-shot and the
# CORAL model, and compare them.  CORAL_RUNS_DIR=DIR puts the runs elsewhere (default: runs/).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
runs=${CORAL_RUNS_DIR:-runs}/quickstart
rm -rf "$runs"
start=$SECONDS
coral recipe run recipes/quickstart.toml --runs-dir "$runs" >/dev/null  # results.md is shown below, once
echo
coral evaluate compare "$runs/smollm2-zs/test-eval.json" "$runs/smollm2-coral/test-eval.json" --bootstrap 1000
python - "$runs" <<'PY'
import json, sys, textwrap
runs = sys.argv[1]
zs, coral = ([json.loads(line) for line in open(f"{runs}/{name}/test-predictions.jsonl", encoding="utf-8")]
             for name in ("smollm2-zs", "smollm2-coral"))
for name in ("smollm2-zs", "smollm2-coral"):
    warnings = json.load(open(f"{runs}/{name}/test-eval.json", encoding="utf-8"))["warnings"]
    print(f"{name}: " + ("; ".join(warnings) if warnings else "no collapse warning"))
show = lambda label, text: print(textwrap.fill(text, 100, initial_indent=f"  {label:<10}", subsequent_indent=" " * 12))
for a, b in [(zs[i], coral[i]) for i in (0, 37, 74)]:  # three fixed test contexts
    print()
    show("context", " / ".join(a["context"][-2:]))
    show("zero-shot", a["response"])
    show("CORAL", b["response"])
    show("reference", a["reference"])
PY
cat <<NEXT

quickstart done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $runs/results.md has the table.
Next:
  source .venv/bin/activate
  coral chat -c $runs/smollm2-coral/checkpoints/best --reward-checkpoint $runs/reward-dmi/checkpoints/best
  coral runs show $runs/smollm2-coral                         # the CORAL run's curves
  # read the two rows blind yourself: which reply would you rather get? (docs/human-evaluation.md)
  coral annotate new $runs/study -p $runs/smollm2-coral/test-predictions.jsonl -p $runs/smollm2-zs/test-predictions.jsonl --mode pairwise -n 30
  coral annotate run $runs/study --annotator \$USER && coral annotate report $runs/study
  coral recipe run recipes/dailydialog/pretrained/table.toml  # SmolLM2 zero-shot vs reranked vs CE vs CORAL, 500 contexts (~1 h 30 min CPU)
  coral recipe run recipes/dailydialog/cpu/table.toml         # the paper's CE vs CORAL comparison at CPU scale
  coral recipe run recipes/dailydialog/table1.toml            # the paper's Table 1 at full size (a GPU)
NEXT
