"""The install ships every package: a wheel built from pyproject.toml must contain all modules."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_python_package_is_listed_in_pyproject():
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    roots = {name: REPO / folder for name, folder in setup["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed, f"missing from pyproject: {found - listed}; stale: {listed - found}"
    # plugins/ installs under a project name, never as a generic top-level `plugins` module
    assert not any(p == "plugins" or p.startswith("plugins.") for p in listed)
    assert setup["package-dir"]["coral_plugins"] == "plugins"


def test_entry_points_name_importable_classes():
    import importlib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for group, entries in project["entry-points"].items():
        for name, target in entries.items():
            module, attr = target.split(":")
            assert hasattr(importlib.import_module(module), attr), f"{group}:{name} -> {target}"
