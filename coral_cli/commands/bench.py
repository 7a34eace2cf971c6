"""`coral bench`: JSON of each stage's speed, ours next to the standard tool, at the config's sizes."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from coral_cli.commands.console import err, print_json
from coral_cli.commands.options import Device, MaxPairs, Recipe, Sets, check_out_file, load_config


def bench(
    recipe: Recipe = None,
    sets: Sets = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps per training measurement.", min=2)] = 20,
    contexts: Annotated[int, typer.Option(help="Test contexts for the generation measurement.", min=1)] = 200,
    pairs: Annotated[int, typer.Option(help="Pairs for the reward-scoring measurement.", min=8)] = 2000,
    rewards: Annotated[str, typer.Option(help="Retrievers to time, comma separated.")] = "bert,esim,dmi",
    samples: Annotated[int, typer.Option(help="Pretrained LM: completions per prompt in the CORAL vs trl GRPO "
                                              "step (prompts per step: train.max_batch_size // samples).", min=2)] = 4,
    profile: Annotated[bool, typer.Option("--profile", help="Add torch.profiler tables of one CE step and one "
                                                           "decoding batch (top ops by time).")] = False,
    max_pairs: MaxPairs = None,
    device: Device = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON here (else stdout).")] = None,
) -> None:
    """Measure CE vs Seq2SeqTrainer throughput, CORAL vs CE step time, generation, reward scoring;
    with a pretrained LM (generator.pretrained): a CORAL step vs a trl GRPOTrainer step, reward scoring."""
    from coral_cli.bench.suite import run_bench
    from coral_cli.textio import write_text

    check_out_file(out, "bench.json")
    cfg = load_config(recipe, sets, {"data.max_pairs": max_pairs, "runtime.device": device})
    with err.status("benchmarking (training, generation, scoring)"):
        report = run_bench(cfg, steps, contexts, pairs, tuple(r.strip() for r in rewards.split(",") if r.strip()),
                           samples, profile)
    if out:
        write_text(out, jsonlib.dumps(report, indent=2) + "\n")
        if "trl_grpo" in report:
            t = report["trl_grpo"]
            err.print(f"CORAL step {t['coral']['seconds_per_step']:.2f} s vs trl GRPO {t['trl_grpo']['seconds_per_step']:.2f} s "
                      f"(x{t['step_time_ratio']:.2f}), {t['prompts_per_step']} prompts x {t['samples_per_prompt']} "
                      f"samples -> {out}")
            return
        c, g = report["ce_training"], report["generation"]
        ours, hf = c["coral_trainer"], c["hf_seq2seq_trainer"]
        m = report["coral_mix_step"]
        err.print(f"CE, steady state: ours {ours['tokens_per_s']:,.0f} tok/s vs Seq2SeqTrainer "
                  f"{hf['tokens_per_s']:,.0f} (x{c['throughput_ratio']:.2f}{_arithmetic(c)}; warm-up window "
                  f"{ours['warmup_seconds_per_step']:.2f} vs {hf['warmup_seconds_per_step']:.2f} s/step"
                  f"{_shares(ours, hf)}); CORAL mix step x{m['step_time_ratio']:.2f} of CE{_arithmetic(m)}; "
                  f"generation x{g['speedup']:.2f} of a batched generate loop -> {out}")
    else:
        print_json(report)


def _arithmetic(stage: dict) -> str:
    """", arithmetic x1.88": the ratio at equal efficiency, where the FLOPs were counted."""
    ratio = stage.get("arithmetic_ratio")
    return f", arithmetic x{ratio:.2f}" if ratio else ""


def _shares(ours: dict, anchor: dict) -> str:
    """"; 49 % vs 52 % of the matmul peak", where both were measured."""
    a, b = ours.get("share_of_matmul_peak"), anchor.get("share_of_matmul_peak")
    return f"; {a:.0%} vs {b:.0%} of the matmul peak" if a is not None and b is not None else ""
