"""`coral generate`: responses for a dataset split or JSON lines of contexts, as JSON lines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from coral_cli.commands.console import err
from coral_cli.commands.options import (
    DataDir, Dataset, Device, MaxPairs, Recipe, Sets, check_out_file, data_flags, load_config, open_input,
)
from coral_cli.errors import ConfigError


def generate(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="A generator checkpoint folder, or a pretrained LM as it is (smollm2, a folder, .gguf, hub name).")],
    recipe: Recipe = None,
    sets: Sets = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    split: Annotated[Optional[str], typer.Option(help="Split to generate for. [default: test]")] = None,
    max_pairs: MaxPairs = None,
    input: Annotated[Optional[str], typer.Option("--input", "-i", help="JSON lines of contexts (or -), instead of a split.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output JSON lines (default: stdout).")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="greedy, beam or nucleus.")] = None,
    num_beams: Annotated[Optional[int], typer.Option(help="Beams (strategy beam).")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Nucleus mass.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature.")] = None,
    num_return_sequences: Annotated[Optional[int], typer.Option("--num-return-sequences", "-n", help="Responses per context.")] = None,
    rerank_with: Annotated[Optional[Path], typer.Option(help="A reward checkpoint or Hugging Face classifier folder (e.g. DialogRPT): score the -n candidates, keep the best as 'response'.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Longest response.")] = None,
    min_new_tokens: Annotated[Optional[int], typer.Option(help="Shortest response.")] = None,
    no_repeat_ngram_size: Annotated[Optional[int], typer.Option(help="Forbid repeated n-grams.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed.")] = None,
    device: Device = None,
) -> None:
    """Batched, KV-cached generation in input order, with each response's mean token log-prob."""
    if input and split:
        raise ConfigError("--split and --input both given", "pass either --split (a dataset split) or --input (JSON lines)")
    check_out_file(out, "generations.jsonl")
    split = split or "test"

    from coral_cli.commands.progress import count_progress
    from coral_cli.device import pick_device
    from coral_cli.generation.outputs import write_generation
    from coral_cli.generation.requests import jsonl_requests, split_requests
    from coral_cli.generation.responses import generate_for_contexts, rerank
    from coral_cli.generator.loading import load_policy
    from coral_cli.rewards.checkpoint import load_reward

    flags = {
        **data_flags(dataset, data_dir, None, max_pairs), "runtime.device": device,
        "generate.strategy": strategy, "generate.num_beams": num_beams, "generate.top_p": top_p,
        "generate.temperature": temperature, "generate.num_return_sequences": num_return_sequences,
        "generate.max_new_tokens": max_new_tokens, "generate.min_new_tokens": min_new_tokens,
        "generate.no_repeat_ngram_size": no_repeat_ngram_size, "generate.seed": seed,
    }
    cfg = load_config(recipe, sets, flags)
    if rerank_with and cfg.generate.num_return_sequences < 2:
        raise ConfigError(f"--rerank-with needs several candidates per context, got -n {cfg.generate.num_return_sequences}",
                          "pass -n N with N >= 2, e.g. -n 8 --strategy nucleus")
    policy, meta = load_policy(checkpoint, pick_device(cfg.runtime.device))
    reward = load_reward(rerank_with, policy.device) if rerank_with else None  # fail before generating
    trained = meta.get("data", {})
    cfg.data.max_context_tokens = trained.get("max_context_tokens", cfg.data.max_context_tokens)
    if input:
        requests = jsonl_requests(open_input(input), input, policy, cfg.data.max_context_tokens)
    else:
        requests = split_requests(cfg.data, split, policy)
    t0 = time.perf_counter()
    with count_progress("generating", len(requests)) as advance:
        results = generate_for_contexts(policy, [r["context_ids"] for r in requests], cfg.generate, advance)
        if reward is not None:
            results = rerank(results, [r["context"] for r in requests], reward, str(rerank_with))
    seconds = time.perf_counter() - t0
    source = {"input": input} if input else {"dataset": cfg.data.dataset, "split": split}
    if rerank_with:
        source["reranked_by"] = str(rerank_with)
    write_generation(out, requests, results, cfg.generate, checkpoint, source, seconds)
    err.print(f"{len(requests)} contexts in {seconds:.1f}s ({len(requests) / max(seconds, 1e-9):.1f}/s)"
              + (f" -> {out}" if out else ""))
