"""`coral export`: a fine-tuned generator as a plain Hugging Face folder (adapters merged), which
transformers loads with no coral and no peft."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coral_cli.commands.console import err
from coral_cli.commands.options import Device


def export(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="A generator checkpoint folder (LoRA or full).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write (must not exist).")],
    device: Device = None,
) -> None:
    """Merge a LoRA run's adapters into its base (or copy a fully fine-tuned model) into --out."""
    from coral_cli.device import pick_device
    from coral_cli.errors import ConfigError
    from coral_cli.generator.loading import load_policy
    from coral_cli.generator.pretrained.lora import merge_and_export

    if out.exists():
        raise ConfigError(f"{out} already exists", "pass a new folder to --out")
    policy, meta = load_policy(checkpoint, pick_device(device or "cpu"))
    if policy.kind == "mirror":
        raise ConfigError(f"{checkpoint} is the Mirror baseline, an LSTM model transformers has no class for",
                          "use it with 'coral generate' and 'coral chat'; its weights are model.safetensors already")
    if hasattr(policy.model, "peft_config"):
        merge_and_export(policy.model, policy.tokenizer, out)
    else:
        from coral_cli.atomic import atomic_directory

        with atomic_directory(out) as tmp:
            policy.model.save_pretrained(str(tmp), safe_serialization=True)
            policy.tokenizer.save_pretrained(str(tmp))
    base = (meta.get("base") or {}).get("spec", "the paper's BART")
    err.print(f"wrote {out} (base: {base}); load it with AutoModelFor{'CausalLM' if policy.kind == 'causal' else 'Seq2SeqLM'}"
              f".from_pretrained('{out}')")
