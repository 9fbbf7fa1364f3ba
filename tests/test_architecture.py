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


def test_only_tasks_branch_on_a_task_name_or_a_problem_type():
    """Everything else asks `tasks.get_task`, `tasks.problems.problem_type` and `tasks.problems.data_kind` what a
    task, a problem type or a card's kind of data means, instead of comparing their names."""
    import re

    names = r"(sequence-classification|token-classification|masked-lm|text|single_label|multi_label|regression)"
    patterns = [
        re.compile(rf"""(==|!=)\s*["']{names}["']"""),  # x == "multi_label"
        re.compile(rf"""["']{names}["']\s*(==|!=)"""),  # "multi_label" == x
        re.compile(rf"""\bin\s*[(\[{{]\s*["']{names}["']"""),  # x in ("single_label", ...)
        re.compile(r"""\b(task|problem_type)\b\S*\s*(==|!=)"""),  # card.task == ..., problem_type != ...
    ]
    offenders = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}" for path in PACKAGE.rglob("*.py")
                 if path.parent.name != "tasks"
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if any(pattern.search(line) for pattern in patterns)]
    assert offenders == []


# The layers of the package, bottom first (README, "How it works"): a module imports only from its own layer or
# below, counting imports inside functions. Subpackages are named by their prefix; a module not listed fails the test.
LAYERS = (
    ("foundation", ("errors", "version", "io", "checks", "runtime", "sidecar", "record", "jobs", "rundir", "plots",
                    "data.files", "data.windows", "static.words", "static.matrix", "static.vectors")),
    ("knowledge", ("tasks", "encoders", "linear", "models", "model_parts", "calibration", "layer_rates", "strategies", "contrastive", "strategy_configs",
                   "config", "data", "static.settings", "static.models", "reports", "static")),
    ("predictors", ("predictors", "static.predictors")),
    ("training", ("probe", "static.baselines")),
    ("backends", ("backends",)),
    ("runs", ("inference", "evaluation", "outputs", "training", "seeds", "bulk", "distillation")),
    ("analysis and export", ("analysis", "export")),
    ("interface", ("cli", "__main__", "")),
)


def layer_of(module: str) -> int:
    """The layer of ``nlp_transfer.x.y``: its longest listed prefix decides (``static.baselines`` before ``static``)."""
    short = module.removeprefix("nlp_transfer").removeprefix(".")
    best = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if short == name or (name and short.startswith(name + ".")):
                if best is None or len(name) > len(best[1]):
                    best = (index, name)
    assert best is not None, f"{module} is in no layer of tests/test_architecture.py LAYERS"
    return best[0]


def test_imports_point_down_the_layers():
    known = modules()
    upward = []
    for name, path in known.items():
        for target, _ in imports(name, path, known):
            if target in known and target != name and layer_of(target) > layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_functions_are_short_and_private_helpers_take_few_parameters():
    """No function over 80 lines; no private helper with more than 8 parameters (public entry points may take more
    keyword options)."""
    long, wide = [], []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = node.end_lineno - node.lineno + 1
            args = node.args
            count = (len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + bool(args.vararg)
                     + bool(args.kwarg) - (1 if args.args and args.args[0].arg in ("self", "cls") else 0))
            if lines > 80:
                long.append(f"{name}.{node.name}: {lines} lines")
            if node.name.startswith("_") and not node.name.startswith("__") and count > 8:
                wide.append(f"{name}.{node.name}: {count} parameters")
    assert long == [] and wide == []


def test_load_model_dispatches_on_the_sidecar_backend_only():
    """One dispatch: load_model asks the sidecar which backend wrote a folder; no loader guesses from file names."""
    import inspect

    from nlp_transfer.inference import load_model

    source = inspect.getsource(load_model)
    assert "get_backend(sidecar[\"backend\"]" in source
    for name in ("static.json", "is_file()", "feature-extraction"):
        assert name not in source
    from nlp_transfer.backends import BACKENDS

    assert set(BACKENDS) == {"trainer", "probe", "static", "onnx"}
