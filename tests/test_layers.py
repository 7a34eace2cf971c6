"""Imports point down the layers (data -> rewards -> generator -> generation -> samplers ->
objectives -> training -> tasks -> pipeline -> commands/tui), never back up, and plugins use only
the public API. Inside the generator: decoding -> core -> the backends (bart, pretrained, mirror)
-> loading.py, and no backend imports another. No import circle anywhere in coral_cli.
Read from the source with `ast`, so a lazy import inside a function counts too (docs/architecture.md)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "coral_cli"


GEN = "coral_cli.generator"
BACKENDS = (f"{GEN}.bart", f"{GEN}.pretrained", f"{GEN}.mirror")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in CORE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names); `from pkg import mod` names the submodule."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            out.update(subs or {node.module})
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


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


def test_no_relative_imports_hide_from_these_checks():
    bad = [f"{p.relative_to(REPO)}:{n.lineno}" for p in CORE.rglob("*.py")
           for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))) if isinstance(n, ast.ImportFrom) and n.level]
    assert bad == []


def generator_offenders(packages: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """Imports of coral_cli.generator.* by modules in `packages` that are not under `allowed`."""
    return [f"{name} imports {m}" for name, path in MODULES.items() if under(name, packages)
            for m in sorted(imports(path)) if under(m, (GEN,)) and m != GEN and not under(m, allowed)]


def test_decoding_and_core_import_no_backend():
    assert generator_offenders((f"{GEN}.decoding",), (f"{GEN}.decoding",)) == []
    assert generator_offenders((f"{GEN}.core",), (f"{GEN}.core", f"{GEN}.decoding")) == []


def test_each_backend_imports_only_core_decoding_and_itself():
    for backend in BACKENDS:
        assert generator_offenders((backend,), (backend, f"{GEN}.core", f"{GEN}.decoding")) == []


def test_the_kl_reference_comes_from_core_not_a_backend():
    assert f"{GEN}.core.reference" in imports(CORE / "objectives" / "coral.py")
    assert [f"{n} imports {m}" for n, p in MODULES.items() if under(n, ("coral_cli.objectives",))
            for m in imports(p) if under(m, (f"{GEN}.pretrained", f"{GEN}.bart.model"))] == []


def import_graph() -> dict[str, set[str]]:
    return {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph` (a path that returns to its start), or [] if it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_find_cycle_sees_a_lazy_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_coral_cli_modules():
    assert find_cycle(import_graph()) == []
