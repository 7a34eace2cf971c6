import json

import pytest

from coral_cli.config import DataConfig
from coral_cli.data.sources import available_splits, load_pairs, utterance_pool
from coral_cli.data.ubuntu import dstc7_pairs, read_dstc7_json, read_src_tgt
from coral_cli.errors import DataError


def test_coral_src_tgt_test_set(shared_data):
    cfg = DataConfig(dataset="ubuntu", data_dir=str(shared_data / "ubuntu"))
    assert available_splits(cfg) == ("test",)
    pairs = load_pairs(cfg, "test")
    assert len(pairs) == 3_247
    assert len(set(pairs["dialogue_id"])) == 973  # chains where src[i+1] = src[i] [SEP] tgt[i]
    first = pairs[0]
    assert first["context"][0].startswith("Hey. Does anyone know if flashplugin-nonfree")
    assert len(first["context"]) == first["turn"] == 2
    assert pairs[1]["context"] == first["context"] + [first["response"]]


def test_src_tgt_line_counts_must_match(tmp_path):
    (tmp_path / "src-test.txt").write_text("a [SEP] b\nc\n")
    (tmp_path / "tgt-test.txt").write_text("x\n")
    with pytest.raises(DataError) as exc:
        read_src_tgt(tmp_path / "src-test.txt", tmp_path / "tgt-test.txt")
    assert "src-test.txt has 2 lines" in str(exc.value) and "tgt-test.txt has 1" in str(exc.value)


def _example(i, n_options=100, answer_index=37):
    options = [{"candidate-id": f"c{i}-{k}", "utterance": f"option {k} of {i}"} for k in range(n_options)]
    return {
        "data-split": "train",
        "example-id": 1000 + i,
        "messages-so-far": [
            {"speaker": "u1", "utterance": f"how do I mount {i} ?"},
            {"speaker": "u2", "utterance": "which filesystem ?"},
        ],
        "options-for-correct-answers": [options[answer_index]],
        "options-for-next": options,
    }


def test_dstc7_json_reader(tmp_path):
    path = tmp_path / "ubuntu_train_subtask_1.json"
    path.write_text(json.dumps([_example(0), _example(1, answer_index=0)]))
    examples = read_dstc7_json(path)
    assert len(examples) == 2
    assert len(examples[0].candidates) == 100
    assert examples[0].label == 37 and examples[0].candidates[37] == "option 37 of 0"
    assert examples[1].label == 0
    pairs = dstc7_pairs(examples)
    assert pairs[0].context == ["how do I mount 0 ?", "which filesystem ?"]
    assert pairs[0].response == "option 37 of 0"
    ds = load_pairs(DataConfig(dataset="ubuntu", data_dir=str(tmp_path)), "train")
    assert ds["dialogue_id"] == ["1000", "1001"]
    assert "option 0 of 1" in utterance_pool(DataConfig(dataset="ubuntu", data_dir=str(tmp_path)))


def test_dstc7_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "ubuntu_test_subtask_1.json"
    path.write_text('[\n{"example-id": 1,\n oops}\n]')
    with pytest.raises(DataError, match=r"ubuntu_test_subtask_1.json:3: invalid JSON"):
        read_dstc7_json(path)


def test_dstc7_missing_answer_is_a_clear_error(tmp_path):
    ex = _example(0)
    del ex["options-for-correct-answers"]
    path = tmp_path / "ubuntu_test_subtask_1.json"
    path.write_text(json.dumps([ex]))
    with pytest.raises(DataError, match="example-id 1000.*no options-for-correct-answers"):
        read_dstc7_json(path)


def test_ubuntu_without_data_dir_says_how_to_fix():
    with pytest.raises(DataError) as exc:
        load_pairs(DataConfig(dataset="ubuntu"), "test")
    assert "--data-dir" in str(exc.value)
