#!/usr/bin/env bash
# The blind human study of docs/RESULTS.md ("Blind human study"), end to end, resumable:
#  1. train the rows: recipes/dailydialog/pretrained/human-study.toml (the DMI reward and evaluator,
#     CE-FT, and CORAL from the zero-shot model), then CORAL-FT = CORAL fine-tuning of CE-FT
#     (recipes/dailydialog/pretrained/smollm2-ce-coral.toml);
#  2. generate for the 150 random test contexts of docs/results/human-study/test-contexts.jsonl with one
#     decoding for every row (nucleus p 0.9, temperature 0.7, at most 40 new tokens, seed 0);
#  3. make the blind studies, 100 contexts each drawn with seed 0: pairwise CORAL-FT vs zero-shot and vs
#     CE-FT, and the paper's likert study of CORAL-FT, CE-FT, zero-shot and the references.
# Then each annotator: coral annotate run STUDY --annotator NAME; and coral annotate report STUDY.
# STUDY_DIR=DIR writes the predictions and studies elsewhere (default: docs/results/human-study).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
runs=runs/dd-study
out=${STUDY_DIR:-docs/results/human-study}
contexts=docs/results/human-study/test-contexts.jsonl
coral recipe run recipes/dailydialog/pretrained/human-study.toml --jobs 2
[ -d "$runs/smollm2-ce-coral/checkpoints/best" ] || coral coral train \
  --recipe recipes/dailydialog/pretrained/smollm2-ce-coral.toml --name smollm2-ce-coral \
  --reward-checkpoint "$runs/reward-dmi/checkpoints/best" --set runtime.runs_dir="$runs"
decode=(--strategy nucleus --top-p 0.9 --temperature 0.7 --max-new-tokens 40 --seed 0 --set data.max_context_tokens=128)
p=$out/predictions
mkdir -p "$p"
gen() {  # gen NAME CHECKPOINT
  [ -s "$p/$1.jsonl" ] || coral generate -c "$2" --input "$contexts" "${decode[@]}" --out "$p/$1.jsonl"
}
gen zs smollm2
gen ce-ft "$runs/smollm2-ce/checkpoints/best"
gen coral-ft "$runs/smollm2-ce-coral/checkpoints/best"
gen coral-from-zero-shot "$runs/smollm2-coral/checkpoints/best"
[ -d "$out/coral-ft-vs-zero-shot" ] || coral annotate new "$out/coral-ft-vs-zero-shot" -p "$p/coral-ft.jsonl" -p "$p/zs.jsonl" --mode pairwise -n 100 --seed 0
[ -d "$out/coral-ft-vs-ce-ft" ] || coral annotate new "$out/coral-ft-vs-ce-ft" -p "$p/coral-ft.jsonl" -p "$p/ce-ft.jsonl" --mode pairwise -n 100 --seed 0
[ -d "$out/likert" ] || coral annotate new "$out/likert" -p "$p/coral-ft.jsonl" -p "$p/ce-ft.jsonl" -p "$p/zs.jsonl" --include-references --mode likert -n 100 --seed 0
echo "next: coral annotate run STUDY --annotator NAME (each of $out/{coral-ft-vs-zero-shot,coral-ft-vs-ce-ft,likert}); then coral annotate report STUDY"
