"""A CORAL step next to a step of trl's GRPOTrainer, on one pretrained causal LM.

Both sides get the same model (and the same LoRA adapters, if the recipe has them), the same
DailyDialog training contexts in the same order, the same prompts (the model's chat template),
the same reward f_R (its text API `score(contexts, responses)`), the same sampling (top-p,
temperature, at most `objective.sample_max_new_tokens` tokens), the same KL coefficient and the
same work per optimizer step: P prompts x k completions. CORAL runs with every row on-policy
(p+ 0) and k samples per context (baseline rloo), so that both sample, score and train on exactly
P x k completions; its loss stays eq. 2-3 (-R3 * sum_t log P), GRPO's is trl's default.
"""

from __future__ import annotations

import copy
import gc
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch

from coral_cli.bench.memory import peak_mib, reset_peak
from coral_cli.config.schema import CoralConfig
from coral_cli.device import autocast_dtype
from coral_cli.errors import ConfigError, CoralError
from coral_cli.generator.pretrained.causal import CausalPolicy
from coral_cli.generator.pretrained.lora import peft_config
from coral_cli.generator.pretrained.sources import load_lm
from coral_cli.runs import run_dir
from coral_cli.tasks.generator import GeneratorTask
from coral_cli.tasks.generator_data import generator_data
from coral_cli.tasks.train import build_objective, build_policy
from coral_cli.training.events import StepEnd
from coral_cli.training.loop import Trainer

MIN_TRL = "1.16"


def require_trl() -> None:
    """Fail early, with the fix, when trl (an optional extra) is missing or broken."""
    try:
        import trl  # noqa: F401
        from trl import GRPOConfig, GRPOTrainer  # noqa: F401
    except ImportError as exc:
        raise CoralError(f"`coral bench` on a pretrained LM compares against trl's GRPOTrainer, but trl cannot "
                         f"be imported ({exc})",
                         f"pip install 'trl>={MIN_TRL}' (or: pip install -e '.[bench]')") from None


def compare_grpo(cfg: CoralConfig, reward: Any, reward_name: str, steps: int, k: int,
                 device: torch.device) -> dict[str, Any]:
    """`steps` optimizer steps of each side -> seconds/step (median after the first), completions/s,
    peak memory and trainable parameters, plus the ratio of step times (CORAL / GRPO)."""
    require_trl()
    prompts = max(1, cfg.train.max_batch_size // k)
    ccfg = _coral_config(cfg, steps, k, prompts)
    policy, base = build_policy(ccfg, device)
    if not isinstance(policy, CausalPolicy):
        raise ConfigError(f"{cfg.generator.pretrained} is not a causal LM: trl's GRPOTrainer trains causal LMs only",
                          "bench a causal LM (e.g. generator.pretrained = 'smollm2'), or drop generator.pretrained")
    data = generator_data(ccfg.data, "train", policy)
    n = prompts * steps
    if len(data["context_ids"]) < n:
        raise ConfigError(f"{n} training pairs needed ({prompts} prompts x {steps} steps), "
                          f"data.max_pairs leaves {len(data['context_ids'])}", f"set data.max_pairs >= {n}")
    turns = [policy.kept_turns(t, cfg.data.max_context_tokens) for t in data["texts"][:n]]
    prompts_in = [policy.messages(t) if policy.format == "chat" else policy.tokenizer.decode(ids)
                  for t, ids in zip(turns, data["context_ids"][:n])]
    coral = _coral_side(ccfg, policy, base, data, reward, prompts, device)
    del policy
    _free(device)
    grpo = _trl_side(cfg, prompts_in, data["texts"][:n], reward, steps, k, device)
    _free(device)
    o, lora = cfg.objective, cfg.generator.lora
    adapters = f"LoRA r{lora.r} alpha {lora.alpha} ({', '.join(lora.target_modules)})" if lora.enabled else "full fine-tuning"
    shared = (f"{cfg.generator.pretrained}, {adapters}, {prompts} prompts x {k} samples per step, top-p "
              f"{o.sample_top_p}, <= {o.sample_max_new_tokens} new tokens, reward {reward_name}, KL coef {o.kl_coef}")
    coral["what"] = f"coral Trainer, CORAL mix-policy with p+ 0 and baseline rloo (k={k}): {shared}"
    grpo["what"] = (f"trl {grpo.pop('trl_version')} GRPOTrainer (loss {grpo.pop('loss_type')}, beta = KL coef, "
                    f"gradient checkpointing off as in coral): {shared}")
    return {"coral": coral, "trl_grpo": grpo, "prompts_per_step": prompts, "samples_per_prompt": k,
            "step_time_ratio": coral["seconds_per_step"] / grpo["seconds_per_step"]}


def _coral_config(cfg: CoralConfig, steps: int, k: int, prompts: int) -> CoralConfig:
    c = copy.deepcopy(cfg)
    o, t = c.objective, c.train
    o.loss, o.policy, o.p_plus, o.random_ratio, o.baseline, o.rloo_k = "coral", "mix", 0.0, 0.0, "rloo", k
    t.max_steps, t.max_epochs, t.grad_accum, t.log_every = steps, 10**6, 1, 1
    t.eval_every, t.save_every, t.save_epochs = 10**9, 0, 10**9
    t.warmup_steps = min(t.warmup_steps, steps // 2)  # as Seq2SeqTrainer and GRPOTrainer get it
    c.data.max_pairs = max(prompts * steps, 2) if not c.data.max_pairs else c.data.max_pairs
    return c


class _FixedBatches(GeneratorTask):
    """The first P x steps contexts, P per step in order: the prompts trl's sampler draws unshuffled."""

    def __init__(self, *args: Any, prompts: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompts = prompts

    def batches(self, epoch: int) -> list[np.ndarray]:
        n = self.cfg.train.max_steps * self.prompts
        return [np.arange(i, i + self.prompts) for i in range(0, n, self.prompts)]


def _coral_side(cfg: CoralConfig, policy: CausalPolicy, base: Any, data: dict, reward: Any, prompts: int,
                device: torch.device) -> dict[str, Any]:
    torch.manual_seed(cfg.runtime.seed)
    objective = build_objective(cfg, reward, policy, [], device)  # p+ 0, on-policy only: no random pool
    val = {key: data[key][:2] for key in ("context_ids", "response_ids", "texts")}
    task = _FixedBatches(policy, objective, data, val, cfg, device, reward, base, prompts=prompts)
    counted = _count_sampled(policy)
    marks: list[float] = []

    def listen(event: Any) -> None:
        if isinstance(event, StepEnd):
            marks.append(time.perf_counter())

    reset_peak(device)
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(task, cfg.train, run_dir(tmp, "bench"), device, [listen]).fit()
    memory = peak_mib(device)
    return _summary(marks, counted, policy.model, prompts * cfg.objective.rloo_k, memory)


def _count_sampled(policy: CausalPolicy) -> list[int]:
    """Record the generated tokens (the end token included, as trl counts) of every sample call."""
    counts: list[int] = []
    sample = policy.sample

    def counting(*args: Any, **kwargs: Any) -> Any:
        out = sample(*args, **kwargs)
        counts.append(int(out.mask.sum() + out.ended.sum()))
        return out

    policy.sample = counting  # type: ignore[method-assign]
    return counts


def _trl_side(cfg: CoralConfig, prompts: list[Any], texts: list[list[str]], reward: Any, steps: int, k: int,
              device: torch.device) -> dict[str, Any]:
    import trl
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback

    o = cfg.objective
    model, tok, _ = load_lm(cfg.generator.pretrained, device, "causal")
    # a causal LM's generate refuses token_type_ids, which WordPiece tokenizers return by default
    tok.model_input_names = [name for name in tok.model_input_names if name != "token_type_ids"]
    lora = peft_config(model, cfg.generator.lora) if cfg.generator.lora.enabled else None
    sampled: list[int] = []

    def f_R(prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], turns: list[list[str]],
            **_: Any) -> list[float]:
        """The same f_R as CORAL's: the reward's text API on the context's utterances."""
        sampled.append(sum(len(c) for c in completion_ids))
        replies = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward.score(turns, [r.strip() for r in replies]).float().tolist()

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # transformers 5 renamed gradient_checkpointing, which trl still sets: one warning per use
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        args = trl.GRPOConfig(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=len(prompts) // steps * k,
            gradient_accumulation_steps=1, num_generations=k, max_completion_length=o.sample_max_new_tokens,
            temperature=o.sample_temperature, top_p=o.sample_top_p, beta=o.kl_coef, learning_rate=cfg.train.lr,
            gradient_checkpointing=False,  # trl's default is on; coral trains without it: the same compute
            warmup_steps=min(cfg.train.warmup_steps, steps // 2), shuffle_dataset=False, use_vllm=False,
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
            dataloader_num_workers=0, bf16=autocast_dtype(device) is not None, use_cpu=device.type != "cuda",
            seed=cfg.runtime.seed,
        )
        ds = Dataset.from_dict({"prompt": prompts, "turns": texts})
        trainer = trl.GRPOTrainer(model=model, reward_funcs=f_R, args=args, train_dataset=ds, processing_class=tok,
                                  peft_config=lora, callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # it prints to stdout, which carries our JSON
        reset_peak(device)
        trainer.train()
        memory = peak_mib(device)
        out = _summary(marks, sampled, trainer.model, args.per_device_train_batch_size, memory)
    del trainer, model
    return {**out, "trl_version": trl.__version__, "loss_type": args.loss_type}


def _summary(marks: list[float], sampled: list[int], model: torch.nn.Module, completions: int,
             memory: dict[str, float]) -> dict[str, Any]:
    seconds = float(np.median(np.diff(marks))) if len(marks) > 1 else float("nan")
    sampled = sampled[:len(marks)]  # one generation per step; coral's validation after the last is left out
    return {"seconds_per_step": seconds, "samples_per_s": completions / seconds, "completions_per_step": completions,
            "steps": len(marks), "mean_new_tokens": sum(sampled) / max(1, len(sampled) * completions),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad), **memory}


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
