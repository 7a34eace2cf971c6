#!/usr/bin/env bash
# One GPU check at the paper's sizes (issue 16), meant to fit 8 minutes on one H100/H200 (an H200 run
# with 30 bench steps, 1,000 contexts and 400 training steps took over 9: docs/RESULTS.md):
#   1. `coral bench` with the paper's generator (6+6 layers, d = 1,024, 16,384-token batches):
#      CE vs Seq2SeqTrainer, a CORAL mix-policy step vs a CE step, generation vs a batched
#      `model.generate` loop, reward scoring;
#   2. a short CE training of that generator, then the time to generate all 5,740 DailyDialog test
#      responses (nucleus p 0.9, <= 40 tokens), with a look at what it says.
# Needs coral installed as the README says and a CUDA device. Writes OUT_DIR (default gpu-check/):
# env.json, bench.json (with --profile), profile-ce_step.txt and profile-decode.txt (torch.profiler: the top
# ops by device time of one CE step and one decoding batch), train.log, test-predictions.jsonl
# (+ .config.json), eval.json, summary.json;
# the trained generator goes to RUNS_DIR (default OUT_DIR/runs).
# Smaller (a CPU dry run): STEPS=3 CONTEXTS=16 PAIRS=16 TRAIN_STEPS=2 MAX_PAIRS=64 SETS="generator.d_model=64 ..."
#   bash scripts/gpu-check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
steps=${STEPS:-20} contexts=${CONTEXTS:-500} pairs=${PAIRS:-5000} train_steps=${TRAIN_STEPS:-150}
device=${DEVICE:-cuda} runs=${RUNS_DIR:-$out/runs}
sets=()
for s in ${SETS:-}; do sets+=(--set "$s"); done
limit=()
[ -n "${MAX_PAIRS:-}" ] && limit=(--max-pairs "$MAX_PAIRS")
mkdir -p "$out"
t0=$SECONDS
stamp() { echo "[$(( SECONDS - t0 ))s] $*" >&2; }

coral env --json --device "$device" > "$out/env.json"
stamp "bench at paper size"
coral bench --recipe recipes/dailydialog/coral-bert-mix.toml --device "$device" --steps "$steps" \
  --contexts "$contexts" --pairs "$pairs" --rewards bert,esim,dmi --profile "${limit[@]}" "${sets[@]}" --out "$out/bench.json"

stamp "CE training, $train_steps steps"
rm -rf "$runs/ce"
t_train=$SECONDS
coral coral train --recipe recipes/dailydialog/ce.toml --device "$device" --max-steps "$train_steps" \
  --set runtime.runs_dir="$runs" --set train.warmup_steps=50 --set train.lr=5e-4 \
  --set train.eval_every=1000000 --set train.save_every=1000000 --set train.log_every=50 \
  "${limit[@]}" "${sets[@]}" --name ce > "$out/train.log" 2>&1 || { tail -20 "$out/train.log"; exit 1; }
train_s=$(( SECONDS - t_train ))

stamp "generating the DailyDialog test responses"
ckpt="$runs/ce/checkpoints/last"
coral generate -c "$ckpt" --split test --device "$device" --strategy nucleus --top-p 0.9 \
  --max-new-tokens 40 --seed 0 "${limit[@]}" -o "$out/test-predictions.jsonl"
coral evaluate -p "$out/test-predictions.jsonl" --metrics avg_len,bleu,distinct --json > "$out/eval.json"

python - "$out" "$train_s" "$train_steps" <<'PY'
import json, sys
from pathlib import Path
out, train_s, train_steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
bench = json.loads((out / "bench.json").read_text())
ce = bench["ce_training"]


def per_side(value):
    """{coral: ..., seq2seq_trainer: ...} of value(one trainer's bench entry)."""
    return {side: value(ce[key]) for side, key in (("coral", "coral_trainer"), ("seq2seq_trainer", "hf_seq2seq_trainer"))}


gen = json.loads((out / "test-predictions.jsonl.config.json").read_text())
ev = json.loads((out / "eval.json").read_text())
rows = [json.loads(line) for line in (out / "test-predictions.jsonl").open()]
summary = {
    "device": bench["machine"]["device"], "commit": bench["commit"],
    "ce_tokens_per_s": {"coral": bench["ce_training"]["coral_trainer"]["tokens_per_s"],
                        "seq2seq_trainer": bench["ce_training"]["hf_seq2seq_trainer"]["tokens_per_s"],
                        "ratio": bench["ce_training"]["throughput_ratio"]},
    "ce_mfu": per_side(lambda t: t.get("mfu")),
    "ce_seconds_per_step": per_side(lambda t: {"warmup": t["warmup_seconds_per_step"], "steady": t["seconds_per_step"]}),
    "coral_mix_step_over_ce_step": bench["coral_mix_step"]["step_time_ratio"],
    "generation_responses_per_s": {"coral": bench["generation"]["responses_per_s"],
                                   "batched_generate_loop": bench["generation"]["anchor"]["responses_per_s"],
                                   "ratio": bench["generation"]["speedup"],
                                   "static_kv_cache": bench["generation"].get("static_kv_cache")},
    "share_of_matmul_peak": per_side(lambda t: t.get("share_of_matmul_peak")),
    "arithmetic_ratio": {"ce": bench["ce_training"].get("arithmetic_ratio"),
                         "coral_over_ce": bench["coral_mix_step"].get("arithmetic_ratio")},
    "reward_pairs_per_s": {k: v["pairs_per_s"] for k, v in bench["reward_scoring"].items()},
    "ce_training": {"steps": train_steps, "seconds": train_s},
    "test_generation": {"responses": gen["count"], "seconds": gen["seconds"],
                        "responses_per_s": gen["count"] / max(gen["seconds"], 1e-9)},
    "test_metrics": {k: ev["metrics"].get(k) for k in ("avg_len", "BLEU", "Dist-1", "Dist-2")},
    "warnings": ev.get("warnings", []),
    "samples": [{"context": r["context"][-1], "response": r["response"], "reference": r.get("reference")}
                for r in rows[:: max(1, len(rows) // 5)][:5]],
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for stage, prof in bench.get("profile", {}).items():  # torch.profiler: top ops by device time
    (out / f"profile-{stage}.txt").write_text(prof["table"] + "\n")
print(json.dumps(summary, indent=2))
PY
stamp "done -> $out/summary.json"
