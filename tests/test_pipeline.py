"""Table recipes (`coral recipe run|plan`): parsing errors, a tiny table end to end, skipping
finished stages, resuming an interrupted one, refusing a changed config, and the results table
next to the paper's numbers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from coral_cli.errors import ConfigError
from coral_cli.pipeline.paper_tables import PAPER_TABLES
from coral_cli.pipeline.runner import TableRunner, stage_config, stage_state
from coral_cli.pipeline.schedule import next_task, table_tasks
from coral_cli.pipeline.spec import read_table
from coral_cli.runs import RunDir
from coral_cli.training.events import StepEnd

RETRIEVER = """
[data]
max_pairs = 48
max_context_tokens = 32
max_response_tokens = 16
[retriever]
model = "bert"
backbone = "random"
random_layers = 1
random_hidden = 32
random_heads = 2
mlp_hidden = [16]
max_context_tokens = 32
max_response_tokens = 16
eval_contexts = 16
[retriever.train]
lr = 1e-3
warmup_steps = 1
max_epochs = 1
max_steps = 3
batch_tokens = 512
log_every = 1
"""

GENERATOR = """
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
eval_pairs = 8
[objective]
loss = "coral"
reward = "bert"
sample_max_new_tokens = 6
[train]
lr = 1e-3
warmup_steps = 1
max_epochs = 2
max_steps = 4
batch_tokens = 512
log_every = 1
save_every = 2
[generate]
strategy = "greedy"
max_new_tokens = 6
"""

TABLE = """
[table]
title = "tiny table"
paper = "dailydialog"
runs_dir = "{runs}"
max_pairs = 48
evaluators = {{ BERT = "evaluator" }}

[[stage]]
name = "reward"
train = "retriever"
recipe = "retriever.toml"

[[stage]]
name = "evaluator"
train = "retriever"
recipe = "retriever.toml"
set = ["runtime.seed=1"]

[[stage]]
name = "ce"
train = "generator"
recipe = "generator.toml"
set = ["objective.loss='ce'"]
label = "CE"

[[stage]]
name = "coral-mix"
train = "generator"
recipe = "generator.toml"
reward = "reward"
row = "coral-bert-mix"
label = "CORAL-BERT (mix)"
"""


def write_table(folder: Path, table: str = TABLE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "retriever.toml").write_text(RETRIEVER)
    (folder / "generator.toml").write_text(GENERATOR)
    path = folder / "table.toml"
    path.write_text(table.format(runs=folder / "runs"))
    return path


@pytest.fixture(scope="module")
def finished_table(tmp_path_factory) -> Path:
    """A tiny table run once to the end through the CLI."""
    from typer.testing import CliRunner

    from coral_cli.commands.app import app

    path = write_table(tmp_path_factory.mktemp("table"))
    result = CliRunner().invoke(app, ["recipe", "run", str(path)])
    assert result.exit_code == 0, result.output
    return path


def copy_table(src: Path, dst: Path) -> Path:
    shutil.copytree(src.parent, dst)
    path = dst / "table.toml"
    path.write_text(TABLE.format(runs=dst / "runs"))
    return path


def messages(spec, only=(), restart=(), sets=()) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    TableRunner(spec, lambda stage, msg: seen.append((stage, msg)), restart=restart, extra_sets=sets).run(only)
    return seen


@pytest.mark.slow
def test_a_table_runs_end_to_end_and_puts_rows_next_to_the_paper(finished_table):
    runs = finished_table.parent / "runs"
    results = json.loads((runs / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert list(rows) == ["ground-truth", "ce", "coral-mix"]
    assert rows["coral-mix"]["paper"] == PAPER_TABLES["dailydialog"]["rows"]["coral-bert-mix"]
    assert rows["ce"]["paper"] is None  # the paper has no CE row
    for name in ("ce", "coral-mix"):
        ours = rows[name]["ours"]
        assert ours["count"] == 48  # every pair of the (tiny) test split
        assert 0.0 <= ours["BLEU"] <= 1.0 and 0.0 < ours["MAUDE-BERT"] < 1.0
        assert rows[name]["training"]["steps"] == 4
    assert rows["coral-mix"]["ours"]["R3"] is not None and rows["ce"]["ours"]["R3"] is None
    truth = rows["ground-truth"]["ours"]
    assert truth["BLEU"] is None and 0 < truth["Dist-1"] <= 1 and truth["avg_len"] > 3
    markdown = (runs / "results.md").read_text()
    assert "| CORAL-BERT (mix) | ours |" in markdown
    assert "| 10.50 | 0.2241 | 0.2079 | 0.0428 | 0.2760 | 0.7418 | 0.6692 |" in markdown  # the paper's row
    assert re.search(r"^\| CORAL-BERT \(mix\) \| 4 \| max_steps \| [^|]+ \| \d+\.\d \|$", markdown, re.M), markdown


@pytest.mark.slow
def test_a_second_run_skips_every_finished_stage(finished_table, tmp_path):
    spec = read_table(copy_table(finished_table, tmp_path / "t"))
    reports = sorted(spec.runs_dir.glob("*/test-eval.json"))
    before = {p: p.stat().st_mtime for p in reports}
    seen = messages(spec)
    assert {m for _, m in seen if "skipped" in m} and not [m for _, m in seen if m.startswith(("training", "resuming"))]
    assert all("up to date" in m or "skipped" in m for _, m in seen), seen
    assert {p: p.stat().st_mtime for p in reports} == before


@pytest.mark.slow
def test_an_interrupted_stage_resumes_from_its_last_checkpoint(finished_table, tmp_path):
    spec = read_table(copy_table(finished_table, tmp_path / "t"))
    run = spec.runs_dir / "ce"
    shutil.rmtree(run)

    class Interrupt(Exception):
        pass

    def stop_at_3(event):
        if isinstance(event, StepEnd) and event.step == 3:
            raise Interrupt

    import contextlib

    runner = TableRunner(spec, lambda *a: None, lambda stage, cfg: contextlib.nullcontext([stop_at_3]))
    with pytest.raises(Interrupt):
        runner.run(only=("ce",))
    state = stage_state(spec, spec.stage("ce"))
    assert state.state == "interrupted"  # last/ was saved at step 2 (save_every = 2)
    seen = messages(spec, only=("ce",))
    assert ("ce", "resuming generator -> " + str(run) + " (resumes from step 2)") in seen
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("event") == "step"]
    assert steps == [1, 2, 3, 4]  # step 3 is redone from the step-2 checkpoint and logged once
    assert stage_state(spec, spec.stage("ce")).state == "done"


@pytest.mark.slow
def test_a_changed_recipe_is_refused_until_the_stage_is_restarted(finished_table, tmp_path, cli):
    path = copy_table(finished_table, tmp_path / "t")
    result = cli("recipe", "run", str(path), "--set", "train.lr=0.5")
    assert result.exit_code == 2
    assert "stage 'ce'" in result.output and "train.lr: 0.001 -> 0.5" in result.output and "--restart ce" in result.output
    spec = read_table(path)
    evaluator_report = (spec.runs_dir / "ce" / "test-eval.json").stat().st_mtime
    seen = messages(spec, restart=("evaluator",))
    assert ("evaluator", f"restart: removed {spec.runs_dir / 'evaluator'}") in seen
    # a retrained evaluator makes every row's report stale, but no generator retrains
    assert (spec.runs_dir / "ce" / "test-eval.json").stat().st_mtime > evaluator_report
    assert not [s for s, m in seen if s in ("ce", "coral-mix") and m.startswith("training")]


@pytest.mark.slow
def test_plan_lists_states_and_a_bad_table_lists_every_problem(finished_table, tmp_path, cli):
    result = cli("recipe", "plan", str(finished_table), "--json")
    assert result.exit_code == 0, result.output
    assert [s["state"] for s in json.loads(result.stdout)["stages"]] == ["done"] * 4
    bad = TABLE.replace('reward = "reward"', 'reward = "rewad"').replace('train = "generator"\nrecipe = "generator.toml"\nset',
                                                                         'train = "generatr"\nrecipe = "generator.toml"\nset')
    bad = bad.replace('row = "coral-bert-mix"', 'row = "coral-bert-mixx"').replace('title =', 'titel =')
    path = write_table(tmp_path / "bad", bad)
    result = cli("recipe", "run", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    for expected in ("unknown key 'table.titel' (did you mean 'title'?)", "'generatr' is not one of retriever, generator",
                     "reward = 'rewad' is not an earlier stage (did you mean 'reward'?)",
                     "row 'coral-bert-mixx' is not in the paper's dailydialog table (did you mean 'coral-bert-mix'?)"):
        assert expected in result.output, result.output
    assert cli("recipe", "run", str(tmp_path / "missing.toml")).exit_code == 2
    with pytest.raises(ConfigError, match="unknown stage"):
        TableRunner(read_table(finished_table), lambda *a: None, restart=("nope",))
    with pytest.raises(ConfigError, match="--only names unknown stage"):  # not a silent run of nothing
        TableRunner(read_table(finished_table), lambda *a: None).run(("coral-mixx",))
    result = cli("recipe", "run", str(finished_table), "--only", "coral-mixx", "--jobs", "2")
    assert result.exit_code == 2 and "--only names unknown stage(s) coral-mixx" in result.output, result.output


@pytest.mark.parametrize("table", ["dailydialog/table1.toml", "dailydialog/cpu/table.toml", "ubuntu/table.toml"])
def test_shipped_tables_cover_the_papers_rows(table):
    spec = read_table(Path(__file__).parents[1] / "recipes" / table)
    rows = {s.row for s in spec.rows if s.row}
    assert all(r in PAPER_TABLES[spec.paper]["rows"] for r in rows)
    if table == "dailydialog/table1.toml":  # Table 3: each reward x {off, mix}
        assert {r for r in rows if r.startswith("coral-")} == {f"coral-{r}-{p}" for r in ("bert", "esim", "dmi")
                                                               for p in ("off", "mix")}
    assert {"adalabel", "mirror"} <= rows  # Table 1's small-model baselines
    assert set(spec.evaluators) == {"ESIM", "BERT"}


def test_ubuntu_ground_truth_row_runs_on_the_test_set_alone(tmp_path, shared_data, monkeypatch):
    """No Ubuntu training data here: the ground-truth row still runs and matches the paper's."""
    monkeypatch.setenv("CORAL_DATA_DIR", str(shared_data))
    spec = read_table(Path(__file__).parents[1] / "recipes" / "ubuntu" / "table.toml", tmp_path / "runs")
    seen = messages(spec, only=("ground-truth",))
    assert any("MAUDE-BERT left out" in m for _, m in seen)
    row = json.loads((tmp_path / "runs" / "results.json").read_text())["rows"][0]
    assert row["ours"]["count"] == 3247
    assert row["ours"]["avg_len"] == pytest.approx(row["paper"]["avg_len"], abs=1.5)


@pytest.mark.slow
def test_changed_decoding_regenerates_without_retraining(finished_table, tmp_path):
    spec = read_table(copy_table(finished_table, tmp_path / "t"))
    seen = messages(spec, sets=("generate.max_new_tokens=3",))
    assert {s for s, m in seen if m.startswith("generating")} == {"ce", "coral-mix"}
    assert not [m for _, m in seen if m.startswith(("training", "resuming"))]
    rows = json.loads((spec.runs_dir / "ce" / "test-predictions.jsonl").read_text().splitlines()[0])
    assert len(rows["response"].split()) <= 3


def test_only_a_row_without_its_reward_is_a_clear_error(tmp_path, cli):
    path = write_table(tmp_path / "t")
    result = cli("recipe", "run", str(path), "--only", "coral-mix")
    assert result.exit_code == 2
    assert "needs the reward of stage 'reward'" in result.output and "--only reward" in result.output


def test_side_by_side_tasks_wait_for_their_reward_model_and_evaluators(tmp_path):
    spec = read_table(write_table(tmp_path / "t"))
    tasks = {t.key: t.needs for t in table_tasks(spec)}
    assert tasks[("coral-mix", "train")] == {("reward", "train")}
    assert tasks[("ce", "train")] == frozenset()
    assert tasks[("ce", "generate")] == {("ce", "train")}
    assert tasks[("ce", "evaluate")] == {("ce", "generate"), ("evaluator", "train")}
    assert tasks[("coral-mix", "evaluate")] == {("coral-mix", "generate"), ("evaluator", "train"), ("reward", "train")}
    assert tasks[("ground-truth", "evaluate")] == {("evaluator", "train")}
    assert ("reward", "generate") not in tasks  # retrievers only train
    # with --only, a need outside the selection is an earlier run's (or its own clear error)
    assert {t.key: t.needs for t in table_tasks(spec, ["coral-mix"])}[("coral-mix", "train")] == frozenset()

    order, done = [], set()
    while (task := next_task(table_tasks(spec), done, done)) is not None:
        order.append(task.key)
        done.add(task.key)
    assert order[:3] == [("reward", "train"), ("evaluator", "train"), ("ce", "train")]  # the reward unblocks most
    assert len(order) == len(tasks)
    # nothing starts before what it needs has finished, even when slots are free
    assert next_task(table_tasks(spec), set(), {("reward", "train"), ("evaluator", "train")}).key == ("ce", "train")
    assert next_task(table_tasks(spec), set(), {("reward", "train"), ("evaluator", "train"), ("ce", "train")}) is None


@pytest.mark.slow
def test_jobs_side_by_side_give_the_table_one_after_another_gives(finished_table, tmp_path, cli):
    path = write_table(tmp_path / "t")
    result = cli("recipe", "run", str(path), "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert "9 tasks, 2 at a time" in result.output and "coral-mix: train: finished" in result.output
    runs = tmp_path / "t" / "runs"
    assert len(list((runs / "logs").glob("*.log"))) == 9
    assert "step 4/4" in (runs / "logs" / "coral-mix.train.log").read_text()  # the child's plain progress lines
    alone = {r["name"]: r for r in json.loads((finished_table.parent / "runs" / "results.json").read_text())["rows"]}
    side = {r["name"]: r for r in json.loads((runs / "results.json").read_text())["rows"]}
    assert list(side) == list(alone)
    for name in ("ce", "coral-mix"):  # one thread each here: the same training up to float summation order
        assert side[name]["training"]["steps"] == alone[name]["training"]["steps"] == 4
        assert side[name]["ours"]["count"] == alone[name]["ours"]["count"] == 48
        losses = [[r["loss"] for r in RunDir(folder / name).read_metrics() if "loss" in r]
                  for folder in (runs, finished_table.parent / "runs")]
        assert losses[0] == pytest.approx(losses[1], rel=1e-4)


@pytest.mark.slow
def test_a_failed_side_by_side_task_names_itself_and_its_log(tmp_path, cli):
    path = write_table(tmp_path / "t")
    result = cli("recipe", "run", str(path), "--only", "coral-mix", "--jobs", "2")
    assert result.exit_code == 2
    assert "coral-mix (train) failed (exit 2)" in result.output
    assert "needs the reward of stage 'reward'" in result.output and "coral-mix.train.log" in result.output
    assert not (tmp_path / "t" / "runs" / "logs" / "coral-mix.generate.log").exists()  # nothing ran after it


def test_the_quickstart_table_compares_zero_shot_with_coral_on_the_same_contexts():
    """recipes/quickstart.toml (the README's main job): both rows decode the same 100 test contexts
    the same way, both are scored by the training reward (R3) and by an evaluator trained on the
    other half of the dialogues."""
    recipes = Path(__file__).parents[1] / "recipes"
    spec = read_table(recipes / "quickstart.toml")
    zs, coral = spec.rows
    assert str(zs.checkpoint) == "smollm2" and zs.reward == coral.reward == "reward-dmi"
    reward, evaluator = (stage_config(spec, spec.stage(n)) for n in ("reward-dmi", spec.evaluators["DMI"]))
    assert {reward.data.train_half, evaluator.data.train_half} == {"a", "b"}
    runner = TableRunner(spec, lambda *a: None)
    zs_cfg, coral_cfg = runner._config(zs), runner._config(coral)
    assert zs_cfg.generate == coral_cfg.generate and zs_cfg.generate.strategy == "nucleus"
    assert zs_cfg.data.max_pairs == coral_cfg.data.max_pairs == spec.max_pairs == 100
    assert zs_cfg.data.max_context_tokens == coral_cfg.data.max_context_tokens
    assert coral_cfg.generator.pretrained == "smollm2" and coral_cfg.generator.lora.enabled
    assert coral_cfg.objective.kl_coef > 0 and coral_cfg.train.stop_on_collapse


RERANK = """
[[stage]]
name = "ce-rerank"
train = "generator"
generator = "ce"
rerank_with = "reward"
candidates = 3
reward = "reward"
set = ["generate.strategy='nucleus'"]
label = "CE + rerank"
"""


@pytest.mark.slow
def test_a_rerank_row_keeps_the_candidate_its_ranker_scores_highest(finished_table, tmp_path):
    """The paper's DialogRPT kind of row: another stage's model, N samples per context, the
    ranker's best is the response; nothing is trained again."""
    from coral_cli.rewards.checkpoint import load_reward

    path = copy_table(finished_table, tmp_path / "t")
    path.write_text(path.read_text() + RERANK)
    spec = read_table(path)
    seen = messages(spec, only=("ce-rerank",))
    assert not [m for _, m in seen if m.startswith(("training", "resuming"))]
    assert ("ce-rerank", "uses the model of stage 'ce'") in seen
    rows = [json.loads(x) for x in (spec.runs_dir / "ce-rerank" / "test-predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 48 and all(len(r["responses"]) == len(r["scores"]) == 3 for r in rows)
    assert all(r["scores"][r["responses"].index(r["response"])] == max(r["scores"]) for r in rows)
    assert any(len(set(r["responses"])) > 1 for r in rows)  # sampled, not three copies of one reply
    reward = load_reward(spec.runs_dir / "reward" / "checkpoints" / "best")
    direct = reward.score([rows[0]["context"]] * 3, rows[0]["responses"]).tolist()
    assert direct == pytest.approx(rows[0]["scores"], abs=1e-4)  # the scores are f_R of the texts
    sidecar = json.loads((spec.runs_dir / "ce-rerank" / "test-predictions.jsonl.config.json").read_text())
    assert sidecar["reranked_by"].endswith("reward/checkpoints/best") and sidecar["generate"]["num_return_sequences"] == 3
    results = json.loads((spec.runs_dir / "results.json").read_text())
    assert "CE + rerank" in [r["label"] for r in results["rows"]]
    again = messages(spec, only=("ce-rerank",))  # up to date: nothing regenerated
    assert ("ce-rerank", f"predictions up to date: {spec.runs_dir / 'ce-rerank' / 'test-predictions.jsonl'}") in again


def test_rerank_and_generator_keys_are_checked(tmp_path):
    bad = TABLE + RERANK.replace('generator = "ce"', 'generator = "reward"').replace("candidates = 3", "candidates = 1")
    bad += '\n[[stage]]\nname = "x"\ntrain = "generator"\nrecipe = "generator.toml"\nrerank_with = "reward"\n'
    with pytest.raises(ConfigError) as err:
        read_table(write_table(tmp_path / "bad", bad))
    text = str(err.value)
    assert "generator = 'reward' is a retriever stage, not a generator" in text
    assert "candidates = 1: reranking needs at least 2" in text
    assert "rerank_with and candidates go together" in text
    both = TABLE + RERANK.replace('generator = "ce"', 'generator = "ce"\nrecipe = "generator.toml"')
    with pytest.raises(ConfigError, match="give exactly one of recipe"):
        read_table(write_table(tmp_path / "both", both))


def test_seeds_repeat_each_trained_row_with_the_next_training_seeds(tmp_path):
    path = write_table(tmp_path / "t", TABLE.replace('max_pairs = 48', 'max_pairs = 48\nseeds = 3\ncompare_to = "ce"'))
    spec = read_table(path)
    assert [s.name for s in spec.rows] == ["ce", "ce-seed1", "ce-seed2", "coral-mix", "coral-mix-seed1", "coral-mix-seed2"]
    assert [stage_config(spec, s).runtime.seed for s in spec.seeds_of(spec.stage("coral-mix"))] == [0, 1, 2]
    assert spec.stage("coral-mix-seed2").reward == "reward" and spec.stage("coral-mix-seed2").seed_of == "coral-mix"
    assert [s.name for s in read_table(path, seeds=1).rows] == ["ce", "coral-mix"]  # --seeds overrides
    bad = write_table(tmp_path / "bad", TABLE.replace('max_pairs = 48', 'max_pairs = 48\ncompare_to = "cee"'))
    with pytest.raises(ConfigError, match="compare_to = 'cee' is not a generator stage"):
        read_table(bad)


@pytest.mark.slow
def test_seeded_rows_show_mean_and_sd_and_differences_from_the_compared_row(finished_table, tmp_path):
    path = copy_table(finished_table, tmp_path / "t")
    path.write_text(path.read_text().replace('max_pairs = 48', 'max_pairs = 48\nseeds = 2\ncompare_to = "ce"\ncase_study = 3'))
    spec = read_table(path)
    seen = messages(spec)
    assert {s for s, m in seen if m.startswith("training")} == {"ce-seed1", "coral-mix-seed1"}  # seed 0 was done
    results = json.loads((spec.runs_dir / "results.json").read_text())
    row = next(r for r in results["rows"] if r["name"] == "coral-mix")
    reports = [json.loads((spec.runs_dir / n / "test-eval.json").read_text())["metrics"] for n in ("coral-mix", "coral-mix-seed1")]
    assert row["seeds"] == 2 and row["ours"]["Dist-1"] == pytest.approx((reports[0]["Dist-1"] + reports[1]["Dist-1"]) / 2)
    assert row["sd"]["Dist-1"] == pytest.approx(abs(reports[0]["Dist-1"] - reports[1]["Dist-1"]) / 2 ** 0.5)
    assert set(row["vs"]) >= {"avg_len", "BLEU", "METEOR", "Dist-1", "Dist-2", "MAUDE-BERT", "R3"} - {"R3"}
    t = row["vs"]["avg_len"]
    assert t["ci"][0] <= t["diff"] <= t["ci"][1] and 0 < t["p"] <= 1 and t["seeds"] == [2, 2]
    assert row["vs"]["Dist-1"]["ci"] is None and row["vs"]["Dist-1"]["p_from"] == "randomisation"
    assert next(r for r in results["rows"] if r["name"] == "ce")["vs"] is None  # the compared row itself
    md = (spec.runs_dir / "results.md").read_text()
    assert " ± " in md and "differs from CE at p < 0.05" in md and "(seed 1)" in md
    cases = results["case_study"]
    assert len(cases) == 3 and all(set(c["replies"]) == {"CE", "CORAL-BERT (mix)"} for c in cases)
    assert "Case study: 3 test contexts" in md and cases[0]["reference"] in md


def test_every_stages_set_is_checked_before_the_first_stage_trains(tmp_path, cli):
    """A typo in the last stage's `set` used to surface only when that stage started, after the
    earlier ones had trained; now the table is refused up front, naming the stage and the key."""
    table = TABLE.replace('label = "CORAL-BERT (mix)"', 'label = "CORAL-BERT (mix)"\nset = ["train.max_stepz=3"]') \
                 .replace("set = [\"objective.loss='ce'\"]", "set = [\"objective.loss='ce'\", \"train.lr='fast'\"]")
    path = write_table(tmp_path / "t", table)
    spec = read_table(path)  # the table itself parses
    with pytest.raises(ConfigError) as err:
        TableRunner(spec, lambda stage, msg: None)
    assert "stage 'coral-mix':" in err.value.message and "unknown key 'train.max_stepz'" in err.value.message
    assert "did you mean 'max_steps'" in err.value.message
    assert "stage 'ce':" in err.value.message and "train.lr" in err.value.message  # every problem at once
    assert "stage 'reward'" not in err.value.message
    for command in ("run", "plan"):
        result = cli("recipe", command, str(path))
        assert result.exit_code == 2 and "unknown key 'train.max_stepz'" in result.stderr, result.output
    assert not (tmp_path / "t" / "runs").exists()  # nothing trained, nothing written
    with pytest.raises(ConfigError) as err:  # a bad --set: one line per recipe, not one per stage
        TableRunner(read_table(write_table(tmp_path / "u")), lambda stage, msg: None, extra_sets=("runtime.sed=3",))
    assert err.value.message.count("unknown key 'runtime.sed'") == 2
    assert "stages 'reward', 'evaluator': invalid config in" in err.value.message
    assert "stages 'ce', 'coral-mix': invalid config in" in err.value.message
