"""Every bad input is one clear message with a `fix:` line and exit code 2, never a traceback."""

from __future__ import annotations

import errno
import gzip
import json

import pytest
import torch

BAD = b"hello \xff there\n"  # 0xff never occurs in UTF-8
BOM = b"\xef\xbb\xbf"


def clean_error(result, *needles: str) -> str:
    """Assert exit 2 with an error and a fix (no traceback); return the output."""
    output = result.output
    assert result.exit_code == 2, output
    assert "fix:" in output and "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    for needle in needles:
        assert needle in output, output
    return output


@pytest.fixture(scope="module")
def reward_ckpt(tmp_path_factory):
    """A randomly initialised tiny ESIM retriever checkpoint."""
    from coral_cli.rewards import build_reward, save_reward
    from tests.tiny import tiny_config

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("rew") / "ckpt"
    save_reward(build_reward(tiny_config("esim").retriever, "bundled"), folder)
    return folder


def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


# 10. non-UTF-8 files and stdin; a BOM is dropped


def test_non_utf8_inputs_name_the_file_line_and_byte(cli, tmp_path, generator_ckpt, reward_ckpt):
    txt = _write(tmp_path / "p.txt", b"fine\n" + BAD)
    jsonl = _write(tmp_path / "p.jsonl", b'{"context": ["hi \xff"], "response": "yo"}\n')
    toml = _write(tmp_path / "r.toml", b"[data]\nmax_pairs = 3 # \xff\n")
    cases = [
        (["evaluate", "-p", txt], f"{txt}:2: not UTF-8 text (byte 0xff at offset 11)"),
        (["evaluate", "-p", jsonl], f"{jsonl}:1: not UTF-8"),
        (["evaluate", "compare", txt], f"{txt}:2: not UTF-8"),
        (["generate", "-c", str(generator_ckpt), "--input", jsonl], f"{jsonl}:1: not UTF-8"),
        (["retriever", "score", "-c", str(reward_ckpt), "-i", jsonl], f"{jsonl}:1: not UTF-8"),
        (["chat", "-c", str(generator_ckpt), "--context-file", txt, "--plain"], f"{txt}:2: not UTF-8"),
        (["config", "show", "--recipe", toml], f"{toml}:2: not UTF-8"),
    ]
    for args, message in cases:
        assert "save it as UTF-8" in clean_error(cli(*args), message)


def test_non_utf8_stdin_of_plain_chat_and_generate(cli, generator_ckpt, reward_ckpt):
    clean_error(cli("chat", "-c", str(generator_ckpt), "--plain", input=b"\xff hi\n"), "stdin:1: not UTF-8")
    bad = b'{"context": ["ok"], "response": "fine"}\n{"context": ["\xff"], "response": "x"}\n'
    clean_error(cli("retriever", "score", "-c", str(reward_ckpt), "-i", "-", input=bad), "stdin:2: not UTF-8")


def test_utf8_bom_is_dropped(cli, tmp_path):
    from coral_cli.metrics.predictions import read_predictions

    txt = tmp_path / "p.txt"
    txt.write_bytes(BOM + b"hello there\n")
    assert read_predictions(txt).predictions == ["hello there"]
    jsonl = _write(tmp_path / "p.jsonl", BOM + b'{"response": "hi there", "reference": "hi"}\n')
    result = cli("evaluate", "-p", jsonl, "--metrics", "avg_len", "--json")
    assert result.exit_code == 0, result.output
    recipe = _write(tmp_path / "r.toml", BOM + b"[data]\nmax_pairs = 3\n")
    assert cli("config", "show", "--recipe", recipe).exit_code == 0


# 11. a full disk, a read-only folder


@pytest.fixture
def disk_full(monkeypatch):
    def boom(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", f"{path}.tmp")

    monkeypatch.setattr("coral_cli.textio.atomic_write_text", boom)


def test_disk_full_while_writing_out_is_one_message(cli, tmp_path, disk_full, generator_ckpt):
    preds = _write(tmp_path / "p.txt", b"hello there\n")
    out = tmp_path / "report.json"
    result = cli("evaluate", "-p", preds, "--metrics", "avg_len", "--out", str(out))
    clean_error(result, f"cannot write {out}: No space left on device", "free some disk space")
    contexts = _write(tmp_path / "c.jsonl", b'{"context": ["hi"]}\n')
    out = tmp_path / "gen.jsonl"
    result = cli("generate", "-c", str(generator_ckpt), "--input", contexts, "--out", str(out),
                 "--max-new-tokens", "2", "--strategy", "greedy")
    clean_error(result, f"cannot write {out}: No space left on device")


def test_environment_oserrors_are_caught_at_the_cli_edge_and_bugs_are_not(cli, tmp_path, monkeypatch):
    preds = _write(tmp_path / "p.txt", b"hello there\n")
    args = ("evaluate", "-p", preds, "--metrics", "avg_len", "--out", str(tmp_path / "r.json"))

    def read_only(path, text):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/r.json")

    monkeypatch.setattr("coral_cli.textio.write_text", read_only)
    clean_error(cli(*args), "cannot write /mnt/ro/r.json: Read-only file system")

    def bug(path, text):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr("coral_cli.textio.write_text", bug)
    result = cli(*args)
    assert result.exit_code == 1 and isinstance(result.exception, OSError)


# 12. a damaged retriever checkpoint


def test_retriever_tensor_of_the_wrong_shape_names_it(cli, tmp_path, reward_ckpt):
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(reward_ckpt, bad)
    state = load_file(str(bad / "model.safetensors"))
    key = sorted(state)[0]
    want = tuple(state[key].shape)
    state[key] = torch.zeros(3, 3)
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    requests = _write(tmp_path / "s.jsonl", b'{"context": ["hi"], "response": "yo"}\n')
    clean_error(cli("retriever", "score", "-c", str(bad), "-i", requests),
                f"tensor '{key}' has shape (3, 3)", f"needs {want}")


# 13. malformed data, predictions, contexts, reports; --out a folder


def test_corrupt_gzip_in_data_dir(cli, tmp_path):
    data = bytearray(gzip.compress(b"".join(b"hi %d __eou__ yo __eou__\n" % i for i in range(500))))
    data[60:90] = bytes(b ^ 0x5A for b in data[60:90])
    (tmp_path / "dialogues_test.txt.gz").write_bytes(bytes(data))
    clean_error(cli("data", "show", "--data-dir", str(tmp_path), "--split", "test"), "damaged gzip file")


@pytest.mark.parametrize(("line", "message"), [
    ("5", "expected a JSON object, got int"),
    ('["a response"]', "expected a JSON object, got list"),
    ('{"response": "hi", "context": 5}', "'context' must be a list of strings"),
    ('{"response": "hi", "reference": 3}', "'reference' must be a string"),
])
def test_malformed_prediction_lines(cli, tmp_path, reward_ckpt, line, message):
    preds = _write(tmp_path / "p.jsonl", line.encode() + b"\n")
    clean_error(cli("evaluate", "-p", preds, "--reward-checkpoint", str(reward_ckpt)), f"{preds}:1: {message}")


def test_context_that_is_not_a_list_of_strings(cli, tmp_path, generator_ckpt, reward_ckpt):
    lines = _write(tmp_path / "c.jsonl", b'{"context": 5, "response": "x"}\n')
    clean_error(cli("generate", "-c", str(generator_ckpt), "--input", lines), "'context' must be a list of strings")
    clean_error(cli("retriever", "score", "-c", str(reward_ckpt), "-i", lines), "'context' must be a list of strings")


@pytest.mark.parametrize(("line", "got"), [('"hello"', "str"), ('["hi", "there"]', "list"), ("5", "int")])
def test_an_input_line_that_is_not_a_json_object_says_so(cli, tmp_path, generator_ckpt, reward_ckpt, line, got):
    lines = _write(tmp_path / "c.jsonl", b'{"context": ["hi"], "response": "yo"}\n' + line.encode() + b"\n")
    expected = f"{lines}:2: expected a JSON object, got {got}"
    clean_error(cli("generate", "-c", str(generator_ckpt), "--input", lines), expected)
    clean_error(cli("retriever", "score", "-c", str(reward_ckpt), "-i", lines), expected)


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl"])
def test_empty_predictions_are_an_error(cli, tmp_path, name):
    preds = _write(tmp_path / name, b"")
    refs = _write(tmp_path / "refs.txt", b"")
    clean_error(cli("evaluate", "-p", preds), f"no predictions in {preds}")
    clean_error(cli("evaluate", "-p", preds, "--references", refs), f"no predictions in {preds}")


def test_out_that_is_a_folder_is_rejected_before_any_work(cli, tmp_path):
    folder = tmp_path / "outdir"
    folder.mkdir()
    # the checkpoint does not even exist: the --out check comes first
    clean_error(cli("generate", "-c", str(tmp_path / "nope"), "--out", str(folder)), f"--out {folder} is a folder")
    preds = _write(tmp_path / "p.txt", b"hello\n")
    clean_error(cli("evaluate", "-p", preds, "--out", str(folder)), f"--out {folder} is a folder")


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not a JSON report"),
    ("[1, 2]", "is not a coral evaluate report"),
    ('{"metrics": 5}', "is not a coral evaluate report"),
    ('{"counts": {}}', "is not a coral evaluate report"),
    ('{"metrics": {"BLEU": "high"}}', "metric 'BLEU' is not a number"),
])
def test_malformed_report_in_compare(cli, tmp_path, text, message):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"metrics": {"BLEU": 0.1}}))
    bad = _write(tmp_path / "bad.json", text.encode())
    clean_error(cli("evaluate", "compare", str(good), bad), message)


# 14. NaN and inf


def test_nan_and_inf_in_config_keys(cli, tmp_path):
    output = clean_error(cli("config", "show", "--set", "train.lr=nan", "--set", "retriever.dropout=inf"))
    assert "'train.lr' = nan is not a finite number" in output
    assert "'retriever.dropout' = inf is not a finite number" in output
    runs = tmp_path / "runs"
    result = cli("coral", "train", "--p-plus", "nan", "--set", f"runtime.runs_dir={runs}", "--max-pairs", "4")
    clean_error(result, "'objective.p_plus' = nan is not a finite number")
    assert not runs.exists()
    clean_error(cli("generate", "-c", str(tmp_path / "nope"), "--top-p", "nan"), "'generate.top_p' = nan")


def test_nan_in_gates_margin_and_chat_options(cli, tmp_path):
    preds = _write(tmp_path / "p.txt", b"hello there\n")
    clean_error(cli("evaluate", "-p", preds, "--fail-under", "avg_len=nan"), "gate 'avg_len=nan' needs a finite number")
    clean_error(cli("evaluate", "-p", preds, "--fail-over", "avg_len=-inf"), "needs a finite number")
    clean_error(cli("evaluate", "-p", preds, "--margin", "nan"), "--margin")
    clean_error(cli("chat", "-c", str(tmp_path), "--temperature", "inf", "--plain"), "--temperature")


# smaller ones


def test_reward_and_sampler_names_are_checked_before_any_work(cli, tmp_path):
    runs = f"runtime.runs_dir={tmp_path / 'runs'}"
    clean_error(cli("coral", "train", "--reward", "nosuch", "--set", runs),
                "unknown reward model 'nosuch' (objective.reward)", "available: bert")
    clean_error(cli("coral", "train", "--set", "objective.negative_sampler=rando", "--set", runs),
                "unknown sampler 'rando'", "did you mean 'random'?")
    clean_error(cli("retriever", "train", "--model", "bret", "--set", runs),
                "unknown reward model 'bret' (retriever.model)", "did you mean 'bert'?")
    assert not (tmp_path / "runs").exists()


def test_gate_without_value_shows_the_gate_syntax(cli, tmp_path):
    preds = _write(tmp_path / "p.txt", b"hello there\n")
    output = clean_error(cli("evaluate", "-p", preds, "--fail-under", "avg_len"), "expected name=value")
    assert "--fail-under BLEU=0.01" in output and "--evaluator" not in output


def test_unknown_gate_metric_fails_before_scoring(cli, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("scored before checking the gates")

    monkeypatch.setattr("coral_cli.metrics.report.evaluate", never)
    preds = _write(tmp_path / "p.txt", b"hello there\n")
    clean_error(cli("evaluate", "-p", preds, "--fail-under", "Dist-3=0.1"),
                "gate on unknown metric 'Dist-3'", "did you mean 'Dist-2'?")


def test_margin_out_of_range(cli, tmp_path):
    preds = _write(tmp_path / "p.txt", b"hello there\n")
    clean_error(cli("evaluate", "-p", preds, "--margin", "5"), "--margin")


def test_split_and_input_together(cli, tmp_path):
    lines = _write(tmp_path / "c.jsonl", b'{"context": ["hi"]}\n')
    clean_error(cli("generate", "-c", str(tmp_path), "--input", lines, "--split", "train"),
                "--split and --input both given")


def test_min_new_tokens_above_max(cli):
    clean_error(cli("config", "show", "--set", "generate.min_new_tokens=50", "--set", "generate.max_new_tokens=10"),
                "min_new_tokens (50) must not exceed max_new_tokens (10)")


@pytest.mark.parametrize(("args", "message", "command"), [
    (["evaluate", "compare"], "Missing argument", "coral evaluate compare"),
    (["coral", "train", "--bogus"], "No such option: --bogus", "coral coral train"),
    (["--bogus"], "No such option: --bogus", "coral"),
    (["nosuch"], "No such command 'nosuch'", "coral"),
    (["retriever", "eval", "--candidates", "many"], "Invalid value for '--candidates'", "coral retriever eval"),
])
def test_usage_errors_get_a_fix_line(cli, args, message, command):
    clean_error(cli(*args), message, f"fix: run '{command} --help' for the options")


def test_bare_command_still_shows_help(cli):
    result = cli("data")
    assert "stats" in result.output and "fix:" not in result.output
