import json
import pytest

TINY_RETRIEVER = """
[retriever]
model = "esim"
backbone = "random"
random_hidden = 32
random_layers = 1
max_context_tokens = 32
max_response_tokens = 16
mlp_hidden = [16, 8]
args = { hidden = 16 }
"""

TINY = """
[data]
max_pairs = 48
max_context_tokens = 32
max_response_tokens = 16
[generator]
encoder_layers = 1
decoder_layers = 1
d_model = 32
heads = 2
ffn_dim = 64
max_positions = 64
[train]
batch_tokens = 1024
warmup_steps = 2
[generate]
max_new_tokens = 4
""" + TINY_RETRIEVER


@pytest.mark.slow
def test_bench_writes_every_stage_as_json(cli, tmp_path):
    """One tiny run: every stage, the recipe's trained reward (objective.reward_checkpoint) in the
    CORAL step and timed beside the fresh one, and the precision asked for (runtime.cpu_bf16)."""
    from coral_cli.config import resolve
    from coral_cli.device import cpu_bf16_supported
    from coral_cli.rewards.checkpoint import build_reward, save_reward

    recipe = tmp_path / "b.toml"
    recipe.write_text(TINY)
    cfg = resolve(str(recipe))
    reward = tmp_path / "reward"
    save_reward(build_reward(cfg.retriever, cfg.tokenizer.name), reward)
    result = cli("bench", "--recipe", str(recipe), "--steps", "4", "--contexts", "4", "--pairs", "16",
                 "--rewards", "esim", "--set", f"objective.reward_checkpoint='{reward}'", "--set", "runtime.cpu_bf16=true",
                 "--profile")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the JSON and nothing else
    ce = report["ce_training"]
    assert ce["coral_trainer"]["tokens_per_s"] > 0 and ce["hf_seq2seq_trainer"]["tokens_per_s"] > 0
    assert ce["throughput_ratio"] == pytest.approx(ce["coral_trainer"]["tokens_per_s"] / ce["hf_seq2seq_trainer"]["tokens_per_s"])
    for side in (ce["coral_trainer"], ce["hf_seq2seq_trainer"]):  # warm-up and steady state apart, on both sides
        assert side["warmup_seconds_per_step"] > 0 and side["seconds_per_step"] > 0
    assert report["coral_mix_step"]["step_time_ratio"] > 0
    assert report["generation"]["contexts"] == 4 and report["generation"]["speedup"] > 0
    anchor = report["generation"]["anchor"]  # the batched generate loop a user would write, named in the JSON
    assert anchor["responses_per_s"] > 0 and "batches of 64" in anchor["what"]
    ours = ce["coral_trainer"]
    assert ce["hf_seq2seq_trainer"]["params"] == ours["params"] > 0  # the same model on both sides
    assert ours["model_tflops_per_s"] == pytest.approx(6 * ours["params"] * ours["tokens_per_s"] / 1e12)
    assert set(report["reward_scoring"]) == {"esim", "training_reward"} and report["reward_scoring"]["esim"]["pairs"] == 16
    # counted arithmetic: the scored head skips the padded positions Seq2SeqTrainer's LM head computes
    hf = ce["hf_seq2seq_trainer"]
    assert ce["arithmetic_ratio"] == pytest.approx(hf["flops_per_example"] / ours["flops_per_example"]) and ce["arithmetic_ratio"] > 1
    peak = report["matmul_peak_tflops"]["bfloat16" if report["machine"]["autocast"] == "bfloat16" else "float32"]
    scoring = report["reward_scoring"]["esim"]
    assert hf["achieved_tflops_per_s"] == pytest.approx(hf["flops_per_step"] / hf["seconds_per_step"] / 1e12)
    assert scoring["achieved_tflops_per_s"] == pytest.approx(scoring["flops_per_pair"] * scoring["pairs_per_s"] / 1e12)
    assert "flops_per_run" not in ours  # the replay's total is spent on achieved_tflops_per_s
    for side in (ours, report["coral_mix_step"]["coral"]):  # the steady batches' FLOPs over their time
        rate = side["flops_per_token"] * side["tokens_per_s"] / 1e12  # per token at the median window's rate
        assert rate / 3 < side["achieved_tflops_per_s"] < 3 * rate
    for side in (ours, hf, report["coral_mix_step"]["coral"], scoring):
        assert side["share_of_matmul_peak"] == pytest.approx(side["achieved_tflops_per_s"] / peak)
    # a CORAL step does the CE step's work plus sampling and the reward on every candidate
    assert report["coral_mix_step"]["arithmetic_ratio"] > 1
    assert report["coral_mix_step"]["reward"] == report["reward_scoring"]["training_reward"]["checkpoint"] == str(reward)
    assert report["machine"]["autocast"] == ("bfloat16" if cpu_bf16_supported() or report["machine"]["device"]["type"] == "cuda" else "fp32")
    assert report["machine"]["device"]["type"] in ("cpu", "cuda")
    profile = report["profile"]  # --profile: where one CE step's and one decoding batch's time goes
    for stage in ("ce_step", "decode"):
        table = profile[stage]["table"]
        assert profile[stage]["sorted_by"] == "cpu_time_total" and "Self CPU" in table and "aten::" in table
    assert "aten::addmm" in profile["ce_step"]["table"] or "aten::mm" in profile["ce_step"]["table"]
    assert profile["decode"]["contexts"] == 4 and profile["ce_step"]["examples"] > 0


TINY_PRETRAINED = """
[data]
max_context_tokens = 32
max_response_tokens = 16
[generator]
pretrained = "{folder}"
[generator.lora]
enabled = true
r = 4
[objective]
sample_max_new_tokens = 8
kl_coef = 0.05
[train]
max_batch_size = 4
warmup_steps = 2
"""


@pytest.mark.slow
def test_bench_compares_a_coral_step_with_trl_grpo_on_a_pretrained_lm(cli, tmp_path):
    """A tiny Llama with LoRA: both sides train the same adapters on 2 prompts x 2 completions."""
    from tests.tiny_lm import save_tiny_llama

    recipe = tmp_path / "p.toml"
    recipe.write_text(TINY_PRETRAINED.format(folder=save_tiny_llama(tmp_path / "lm")) + TINY_RETRIEVER)
    out = tmp_path / "bench.json"
    result = cli("bench", "--recipe", str(recipe), "--steps", "2", "--samples", "2", "--pairs", "8",
                 "--rewards", "esim", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    t = report["trl_grpo"]
    coral, grpo = t["coral"], t["trl_grpo"]
    assert t["prompts_per_step"] == 2 and t["samples_per_prompt"] == 2
    assert coral["seconds_per_step"] > 0 and grpo["seconds_per_step"] > 0 and t["step_time_ratio"] > 0
    assert coral["completions_per_step"] == grpo["completions_per_step"] == 4
    assert coral["steps"] == grpo["steps"] == 2
    assert coral["trainable_params"] == grpo["trainable_params"] > 0  # the same LoRA adapters
    assert 0 < coral["mean_new_tokens"] <= 9 and 0 < grpo["mean_new_tokens"] <= 9  # <= 8 tokens + the end
    assert "GRPOTrainer" in grpo["what"] and "LoRA r4" in grpo["what"] and "LoRA r4" in coral["what"]
    assert set(report["skipped"]) == {"ce_training", "coral_mix_step", "generation"}
    assert report["reward_scoring"]["esim"]["pairs"] == 8


def test_bench_on_a_pretrained_lm_without_trl_says_how_to_install_it(cli, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError
    recipe = tmp_path / "p.toml"
    recipe.write_text(TINY_PRETRAINED.format(folder=tmp_path / "lm") + TINY_RETRIEVER)
    result = cli("bench", "--recipe", str(recipe), "--steps", "2")
    assert result.exit_code == 2
    assert "trl" in result.output and "fix: pip install 'trl>=" in result.output
    assert "Traceback" not in result.output


def test_flop_counts_match_the_hand_computed_ones():
    """A linear layer and CPU attention, forward and backward, against the textbook counts
    (torch's own table leaves the CPU attention kernels out; bench/flops.py adds them)."""
    import torch
    from coral_cli.bench.flops import count_flops

    lin = torch.nn.Linear(64, 32)
    x = torch.randn(5, 64, requires_grad=True)
    assert count_flops(lambda: lin(x).sum().backward()) == 3 * 2 * 5 * 64 * 32  # y, dx, dW
    q = torch.randn(2, 4, 10, 16, requires_grad=True)  # (batch, heads, length, head dim)
    fwd = 2 * (2 * 2 * 4 * 10 * 10 * 16)  # q k^T and p v
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == fwd
    both = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward())
    assert both == fwd + 5 * fwd // 2  # the backward: dv, dp, dq, dk and the recomputed scores


def test_matmul_peak_is_measured_once_per_precision():
    import torch
    from coral_cli.bench.flops import MatmulPeaks

    peaks = MatmulPeaks(torch.device("cpu"))
    first = peaks(None)
    assert first > 0 and peaks(torch.float32) == first  # None is float32, timed once
    assert set(peaks.table()) == {"what", "float32"} and "GEMM" in peaks.table()["what"]


def test_a_failed_flop_count_says_why_instead_of_stopping_the_bench():
    from coral_cli.bench.flops import count_flops, efficiency, per_unit

    def broken() -> None:
        raise RuntimeError("mat1 and mat2 must have the same dtype")

    failed = count_flops(broken)
    assert isinstance(failed, str) and "same dtype" in failed
    assert per_unit([1000, failed], 10, "token") == {"flops_error": failed}
    assert per_unit([1000, 3000], 10, "token") == {"flops_per_token": 400.0}
    assert efficiency(None, 5.0, 1.0) == {}


def test_the_summary_line_gives_the_arithmetic_ratio_and_the_shares_where_counted():
    from coral_cli.commands.bench import _arithmetic, _shares

    assert _arithmetic({"arithmetic_ratio": 1.883}) == ", arithmetic x1.88"
    assert _arithmetic({"arithmetic_ratio": None}) == ""  # a failed count: the line leaves it out
    assert _shares({"share_of_matmul_peak": 0.492}, {"share_of_matmul_peak": 0.518}) == "; 49% vs 52% of the matmul peak"
    assert _shares({"share_of_matmul_peak": 0.492}, {}) == ""


def test_the_flop_replay_scores_every_candidate_as_the_timed_steps_did(tmp_path):
    """The timed CORAL steps met each training pair for the first time; replayed afterwards, their
    r+ would come from the reward cache, so the replay runs without it (and gives it back)."""
    from types import SimpleNamespace

    from coral_cli.bench import stages

    cache = object()
    task = SimpleNamespace(objective=SimpleNamespace(positive_rewards=cache))
    seen = []
    real = stages._counted
    stages._counted = lambda task, *a: seen.append(task.objective.positive_rewards) or (None, {})
    try:
        stages._our_work(task, None, False, 0, 1)
    finally:
        stages._counted = real
    assert seen == [None] and task.objective.positive_rewards is cache


def test_the_replayed_batches_follow_the_trainer_into_the_next_epoch():
    """A data set shorter than the timed steps: the replay counts the next epoch's batches, as the
    trainer ran them, not fewer."""
    from types import SimpleNamespace

    from coral_cli.bench.stages import _trained_batches

    task = SimpleNamespace(batches=lambda epoch: [f"e{epoch}b0", f"e{epoch}b1"])
    assert _trained_batches(task, 1, 4) == [(0, 1, "e0b1"), (1, 0, "e1b0"), (1, 1, "e1b1")]
    assert _trained_batches(SimpleNamespace(batches=lambda epoch: []), 0, 3) == []
