import gzip
import json

import pytest

from coral_cli.config import DataConfig
from coral_cli.data import dailydialog
from coral_cli.data.sources import load_dialogues, load_pairs, utterance_pool
from coral_cli.errors import DataError

PAPER_PAIRS = {"train": 76_052, "validation": 7_069, "test": 5_740}


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_bundled_pair_counts_match_the_paper(split):
    assert len(load_pairs(DataConfig(), split)) == PAPER_PAIRS[split]


def test_bundled_copy_is_identical_to_the_shared_release(shared_data):
    for split in PAPER_PAIRS:
        bundled = gzip.open(dailydialog.bundled_dir() / f"dialogues_{split}.txt.gz").read()
        assert bundled == (shared_data / "dailydialog" / f"dialogues_{split}.txt").read_bytes()
    assert (dailydialog.bundled_dir() / "LICENSE.md").read_text().count("CC BY-NC-SA 4.0") >= 1


def test_pair_rule_is_config_not_hard_coded():
    cfg = DataConfig(min_context_turns={"train": 1, "validation": 1, "test": 1})
    assert len(load_pairs(cfg, "test")) == 6_740  # every utterance after the first
    cfg = DataConfig(min_context_turns={"train": 2, "validation": 1, "test": 2})
    assert len(load_pairs(cfg, "train")) == 64_934


def test_context_is_exactly_the_preceding_utterances():
    dialogues = load_dialogues(DataConfig(), "test")
    pairs = load_pairs(DataConfig(), "test")
    first = pairs[0]
    assert first["dialogue_id"] == "test-0" and first["turn"] == 2
    assert first["context"] == ["Hey man , you wanna buy some weed ?", "Some what ?"]
    assert first["response"] == "Weed ! You know ? Pot , Ganja , Mary Jane some chronic !"
    for row in pairs.select(range(0, len(pairs), 97)):
        utts = dialogues[int(row["dialogue_id"].split("-")[1])]
        assert row["context"] == utts[: row["turn"]]
        assert row["response"] == utts[row["turn"]]


def test_max_pairs_takes_a_prefix():
    assert len(load_pairs(DataConfig(max_pairs=10), "validation")) == 10


def test_data_dir_in_official_zip_layout(tmp_path, shared_data):
    for split in PAPER_PAIRS:
        (tmp_path / split).mkdir()
        text = (shared_data / "dailydialog" / f"dialogues_{split}.txt").read_text()
        (tmp_path / split / f"dialogues_{split}.txt").write_text(text)
    assert len(load_pairs(DataConfig(data_dir=str(tmp_path)), "validation")) == 7_069


def test_data_dir_from_environment(tmp_path, monkeypatch):
    (tmp_path / "dailydialog").mkdir()
    (tmp_path / "dailydialog" / "dialogues_test.txt").write_text("a __eou__ b __eou__ c __eou__\n")
    monkeypatch.setenv("CORAL_DATA_DIR", str(tmp_path))
    pairs = load_pairs(DataConfig(), "test")
    assert pairs["response"] == ["c"] and pairs["context"] == [["a", "b"]]


def test_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "dialogues_test.txt").write_text("a __eou__ b __eou__\nno marker here\n")
    with pytest.raises(DataError) as exc:
        load_pairs(DataConfig(data_dir=str(tmp_path)), "test")
    assert f"{tmp_path / 'dialogues_test.txt'}:2" in str(exc.value)
    assert "__eou__" in str(exc.value)


def test_missing_split_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no DailyDialog file for split 'train'"):
        load_pairs(DataConfig(data_dir=str(tmp_path)), "train")


def test_hugging_face_dataset_from_a_local_folder(tmp_path):
    rows = [{"dialog": ["hi there", "hello !", "how are you ?"]}, {"dialog": ["bye", "see you"]}]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pairs = load_pairs(DataConfig(dataset=f"hf:{tmp_path}"), "test")
    assert pairs["response"] == ["how are you ?"]  # test needs two preceding utterances
    pairs = load_pairs(DataConfig(dataset=f"hf:{tmp_path}", min_context_turns={"test": 1}), "test")
    assert pairs["response"] == ["hello !", "how are you ?", "see you"]


def test_utterance_pool_is_distinct_training_utterances():
    pool = utterance_pool(DataConfig())
    assert len(pool) == len(set(pool)) == 72_256
    assert "Say , Jim , how about going for a few beers after dinner ?" in pool


@pytest.mark.slow
def test_training_halves_are_disjoint_and_cover_the_split():
    a = load_pairs(DataConfig(train_half="a"), "train")
    b = load_pairs(DataConfig(train_half="b"), "train")
    assert len(a) + len(b) == 76_052
    assert not set(a["dialogue_id"]) & set(b["dialogue_id"])
    assert len(load_pairs(DataConfig(train_half="a"), "validation")) == 7_069  # only train is halved
    pool_a, pool_b = utterance_pool(DataConfig(train_half="a")), utterance_pool(DataConfig(train_half="b"))
    assert set(a["response"]) <= set(pool_a) and len(pool_a) < 72_256 and len(pool_b) < 72_256
