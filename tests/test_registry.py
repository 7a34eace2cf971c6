import json

import pytest

from coral_cli.registry import REWARDS, PluginError, Registry


def test_builtin_rewards_come_from_entry_points():
    assert {"bert", "esim", "dmi"} <= set(REWARDS.names())
    info = {i.name: i for i in REWARDS.infos()}
    assert info["esim"].origin.startswith("coral-dialog")
    assert "cross-encoder" in info["bert"].help


def test_unknown_name_lists_known_ones_with_did_you_mean():
    with pytest.raises(PluginError) as exc:
        REWARDS.get("esym")
    assert "unknown reward model 'esym'" in str(exc.value)
    assert "did you mean 'esim'?" in exc.value.hint and "bert, dmi, esim" in exc.value.hint


def test_register_and_duplicates():
    reg: Registry[type] = Registry("thing", "coral.tests.nothing")

    class A:
        """An A."""

    reg.register("a", A)
    assert reg.get("a") is A and reg.infos()[0].help == "An A."
    with pytest.raises(PluginError, match="duplicate thing name 'a'"):
        reg.register("a", A)
    reg.register("a", int, replace=True)
    assert reg.get("a") is int
    with pytest.raises(PluginError, match="duplicate reward model name 'bert'"):
        REWARDS.register("bert", object)


def test_plugins_command(cli):
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["kind"], r["name"]) for r in rows} >= {("reward model", n) for n in ("bert", "esim", "dmi")}
    assert all(r["origin"] and r["help"] for r in rows)


def test_unknown_plugin_on_the_command_line_exits_2(cli, tmp_path):
    result = cli("retriever", "train", "--model", "bart", "--set", f"runtime.runs_dir={tmp_path}")
    assert result.exit_code == 2
    assert "unknown reward model 'bart'" in result.stderr and "bert, dmi, esim" in result.stderr
