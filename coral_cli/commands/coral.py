"""`coral coral train`: train the generator with CORAL (paper eq. 2-3), the CE baseline or the Mirror baseline."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from coral_cli.commands.console import err
from coral_cli.commands.options import (
    DataDir, Dataset, Device, MaxContextTokens, MaxPairs, Recipe, Sets, Tokenizer, data_flags,
)

app = typer.Typer(help="Train dialogue generators (CE baseline, CORAL).", no_args_is_help=True)


@app.command("train")
def train(
    recipe: Recipe = None,
    sets: Sets = None,
    loss: Annotated[Optional[str], typer.Option(help="coral, ce (cross-entropy baseline), adalabel (AdaLabel baseline) or mirror (the Mirror CVAE baseline). [default: coral]")] = None,
    reward: Annotated[Optional[str], typer.Option(help="Retriever type behind R3: bert, esim, dmi.")] = None,
    reward_checkpoint: Annotated[Optional[str], typer.Option(help="Trained retriever folder (f_R).")] = None,
    p_plus: Annotated[Optional[float], typer.Option(help="p+: probability of the ground truth. [default: 0.8]")] = None,
    margin: Annotated[Optional[float], typer.Option(help="m: R3 = f_R - m. [default: 0]")] = None,
    policy: Annotated[Optional[str], typer.Option(help="off or mix (on-policy nucleus negatives). [default: mix]")] = None,
    baseline: Annotated[Optional[str], typer.Option(help="fixed (paper), moving-average or rloo.")] = None,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    max_pairs: MaxPairs = None,
    max_context_tokens: MaxContextTokens = None,
    tokenizer: Tokenizer = None,
    init: Annotated[Optional[str], typer.Option(help="Start from this generator checkpoint.")] = None,
    pretrained: Annotated[Optional[str], typer.Option(
        help="Fine-tune a pretrained causal LM: smollm2 (bundled, offline), a folder, a .gguf file or a hub name.")] = None,
    lora: Annotated[Optional[bool], typer.Option("--lora/--full", help="LoRA adapters or full fine-tuning of --pretrained.")] = None,
    kl_coef: Annotated[Optional[float], typer.Option(help="Weight of the KL penalty to the pretrained model. [default: 0]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs. [default: 50]")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after N optimizer steps.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate. [default: 1e-4]")] = None,
    batch_tokens: Annotated[Optional[int], typer.Option(help="Token budget per batch.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Batches per optimizer step.")] = None,
    device: Device = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name: runs/<name>/. [default: generator-<loss>]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue runs/<name>/ from its last checkpoint.")] = False,
) -> None:
    """Train a seq2seq generator; checkpoints each epoch, best/ by validation, resumable."""
    from coral_cli.commands.progress import TrainingView
    from coral_cli.commands.runs import open_run
    from coral_cli.tasks.train import train_generator

    flags = {
        **data_flags(dataset, data_dir, max_context_tokens, max_pairs, tokenizer),
        "objective.loss": loss, "objective.reward": reward, "objective.reward_checkpoint": reward_checkpoint,
        "objective.p_plus": p_plus, "objective.margin": margin, "objective.policy": policy,
        "objective.baseline": baseline, "generator.init": init, "generator.pretrained": pretrained,
        "generator.lora.enabled": lora, "objective.kl_coef": kl_coef,
        "train.max_epochs": epochs, "train.max_steps": max_steps, "train.lr": lr,
        "train.batch_tokens": batch_tokens, "train.grad_accum": grad_accum,
        "runtime.device": device, "runtime.seed": seed,
    }
    with open_run(recipe, sets, flags, name, "generator-{objective.loss}", resume, "coral coral train",
                  "generator") as (cfg, run):
        g = cfg.generator
        o = cfg.objective
        model = (f"{g.pretrained} ({'LoRA r=' + str(g.lora.r) if g.lora.enabled else 'full fine-tuning'})"
                 if g.pretrained else f"{g.encoder_layers}+{g.decoder_layers} layers, d={g.d_model}, {g.heads} heads")
        if o.loss == "mirror":
            m = g.mirror
            model = f"Mirror CVAE ({m.layers}-layer LSTMs, hidden {m.hidden}, z {m.z_dim})"
        err.print(f"run: {run.root}  loss: {o.loss}  model: {model}")
        if o.loss == "coral":
            err.print(f"CORAL: reward {o.reward} ({o.reward_checkpoint}), p+ {o.p_plus}, m {o.margin}, "
                      f"{o.policy}-policy, baseline {o.baseline}")
        keys = ("loss", "r3_pos", "r3_neg", "f_R") if o.loss == "coral" else \
            ("loss", "nll", "kl") if o.loss == "mirror" else ("loss", "nll")
        with TrainingView(f"generator {o.loss}", keys) as view:
            train_generator(cfg, run, [view], resume)
