"""Imports point down the layers (data -> rewards -> generator -> generation -> samplers ->
objectives -> training -> tasks -> pipeline -> commands/tui), never back up, and plugins use only
the public API. Read from the source with `ast`, so a lazy import inside a function counts too."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "coral_cli"


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def package_imports(package: str) -> dict[str, set[str]]:
    return {str(p.relative_to(REPO)): imports(p) for p in (CORE / package).rglob("*.py")}


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{file} imports {m}" for file, mods in package_imports(package).items() for m in sorted(mods)
            if any(m == f or m.startswith(f + ".") for f in forbidden)]


def test_model_packages_never_import_the_layers_above_them():
    above_generator = ("coral_cli.generation", "coral_cli.objectives", "coral_cli.tasks", "coral_cli.samplers",
                       "coral_cli.pipeline", "coral_cli.commands")
    assert offenders("generator", above_generator) == []
    assert offenders("rewards", ("coral_cli.generator",) + above_generator) == []
    assert offenders("generation", ("coral_cli.objectives", "coral_cli.tasks", "coral_cli.samplers",
                                    "coral_cli.pipeline", "coral_cli.commands")) == []
    assert offenders("objectives", ("coral_cli.tasks", "coral_cli.pipeline", "coral_cli.commands")) == []
    assert offenders("training", ("coral_cli.tasks", "coral_cli.generator", "coral_cli.objectives",
                                  "coral_cli.pipeline", "coral_cli.commands")) == []


def test_the_core_never_imports_the_cli_or_tui_libraries():
    ui = ("typer", "rich", "textual", "click", "coral_cli.commands", "coral_cli.tui")
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in CORE.rglob("*.py")
           if p.parent.name not in ("commands", "tui") and p.name != "__main__.py" for m in sorted(imports(p))
           if any(m == u or m.startswith(u + ".") for u in ui)]
    assert bad == []


def test_pipeline_results_never_import_the_runner():
    assert "coral_cli.pipeline.runner" not in imports(CORE / "pipeline" / "results.py")


def test_plugins_import_only_the_public_api():
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in (REPO / "plugins").rglob("*.py") for m in sorted(imports(p))
           if m.startswith("coral_cli") and m != "coral_cli.api"]
    assert bad == []
