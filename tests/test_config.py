import sys

import pytest

from coral_cli.config import CoralConfig, dump_toml, parse_assignment, resolve, to_dict
from coral_cli.errors import ConfigError
from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_defaults_without_recipe():
    cfg = resolve()
    assert cfg.data.dataset == "dailydialog"
    assert cfg.data.min_context_turns == {"train": 1, "validation": 1, "test": 2}
    assert cfg.runtime.device == "auto"


def test_recipe_overrides_defaults_and_flags_override_recipe(tmp_path):
    recipe = write(tmp_path, "[data]\nmax_context_tokens = 64\nmax_pairs = 10\n[runtime]\nseed = 3\n")
    cfg = resolve(recipe, {"data.max_pairs": 20})
    assert cfg.data.max_context_tokens == 64  # recipe beats default
    assert cfg.data.max_pairs == 20  # flag beats recipe
    assert cfg.runtime.seed == 3
    assert resolve(recipe, {"data.max_pairs": None}).data.max_pairs == 10  # unset flag: no override


def test_a_partial_table_keeps_its_sections_own_defaults(tmp_path):
    """[retriever.train] with only lr keeps the retriever's defaults (not the generator's) for the rest."""
    full = resolve()
    recipe = write(tmp_path, "[retriever.train]\nlr = 3e-5\n[train]\nlr = 2e-4\n[data.min_context_turns]\ntest = 3\n")
    cfg = resolve(recipe)
    assert cfg.retriever.train.lr == 3e-5 and cfg.train.lr == 2e-4
    assert cfg.retriever.train.patience == full.retriever.train.patience == 2
    assert cfg.retriever.train.warmup_steps == full.retriever.train.warmup_steps == 200
    assert cfg.train.patience == full.train.patience == 5
    assert cfg.data.min_context_turns == {"train": 1, "validation": 1, "test": 3}


def test_all_problems_reported_at_once_with_hints(tmp_path):
    recipe = write(tmp_path, '[data]\nmax_pair = 3\nmax_context_tokens = 0\n[runtime]\nseed = "x"\n[bogus]\na = 1\n')
    with pytest.raises(ConfigError) as exc:
        resolve(recipe)
    msg = str(exc.value)
    assert "4 problems" in msg
    assert "unknown key 'data.max_pair' (did you mean 'max_pairs'?)" in msg
    assert "'data.max_context_tokens' = 0 is out of range" in msg
    assert "'runtime.seed' must be int" in msg
    assert "unknown key 'bogus'" in msg
    assert str(recipe) in msg


def test_split_rule_validated():
    with pytest.raises(ConfigError, match="unknown split"):
        resolve(None, {"data.min_context_turns": {"train": 1, "dev": 1}})
    with pytest.raises(ConfigError, match="must be >= 1"):
        resolve(None, {"data.min_context_turns": {"test": 0}})


def test_int_is_accepted_for_float_but_bool_is_not_int():
    with pytest.raises(ConfigError, match="must be int"):
        resolve(None, {"data.max_pairs": True})


def test_parse_assignment_reads_toml_literals():
    assert parse_assignment("data.max_pairs=100") == ("data.max_pairs", 100)
    assert parse_assignment("data.dataset=ubuntu") == ("data.dataset", "ubuntu")
    assert parse_assignment('data.min_context_turns={test=3}') == ("data.min_context_turns", {"test": 3})
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_assignment("oops")


def test_dump_round_trips_and_carries_help():
    cfg = resolve(None, {"data.max_pairs": 7, "data.data_dir": 'C:\\path "q"'})
    text = dump_toml(cfg, "header line")
    assert text.startswith("# header line")
    assert "# use only the first N pairs of each split (0 = all)" in text
    assert resolve(None, _flatten(tomllib.loads(text))) == cfg
    assert to_dict(cfg)["data"]["max_pairs"] == 7


def test_missing_recipe_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found"):
        resolve(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        resolve(write(tmp_path, "[data\n"))


def test_config_show_cli_precedence(cli, tmp_path):
    recipe = write(tmp_path, "[data]\nmax_pairs = 10\nmax_context_tokens = 64\n")
    result = cli("config", "show", "--recipe", str(recipe), "--max-pairs", "7")
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    assert shown["data"]["max_pairs"] == 7
    assert shown["data"]["max_context_tokens"] == 64
    assert isinstance(resolve(None, _flatten(shown)), CoralConfig)


def test_config_show_cli_error_is_exit_2_without_traceback(cli):
    result = cli("config", "show", "--set", "data.max_context_tokens=-5")
    assert result.exit_code == 2
    assert "out of range" in result.stderr
    assert "Traceback" not in result.output


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and key in ("data", "tokenizer", "runtime"):
            out.update(_flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").rglob("*.toml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_resolves_and_says_what_it_reproduces(recipe):
    if "[table]" in recipe.read_text():  # a table recipe: every stage's config resolves
        from coral_cli.pipeline.runner import stage_config
        from coral_cli.pipeline.spec import read_table

        spec = read_table(recipe)
        assert all(isinstance(stage_config(spec, s), CoralConfig) for s in spec.stages)
    else:
        assert isinstance(resolve(recipe), CoralConfig)
    lines = recipe.read_text().splitlines()
    head = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]  # the leading comment
    assert head[0].startswith("# ") and any("coral " in line or "bash " in line for line in head), head
