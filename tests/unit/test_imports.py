"""Package boundaries, checked on the source with `ast` (nothing is imported): `checkpoint/` and
`rollout/` share `weights/` and never import each other, `weights/` imports neither, the ColBench
backend environment imports no other environment, and the `env/` modules import no cycle. Every import statement counts: module level, inside functions,
under `if TYPE_CHECKING`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sweet_megatron

ROOT = Path(sweet_megatron.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The modules that module `name` imports anywhere in its file (`from a import b` names a.b
    when a.b is a module of ours, else a; relative imports are resolved)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return out


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_parser_sees_module_and_function_level_imports():
    assert "sweet_megatron.weights.hf_io" in imports_of("sweet_megatron.checkpoint.convert")  # module level
    assert "sweet_megatron.training.trainer" in imports_of("sweet_megatron.cli.train")  # inside run()
    assert "sweet_megatron.training.runner" in imports_of("sweet_megatron.checkpoint.dist_ckpt")  # TYPE_CHECKING


@pytest.mark.parametrize(("package", "forbidden"), [
    ("checkpoint", "rollout"),
    ("rollout", "checkpoint"),
    ("weights", "checkpoint"),
    ("weights", "rollout"),
    ("env.colbench_backend", "env.synthetic"),  # the synthetic family's tasks are backend records, not the reverse
    ("env.colbench_backend", "env.colbench_frontend"),
])
def test_package_does_not_import(package, forbidden):
    package, forbidden = f"sweet_megatron.{package}", f"sweet_megatron.{forbidden}"
    offenders = [f"{MODULES[name].relative_to(ROOT.parent)} imports {imp}"
                 for name in MODULES if _within(name, package)
                 for imp in sorted(imports_of(name)) if _within(imp, forbidden)]
    assert not offenders, (f"{package} must not import {forbidden} (shared code goes to sweet_megatron.weights, "
                           "or env/base.py for environments):\n" + "\n".join(offenders))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"a"}}) == ["a", "a"]


def test_env_modules_import_no_cycle():
    env = [name for name in MODULES if _within(name, "sweet_megatron.env")]
    graph = {name: {imp for imp in imports_of(name) if imp in env and imp != name} for name in env}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle among the env modules: " + " -> ".join(cycle)
