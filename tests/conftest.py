"""Shared fixtures: the read-only `shared/` data beside the repo, an isolated cache, a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]

# quiet library progress bars and load reports before transformers/datasets are imported
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2` on 2 cores: one thread per worker, not two each
    os.environ.setdefault("OMP_NUM_THREADS", "1")


REQUIRE_SHARED = "CORAL_REQUIRE_SHARED"  # "1" (CI, .ci/run): missing shared data fails instead of skipping


def _shared_dir() -> Path:
    env = os.environ.get("CORAL_SHARED_DIR")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (tests may read it; the product never needs it). A fresh clone has no
    ../shared: its tests are skipped with the reason, so the README's test command passes there;
    CI sets CORAL_REQUIRE_SHARED=1, so they can never be skipped unseen."""
    path = _shared_dir() / "data"
    if not (path / "dailydialog").is_dir():
        message = f"shared data not found at {path}: set CORAL_SHARED_DIR to the shared/ folder"
        if os.environ.get(REQUIRE_SHARED) == "1":
            pytest.fail(f"{message} ({REQUIRE_SHARED}=1)")
        pytest.skip(f"{message} (a fresh clone has none; {REQUIRE_SHARED}=1 makes this an error)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tokenization caches go to a temp folder, never the user's ~/.cache."""
    os.environ["CORAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("coral-cache"))
    os.environ.pop("CORAL_DATA_DIR", None)
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the bundled SmolLM2 GGUF converted once for the run (about 20 s):
    the conversion test checks that conversion, the tests of the real model load from it
    (monkeypatch CORAL_CACHE_DIR to it)."""
    from coral_cli.generator.pretrained.sources import load_lm

    with built_once(tmp_path_factory, "smollm2-cache") as (cache, built):
        if not built:
            model, _, _ = load_lm("smollm2", "cpu", cache_dir=cache)
            del model
    return cache


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):
    """Invoke `coral ARGS...`; returns the click Result (exit_code, stdout, stderr)."""
    from coral_cli.commands.app import app

    def invoke(*args: str, input: str | None = None):
        os.environ.pop("CORAL_DEBUG", None)
        return runner.invoke(app, list(args), input=input)

    return invoke


@contextmanager
def built_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder for a costly session fixture, shared by every pytest-xdist worker of the run (each
    would otherwise build its own): yields (folder, built) under a file lock. The caller builds
    into the folder when `built` is false; the folder counts as built once the block exits cleanly."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's basetemp, above each worker's own
    folder = root / name
    with FileLock(str(folder) + ".lock"):
        mark = folder / ".built"
        built = mark.exists()
        if not built:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        yield folder, built
        mark.touch()


@pytest.fixture(scope="session")
def overfit_generator(tmp_path_factory):
    """A tiny generator trained with CE to overfit 32 DailyDialog pairs: (cfg, run, state, losses)."""
    from coral_cli.config import resolve
    from coral_cli.runs import run_dir
    from coral_cli.tasks.train import train_generator
    from coral_cli.training.events import StepEnd
    from coral_cli.training.state import LoopState
    from tests.tiny_generator import write_recipe

    with built_once(tmp_path_factory, "overfit-generator") as (tmp, built):
        cfg = resolve(write_recipe(tmp))
        run = run_dir(tmp, "overfit")
        if not built:
            losses: list[float] = []
            listener = lambda e: losses.append(e.stats["loss"]) if isinstance(e, StepEnd) else None  # noqa: E731
            state = train_generator(cfg, run.create(cfg, "coral coral train"), [listener])
            (tmp / "outcome.json").write_text(json.dumps({"state": asdict(state), "losses": losses}))
        outcome = json.loads((tmp / "outcome.json").read_text())
    return cfg, run, LoopState(**outcome["state"]), outcome["losses"]


@pytest.fixture(scope="session")
def generator_ckpt(tmp_path_factory):
    """A randomly initialised 1+1-layer generator checkpoint (no training), read-only for tests."""
    import torch

    from coral_cli.config import resolve
    from coral_cli.generator.bart.model import build_generator, save_generator
    from coral_cli.tokenizer import load_tokenizer

    torch.manual_seed(0)
    cfg = resolve(None, {"generator.encoder_layers": 1, "generator.decoder_layers": 1, "generator.d_model": 16,
                         "generator.heads": 2, "generator.ffn_dim": 16, "generator.max_positions": 64})
    tok = load_tokenizer("bundled")
    folder = tmp_path_factory.mktemp("gen") / "ckpt"
    save_generator(build_generator(cfg.generator, tok), tok, folder, cfg.data)
    return folder
