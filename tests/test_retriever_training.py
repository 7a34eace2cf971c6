import json

import pytest
import torch

from coral_cli.rewards import build_reward
from coral_cli.rewards.evaluate import evaluate_pool
from coral_cli.rewards.retrieval_data import retrieval_data
from coral_cli.tasks.retriever import RetrieverTask
from coral_cli.runs import run_dir
from coral_cli.tokenizer import load_tokenizer
from coral_cli.training.events import StepEnd
from coral_cli.training.loop import Trainer
from tests.tiny import tiny_config, tiny_retriever_overrides

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def slice_data():
    cfg = tiny_config("bert")
    return retrieval_data(cfg.data, "train", load_tokenizer("bundled"))


def _task(name, data, **extra):
    cfg = tiny_config(name, **extra)
    torch.manual_seed(0)
    model = build_reward(cfg.retriever, "bundled")
    return cfg, RetrieverTask(model, data, data, cfg, CPU)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "steps"), [("bert", 200), ("esim", 120), ("dmi", 200)])
def test_training_learns_a_small_slice(name, steps, slice_data, tmp_path):
    """64 DailyDialog pairs: AUC against unseen random negatives goes from chance to near 1."""
    cfg, task = _task(name, slice_data, **{"retriever.train.max_steps": steps})
    before = evaluate_pool(task.model, slice_data, seed=99)["AUC"]
    losses = []
    Trainer(task, cfg.retriever.train, run_dir(tmp_path, name), CPU,
            [lambda e: losses.append(e.stats["loss"]) if isinstance(e, StepEnd) else None]).fit()
    after = evaluate_pool(task.model, slice_data, seed=99)["AUC"]
    assert before < 0.65
    assert after > 0.85, (before, after)
    assert losses[-1] < losses[0]


def test_run_folder_has_metrics_and_atomic_checkpoints(slice_data, tmp_path):
    cfg, task = _task("bert", slice_data, **{"retriever.train.max_steps": 12, "retriever.train.eval_every": 6})
    run = run_dir(tmp_path, "r").create(cfg, "coral retriever train")
    state = Trainer(task, cfg.retriever.train, run, CPU).fit()
    assert state.stopped == "max_steps" and state.step == 12
    records = run.read_metrics()
    assert [r["step"] for r in records if r["event"] == "eval"] == [6, 12]
    assert all("R10@1" in r and "AUC" in r for r in records if r["event"] == "eval")
    assert (run.checkpoint("best") / "model.safetensors").exists()
    assert (run.checkpoint("last") / "trainer_state.json").exists()
    assert not [p for p in run.checkpoints.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.slow
def test_resume_after_a_kill_ends_with_the_same_weights(slice_data, tmp_path):
    extra = {"retriever.train.max_steps": 24, "retriever.train.save_every": 5, "retriever.dropout": 0.2}
    cfg, task = _task("bert", slice_data, **extra)
    Trainer(task, cfg.retriever.train, run_dir(tmp_path, "full"), CPU).fit()
    reference = {k: v.clone() for k, v in task.model.state_dict().items()}

    def kill_at_13(event):
        if isinstance(event, StepEnd) and event.step == 13:
            raise KeyboardInterrupt

    cfg, task = _task("bert", slice_data, **{**extra, "retriever.train.log_every": 1})
    run = run_dir(tmp_path, "killed")
    with pytest.raises(KeyboardInterrupt):
        Trainer(task, cfg.retriever.train, run, CPU, [kill_at_13]).fit()
    cfg, task = _task("bert", slice_data, **extra)  # a fresh process: new model, new optimizer
    state = Trainer(task, cfg.retriever.train, run, CPU).fit(resume=True)
    assert state.step == 24
    for key, value in task.model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)


def _cli_flags(tmp_path):
    over = tiny_retriever_overrides("esim", **{"retriever.train.max_steps": 6, "retriever.eval_contexts": 32,
                                                "runtime.runs_dir": str(tmp_path)})
    flags = []
    for key, value in over.items():
        flags += ["--set", f"{key}={json.dumps(value) if not isinstance(value, dict) else '{hidden=32}'}"]
    return flags


@pytest.mark.slow
def test_cli_train_eval_score(cli, tmp_path):
    result = cli("retriever", "train", "--model", "esim", "--name", "e", *_cli_flags(tmp_path))
    assert result.exit_code == 0, result.output
    best = tmp_path / "e" / "checkpoints" / "best"
    assert (tmp_path / "e" / "config.toml").exists() and (best / "config.json").exists()

    again = cli("retriever", "train", "--model", "esim", "--name", "e", *_cli_flags(tmp_path))
    assert again.exit_code == 2 and "--resume" in again.stderr

    result = cli("retriever", "eval", "-c", str(best), "--split", "test", "--max-pairs", "50", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["split"] == "test" and report["metrics"]["contexts"] == 50
    assert set(report["metrics"]) >= {"R10@1", "R10@2", "R10@5", "MRR", "AUC", "accuracy"}

    lines = '{"context": ["how are you ?"], "response": "fine ."}\n{"context": "hi", "response": "hello"}\n'
    result = cli("retriever", "score", "-c", str(best), input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["response"] for r in rows] == ["fine .", "hello"] and all(0 < r["score"] < 1 for r in rows)

    bad = cli("retriever", "score", "-c", str(best), input='{"context": ["a"], "response": "b"}\n{oops\n')
    assert bad.exit_code == 2 and "stdin:2: invalid JSON" in bad.stderr
    empty = cli("retriever", "score", "-c", str(best), input='{"context": [], "response": "b"}\n')
    assert empty.exit_code == 2 and "empty context" in empty.stderr
    wrong = cli("retriever", "score", "-c", str(tmp_path / "e"), input=lines)
    assert wrong.exit_code == 2 and "not a checkpoint folder" in wrong.stderr


def test_eval_on_dstc7_json_uses_the_official_candidates(cli, tmp_path):
    from coral_cli.rewards import save_reward
    from tests.test_ubuntu import _example

    data = tmp_path / "dstc7"
    data.mkdir()
    (data / "ubuntu_test_subtask_1.json").write_text(json.dumps([_example(i, answer_index=i * 7) for i in range(6)]))
    ckpt = tmp_path / "esim"
    save_reward(build_reward(tiny_config("esim").retriever, "bundled").eval(), ckpt)
    result = cli("retriever", "eval", "-c", str(ckpt), "--dataset", "ubuntu", "--data-dir", str(data), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["protocol"] == "official DSTC7 candidates"
    metrics = report["metrics"]
    assert metrics["candidates"] == 100 and metrics["contexts"] == 6
    assert set(metrics) >= {"R100@1", "R100@10", "R100@50", "MRR"}
    assert metrics["R100@1"] <= metrics["R100@10"] <= metrics["R100@50"] <= 1.0
