"""Generator checkpoints load safetensors only, and damaged, diverged or incomplete ones are one
clear error (exit 2) wherever a generator is loaded: generate, chat, --init, resume."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from coral_cli.config import resolve
from coral_cli.errors import AssetError
from coral_cli.generator.bart.model import build_generator, init_architecture, load_generator, load_generator_weights, save_generator
from coral_cli.tokenizer import load_tokenizer

SIZES = {"generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 16, "generator.heads": 2,
         "generator.ffn_dim": 32, "generator.max_positions": 64}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = resolve(None, SIZES)
    torch.manual_seed(0)
    model = build_generator(cfg.generator, load_tokenizer("bundled"))
    return save_generator(model, load_tokenizer("bundled"), tmp_path_factory.mktemp("gen") / "ckpt", cfg.data)


def copy(checkpoint, tmp_path):
    return shutil.copytree(checkpoint, tmp_path / "copy")


def test_a_pickle_only_folder_is_refused_everywhere(checkpoint, tmp_path, cli):
    folder = copy(checkpoint, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(AssetError, match="pickle files are not loaded"):
        load_generator(folder)
    for args in (["generate", "-c", str(folder), "--max-pairs", "2"],
                 ["chat", "-c", str(folder), "--plain"],
                 ["coral", "train", "--loss", "ce", "--init", str(folder), "--max-steps", "1",
                  "--set", f"runtime.runs_dir={tmp_path / 'runs'}"]):
        result = cli(*args, input="hello\n")
        assert result.exit_code == 2 and "pickle" in result.output and "Traceback" not in result.output, (args, result.output)


def test_missing_tokenizer_and_nan_weights_are_clear_errors(checkpoint, tmp_path):
    folder = copy(checkpoint, tmp_path)
    for name in ("tokenizer.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(AssetError, match="no tokenizer files"):
        load_generator(folder)
    folder = shutil.copytree(checkpoint, tmp_path / "nan")
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.endswith("fc1.weight"))
    state[key][0, 0] = float("nan")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(AssetError, match=f"NaN or inf .*{key}"):
        load_generator(folder)


def test_resume_weights_must_be_whole_and_fit_the_model(checkpoint, tmp_path):
    model = build_generator(resolve(None, SIZES).generator, load_tokenizer("bundled"))
    load_generator_weights(model, checkpoint)  # the same architecture loads
    other = build_generator(resolve(None, {**SIZES, "generator.ffn_dim": 48}).generator, load_tokenizer("bundled"))
    with pytest.raises(AssetError, match="wrong shape"):
        load_generator_weights(other, checkpoint)
    folder = copy(checkpoint, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])  # a kill mid-copy
    with pytest.raises(AssetError, match="damaged"):
        load_generator_weights(model, folder)


def test_init_architecture_reads_the_checkpoint_sizes(checkpoint):
    assert init_architecture(checkpoint) == {"encoder_layers": 1, "decoder_layers": 1, "d_model": 16, "heads": 2,
                                             "ffn_dim": 32, "max_positions": 64}


@pytest.mark.slow
def test_init_records_the_checkpoint_sizes_not_the_recipe(checkpoint, tmp_path, cli):
    from coral_cli.config import resolve as read

    result = cli("coral", "train", "--loss", "ce", "--init", str(checkpoint), "--max-steps", "1", "--max-pairs", "8",
                 "--max-context-tokens", "48", "--set", "data.max_response_tokens=12", "--name", "init",
                 "--set", f"runtime.runs_dir={tmp_path}", "--set", "generator.eval_pairs=4")
    assert result.exit_code == 0, result.output
    saved = read(tmp_path / "init" / "config.toml").generator  # the default recipe says 6+6 layers, d = 1024
    assert (saved.encoder_layers, saved.d_model, saved.ffn_dim, saved.max_positions) == (1, 16, 32, 64)
    assert init_architecture(tmp_path / "init" / "checkpoints" / "last")["d_model"] == 16


# a LoRA --resume refuses a base model that changed since the adapters were saved (as generate does)

def _retouch(base) -> None:
    """The same model folder with another setting: its fingerprint changes."""
    config = base / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps"', '"foo": 1, "rms_norm_eps"'))


@pytest.mark.slow
def test_a_lora_resume_after_the_base_changed_is_refused_before_training(tmp_path, cli):
    from coral_cli.runs import RunDir
    from tests.tiny_lm import save_tiny_llama

    base = save_tiny_llama(tmp_path / "base")
    args = ["coral", "train", "--pretrained", str(base), "--lora", "--loss", "ce", "--name", "lora", "--device", "cpu",
            "--max-pairs", "8", "--max-context-tokens", "32", "--set", "data.max_response_tokens=8",
            "--set", "generator.eval_pairs=2", "--set", "generator.lora.r=2", "--set", f"runtime.runs_dir={tmp_path / 'runs'}"]
    for steps in ("1", "2"):  # train, then resume on the same base
        done = cli(*args, "--max-steps", steps, *(["--resume"] if steps == "2" else []))
        assert done.exit_code == 0, done.output
    run = RunDir(tmp_path / "runs" / "lora")
    saved = {p: p.read_bytes() for p in run.root.rglob("*") if p.is_file() and p.name != ".lock"}
    _retouch(base)
    result = cli(*args, "--max-steps", "3", "--resume")
    assert result.exit_code == 2, result.output
    assert f"cannot resume {run.checkpoint('last')}: its LoRA adapters were trained on another version of {base}" \
        in result.stderr and "fix:" in result.stderr and "Traceback" not in result.output
    assert {p: p.read_bytes() for p in run.root.rglob("*") if p.is_file() and p.name != ".lock"} == saved
