"""The package's shape: every module imports, imports point one way (no cycles, counting imports inside functions),
and no module reaches into another's private names (``_x``)."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import nlp_transfer

PACKAGE = Path(nlp_transfer.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str]]:
    """(module imported, name taken from it) for every package import in ``path``, at any depth of the code."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("nlp_transfer"):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                out.append((submodule, "") if submodule in known else (source, alias.name))
        elif isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names if alias.name.startswith("nlp_transfer")]
    return out


def test_every_module_imports():
    names = [info.name for info in pkgutil.walk_packages(nlp_transfer.__path__, "nlp_transfer.")]
    assert len(names) >= 20
    for name in names:
        importlib.import_module(name)


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: {target for target, _ in imports(name, path, known) if target in known and target != name}
             for name, path in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_module_imports_a_private_name_of_another():
    known = modules()
    offenders = [f"{name} imports {source}.{taken}" for name, path in known.items()
                 for source, taken in imports(name, path, known)
                 if taken.startswith("_") and not taken.startswith("__") and source != name]
    assert offenders == []


def test_only_tasks_and_the_data_layer_branch_on_a_task_name():
    """Everything else asks the task registry (tasks.get_task) what a task does; data/ reads cards by their kind."""
    import re

    pattern = re.compile(r"""\btask\s*(==|!=)\s*["']|["']\s*(==|!=)\s*\w*\.?task\b""")
    offenders = [f"{path.relative_to(PACKAGE)}:{number}" for path in PACKAGE.rglob("*.py")
                 if path.parent.name not in ("tasks", "data")
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []
