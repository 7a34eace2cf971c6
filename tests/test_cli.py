import json

import pytest
import torch

from coral_cli.device import autocast_dtype, describe_device, pick_device
from coral_cli.errors import CoralError


def test_env_json(cli):
    result = cli("env", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"versions", "device", "paths"}
    assert report["versions"]["torch"] == torch.__version__
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert report["device"]["type"] == expected
    assert report["paths"]["bundled_dailydialog"].endswith("dailydialog")


def test_env_table(cli):
    result = cli("env")
    assert result.exit_code == 0 and "transformers" in result.stdout


def test_data_stats_json(cli):
    result = cli("data", "stats", "--max-pairs", "40", "--max-context-tokens", "32", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["split"] for s in report["splits"]] == ["train", "validation", "test"]
    assert all(s["pairs"] == 40 for s in report["splits"])
    test = report["splits"][2]
    assert test["context_tokens"]["p50"] <= test["context_tokens"]["max"]
    assert 0 < test["context_truncated_share"] <= 1


def test_data_stats_table_and_show(cli):
    result = cli("data", "stats", "--max-pairs", "20", "--split", "test")
    assert result.exit_code == 0, result.output
    assert "test" in result.stdout and "20" in result.stdout
    result = cli("data", "show", "--split", "test", "-n", "2")
    assert result.exit_code == 0
    assert "test-0 · turn 2" in result.stdout and "Mary Jane" in result.stdout


def test_data_show_json_lines(cli):
    result = cli("data", "show", "--split", "validation", "-n", "3", "--offset", "1", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["turn"] for r in rows] == [2, 3, 4]
    assert rows[0]["context"][-1] != rows[0]["response"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "stats", "--dataset", "dailydialgo"], "unknown dataset 'dailydialgo'"),
        (["data", "show", "--data-dir", "/no/such/folder"], "data folder not found: /no/such/folder"),
        (["data", "show", "--split", "dev"], "unknown split 'dev'"),
        (["data", "stats", "--tokenizer", "/no/such/tok"], "cannot load tokenizer"),
        (["config", "show", "--recipe", "missing.toml"], "recipe not found: missing.toml"),
    ],
)
def test_user_errors_exit_2_with_one_clear_message(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.output


def test_malformed_file_via_cli_names_the_line(cli, tmp_path):
    (tmp_path / "dialogues_test.txt").write_text("ok __eou__ fine __eou__ yes __eou__\nbroken line\n")
    result = cli("data", "show", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "dialogues_test.txt:2" in result.stderr


def test_debug_flag_keeps_the_traceback(cli, monkeypatch):
    result = cli("--debug", "data", "show", "--split", "dev")
    assert isinstance(result.exception, CoralError)


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    assert autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    assert describe_device("auto")["threads"] >= 1
    with pytest.raises(CoralError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(CoralError, match="unknown device"):
        pick_device("gpu0")
