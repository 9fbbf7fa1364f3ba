"""Hyperparameter search on Optuna (``nlp-transfer tune``, `tune`; the README documents its options).

Each trial samples a search space (`DEFAULT_SPACES` per strategy, or a checked ``--space`` file), applies the values
to the recipe as ``key=value`` overrides and trains it with `nlp_transfer.training.train` into ``OUT/trial-NNN/``;
the objective is the main metric on the evaluation split (or on held-out training rows with ``holdout``), and on the
Trainer backend each evaluation goes to the pruner. The study lives in ``OUT/study.db`` (SQLite), so a killed search
resumes where it stopped: a trial left running is run again with the same values from its newest checkpoint, and a
different recipe, space, ``rows`` or ``holdout`` for the same OUT is refused. After every trial OUT gets
``trials.jsonl``, ``trials.md``, ``tune.json`` and ``best.yaml`` (``nlp-transfer train OUT/best.yaml`` takes it as it
is); ``trials.png`` at the end, and ``OUT/best/`` with ``confirm``. The search runs in one process (WORLD_SIZE > 1 is
refused). optuna, torch and transformers are imported when a search starts.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..config import Recipe, load_recipe, recipe_card, resolve_path
from ..errors import NLPTransferError, did_you_mean
from ..io import atomic_open, check_folder_target, remove_tree, write_json_atomic, write_jsonl_atomic, write_text_atomic
from ..runtime import world_size

STUDY = "study.db"
STUDY_NAME = "nlp-transfer-tune"
TRIALS_JSONL = "trials.jsonl"
TRIALS_MD = "trials.md"
PLOT = "trials.png"
BEST = "best.yaml"
SUMMARY = "tune.json"
DATA = "data"  # the derived card of holdout
BEST_RUN = "best"  # confirm trains best.yaml here
LOCK = ".tune.lock"
SCHEMA = 1
KEEP_WEIGHTS = ("best", "all")  # whose weights the trial folders keep
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.onnx", "*.npy")  # model, adapter, probe and cached-feature files
INSTALL = "nlp-transfer tune needs optuna: pip install 'nlp_transfer[tune]'"

SPACE_TYPES = ("float", "int", "categorical")
SPACE_FIELDS = ("type", "low", "high", "log", "step", "choices")
SPACE_EXAMPLE = "training.learning_rate: {type: float, low: 1.0e-5, high: 2.0e-4, log: true}"
# keys the search sets itself, or the data it selects on: never sampled
RESERVED = ("output_dir", "resume", "overwrite", "seeds", "data", "train_split", "eval_split", "test_split",
            "eval_sets", "eval_rows", "train_rows", "train_rows_per_class", "train_rows_stratified")

_EPOCHS = {"type": "int", "low": 1, "high": 3}
_BATCH = {"type": "categorical", "choices": [16, 32]}
_WARMUP = {"type": "float", "low": 0.0, "high": 0.1}  # warmup_steps below 1: a fraction of the optimizer steps
_TRAINER = {
    "training.learning_rate": {"type": "float", "low": 1e-5, "high": 2e-4, "log": True},
    "training.per_device_train_batch_size": _BATCH,
    "training.num_train_epochs": _EPOCHS,
    "training.warmup_steps": _WARMUP,
    "training.weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
}
# The search space of each strategy when no --space is given. "feature-extraction" is the scikit-learn probe: it
# chooses its regularisation C on validation itself and has no Trainer settings, so its space is the features';
# "feature-extraction/head" is the frozen encoder with the head trained in Trainer (probe: head).
DEFAULT_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {**_TRAINER, "strategy.lr_decay": {"type": "float", "low": 0.7, "high": 1.0}},
    "last-n": dict(_TRAINER),
    "gradual": dict(_TRAINER),
    "lora": {"training.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
             "training.per_device_train_batch_size": _BATCH, "training.num_train_epochs": _EPOCHS,
             "training.warmup_steps": _WARMUP, "strategy.r": {"type": "categorical", "choices": [4, 8, 16]}},
    "feature-extraction": {"strategy.pooling": {"type": "categorical", "choices": ["mean", "cls", "max"]},
                           "strategy.normalize": {"type": "categorical", "choices": [False, True]}},
    "feature-extraction/head": {"training.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                "training.per_device_train_batch_size": _BATCH, "training.num_train_epochs": _EPOCHS},
    "contrastive": {"strategy.learning_rate": {"type": "float", "low": 2e-5, "high": 2e-4, "log": True},
                    "strategy.iterations": {"type": "categorical", "choices": [10, 20, 40]},
                    "strategy.epochs": {"type": "int", "low": 1, "high": 2}},
}


@dataclass
class TuneResult:
    """What a search left in ``output``: ``best`` is {number, value, params, folder} of the best complete trial
    (None when none completed), ``best_recipe`` the path of best.yaml, ``summary`` tune.json's contents."""

    output: Path
    best: dict[str, Any] | None
    best_recipe: Path | None
    summary: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)  # trials.jsonl's rows
    study: Any = None  # the optuna Study


# ------------------------------------------------------------------------------------------------ search spaces

def default_space(recipe: Recipe) -> tuple[dict[str, dict[str, Any]], str]:
    """The default search space of the recipe's strategy and where it comes from (for messages)."""
    if recipe.backend == "static":
        raise NLPTransferError(f"{recipe.source or 'recipe'}: static baselines have no default search space; give "
                               f"--space FILE with static.* keys (e.g. static.epochs: {{type: int, low: 2, high: 8}})")
    name = recipe.strategy.name
    key = f"{name}/head" if name == "feature-extraction" and recipe.backend == "trainer" else name
    if key not in DEFAULT_SPACES:
        raise NLPTransferError(f"{recipe.source or 'recipe'}: strategy {name} has no default search space; give "
                               f"--space FILE, e.g. {SPACE_EXAMPLE}")
    source = f"the default search space of strategy {key}"
    space = {k: dict(v) for k, v in DEFAULT_SPACES[key].items()}
    if "strategy.group_lrs" in recipe.given:  # lr_decay and group_lrs exclude each other
        space.pop("strategy.lr_decay", None)
    return check_space(space, source), source  # the full form a --space file gets (log: false where unsaid, ...)


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """A ``--space`` YAML file as a checked space (`check_space`); one-line errors naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise NLPTransferError(f"--space {path}: file not found; give a YAML file of recipe keys, e.g. {SPACE_EXAMPLE}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f": line {mark.line + 1}" if mark else ""
        raise NLPTransferError(f"{path}{line}: {getattr(exc, 'problem', None) or 'invalid YAML'}; fix the YAML "
                               f"syntax") from None
    except UnicodeDecodeError:
        raise NLPTransferError(f"{path}: not valid UTF-8; re-save the search space as UTF-8") from None
    return check_space(values, str(path))


def check_space(values: Any, source: str) -> dict[str, dict[str, Any]]:
    """A search space in its full form ``{key: {type, low, high, log, step, choices}}``, each entry checked: a known
    type, numbers in order, ``log`` only above 0, choices of plain values (a list alone is a categorical)."""
    if not isinstance(values, dict) or not values:
        raise NLPTransferError(f"{source}: a search space maps recipe keys to ranges or choices, e.g. {SPACE_EXAMPLE}")
    space = {}
    for key, spec in values.items():
        if not isinstance(key, str) or not key.strip() or " " in key.strip():
            raise NLPTransferError(f"{source}: {key!r} is not a recipe key; use dotted keys, e.g. {SPACE_EXAMPLE}")
        key = key.strip()
        where = f"{source}: {key}"
        if key.split(".")[0] in RESERVED:
            raise NLPTransferError(f"{where}: '{key.split('.')[0]}' is set by tune itself or is the data it selects "
                                   f"on; remove it from the search space")
        if isinstance(spec, list):
            spec = {"type": "categorical", "choices": spec}
        if not isinstance(spec, dict):
            raise NLPTransferError(f"{where}: give {{type: float|int|categorical, low, high, log, choices}}, e.g. "
                                   f"{SPACE_EXAMPLE}")
        if not {"type", "low", "high", "choices"} & set(spec):  # training: {learning_rate: {...}} nested
            raise NLPTransferError(f"{where}: no type, low/high or choices; write one dotted key per value "
                                   f"({key}.NAME: {{type: ...}}), e.g. {SPACE_EXAMPLE}")
        unknown = [name for name in spec if name not in SPACE_FIELDS]
        if unknown:
            raise NLPTransferError(f"{where}: unknown field '{unknown[0]}'{did_you_mean(str(unknown[0]), SPACE_FIELDS)} "
                                   f"(fields: {', '.join(SPACE_FIELDS)})")
        kind = spec.get("type", "categorical" if "choices" in spec else None)
        if kind not in SPACE_TYPES:
            shown = f"'{kind}'{did_you_mean(str(kind), SPACE_TYPES)}" if kind is not None else "missing"
            raise NLPTransferError(f"{where}: type {shown}; give type: float, int or categorical")
        space[key] = _checked_choices(spec, where) if kind == "categorical" else _checked_range(spec, kind, where)
    return space


def _checked_choices(spec: dict, where: str) -> dict[str, Any]:
    extra = [name for name in ("low", "high", "log", "step") if name in spec]
    if extra:
        raise NLPTransferError(f"{where}: a categorical takes choices only, not {extra[0]}; e.g. {{type: categorical, "
                               f"choices: [16, 32]}}")
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise NLPTransferError(f"{where}: choices must be a non-empty list, e.g. choices: [16, 32]")
    for choice in choices:
        if not (choice is None or isinstance(choice, (bool, int, float, str))):
            raise NLPTransferError(f"{where}: choice {choice!r} is not a plain value (number, string, true/false, "
                                   f"null)")
        if sum(1 for other in choices if other == choice and type(other) is type(choice)) > 1:
            raise NLPTransferError(f"{where}: choice {choice!r} is listed twice; list each once")
    return {"type": "categorical", "choices": list(choices)}


def _checked_range(spec: dict, kind: str, where: str) -> dict[str, Any]:
    if "choices" in spec:
        raise NLPTransferError(f"{where}: choices belong to type categorical; a {kind} takes low and high")
    number = int if kind == "int" else (int, float)
    for name in ("low", "high"):
        value = spec.get(name)
        if isinstance(value, bool) or not isinstance(value, number):
            shown = "missing" if value is None else f"{value!r}"
            raise NLPTransferError(f"{where}: {name} {shown}: {'an' if kind == 'int' else 'a'} {kind} range needs {'integer ' if kind == 'int' else ''}"
                                   f"numbers low and high, e.g. {{type: {kind}, low: 1, high: 3}}")
    low, high = spec["low"], spec["high"]
    if not low < high:
        raise NLPTransferError(f"{where}: low {low} is not below high {high}; a single value is no search: set it "
                               f"in the recipe instead")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise NLPTransferError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise NLPTransferError(f"{where}: log: true needs low > 0 (got {low}); raise low or drop log")
    out = {"type": kind, "low": low if kind == "int" else float(low), "high": high if kind == "int" else float(high),
           "log": log}
    if spec.get("step") is not None:
        step = spec["step"]
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            raise NLPTransferError(f"{where}: step must be a positive {'integer' if kind == 'int' else 'number'}, got "
                                   f"{step!r}")
        if log:
            raise NLPTransferError(f"{where}: step and log: true exclude each other; keep one")
        out["step"] = step
    return out


def override(key: str, value: Any) -> str:
    """One ``key=value`` override as the command line writes it (JSON reads back as the same YAML value)."""
    return f"{key}={json.dumps(value)}"


def fit_space(space: dict[str, dict[str, Any]], base: Recipe, source: str) -> None:
    """Every key of ``space`` at its bounds and choices makes a valid recipe: unknown keys (with did-you-mean),
    types, ranges and options the strategy lacks are reported here, before anything trains."""
    for key, spec in space.items():
        probes = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        for value in probes:
            try:
                load_recipe(base, [override(key, value)])
            except NLPTransferError as exc:
                raise NLPTransferError(f"{source}: {key} = {value!r} does not fit the recipe ({exc})") from None


def suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    """Sample ``key`` in a trial from its space entry."""
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1), log=spec["log"])
    return trial.suggest_float(key, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"])


# ------------------------------------------------------------------------------------------------ the data

def main_metric(recipe: Recipe, card) -> str:
    """The metric a recipe's metrics.json selects by (``main_metric``), from its task and the card's problem type."""
    from ..tasks import get_task
    from ..tasks.problems import chosen_problem_type

    problem_type = chosen_problem_type(recipe.problem_type, card.problem_type)
    return get_task(recipe.task).implementation().main_metric(problem_type)


def write_holdout(base: Recipe, fraction: float, seed: int, folder: Path) -> tuple[Path, dict[str, int]]:
    """The derived card of ``holdout``: the training split less a seeded ``fraction`` (stratified on single-label
    data) as ``train``, the held-out rows as ``validation``, the card's evaluation split as ``test`` (when the card
    has one), all JSONL in ``folder`` with the card's labels, languages and groups. Returns the card's path and the
    rows per split. Rewriting it later gives the same files; different ones (the data changed) are an error."""
    import numpy as np

    from ..data.conll import label_list
    from ..data.labels import infer_label_names
    from ..data.readers import read_labelled
    from ..tasks.problems import chosen_problem_type, problem_type as get_problem_type
    from ..training import stratified_choice

    card = recipe_card(base)
    if base.train_split not in card.splits:
        raise NLPTransferError(f"{card.source}: no '{base.train_split}' split{did_you_mean(base.train_split, card.splits)}")
    labelled = read_labelled(card, base.train_split)
    rows = labelled.rows
    if len(rows) < 2:
        raise NLPTransferError(f"--holdout {fraction}: the training split has {len(rows)} row; nothing to hold out")
    words = "tokens" in rows[0]
    problem = get_problem_type(chosen_problem_type(base.problem_type, card.problem_type))
    count = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    rng = np.random.default_rng(seed)
    if not words and problem.exclusive:
        held = stratified_choice([str(row["label"]) for row in rows], count, rng)
    else:
        held = np.sort(rng.choice(len(rows), count, replace=False))
    held = set(int(i) for i in held)
    parts = {"train": [row for i, row in enumerate(rows) if i not in held],
             "validation": [row for i, row in enumerate(rows) if i in held]}
    if base.eval_split in card.splits:
        parts["test"] = read_labelled(card, base.eval_split).rows
    columns = [group.name for group in card.groups or () if group.column]
    if words:
        names = list(card.labels) if card.labels else label_list(rows)
        front = {"task": card.task, "text": "tokens", "label": "tags", "scheme": "IOB2"}
    else:
        names = (None if not problem.labelled else
                 list(card.labels or labelled.declared or infer_label_names(rows, card)))
        front = {"task": card.task, "text": ["text", "text_pair"] if "text_pair" in rows[0] else ["text"],
                 "label": "label", "problem_type": card.problem_type, "label_separator": card.label_separator,
                 "allow_empty_labels": card.allow_empty_labels}
    if names is not None:
        front["labels"] = [str(name) for name in names]

    def record(row: dict) -> dict:
        keys = ("tokens", "tags") if words else ("text", "text_pair", "label")
        out = {key: row[key] for key in keys if key in row}
        out.update({name: row["groups"][name] for name in columns if name in row.get("groups", {})})
        if "language" in row:
            out["language"] = row["language"]
        return out

    languages = any("language" in row for rows_ in parts.values() for row in rows_)
    front = {"name": f"{card.name}-holdout", **front, "format": "jsonl",
             "splits": {name: f"{name}.jsonl" for name in parts},
             **({"language_column": "language"} if languages else {}),
             **({"language": card.language} if card.language else {}),
             **({"groups": [g.name if g.column else {"name": g.name, "words": list(g.words)} for g in card.groups]}
                if card.groups else {}),
             **({"license": card.license} if card.license else {})}
    test = f"; test: the card's '{base.eval_split}' split, unchanged" if "test" in parts else ""
    body = (f"# {card.name}, training split held out by nlp-transfer tune\n\nDerived from {card.source} by "
            f"`nlp-transfer tune --holdout {fraction}` (seed {seed}): train: the '{base.train_split}' split less "
            f"{count} seeded rows{' (label shares kept)' if not words and problem.exclusive else ''}; "
            f"validation: those rows (the search selects on them){test}.\n\n{card.description}".rstrip() + "\n")
    files = {f"{name}.jsonl": "".join(json.dumps(record(row), ensure_ascii=False) + "\n" for row in part)
             for name, part in parts.items()}
    path = folder / "card.md"
    files[path.name] = "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n" + body
    for name, text in files.items():
        target = folder / name
        if target.is_file() and target.read_text(encoding="utf-8") != text:
            raise NLPTransferError(f"{target}: differs from what --holdout {fraction} --seed {seed} derives from "
                                   f"{card.source} now (did the data change?); start the search in another --out")
    for name, text in files.items():
        if not (folder / name).is_file():
            write_text_atomic(folder / name, text)
    return path, {name: len(part) for name, part in parts.items()}


# ------------------------------------------------------------------------------------------------ the search

def pruning_callback(trial, metric: str, derive=None):
    """A `transformers.TrainerCallback` reporting each evaluation's ``metric`` during training to ``trial`` (step:
    the number of evaluations so far, counting a resumed run's earlier ones) and raising `optuna.TrialPruned` when
    the pruner says so. ``derive``: the task's `derived_metrics` (masked-LM's perplexity from the loss), applied to
    Trainer's scores first. Evaluations before and after training (masked-LM's baseline, the final score) are not
    reported."""
    import optuna
    from transformers import TrainerCallback

    class ReportToOptuna(TrainerCallback):
        training = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.training = True

        def on_train_end(self, args, state, control, **kwargs):
            self.training = False

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            scores = {key.removeprefix("eval_"): value for key, value in (metrics or {}).items()}
            value = {**scores, **(derive(scores) if derive else {})}.get(metric)
            if not self.training or not isinstance(value, (int, float)) or not math.isfinite(value):
                return
            step = sum(1 for entry in state.log_history if any(key.startswith("eval_") for key in entry))
            trial.report(float(value), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at evaluation {step} ({metric} {value:.4f})")

    return ReportToOptuna()


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise NLPTransferError(INSTALL) from None
    return optuna


def make_pruner(pruner: Any):
    """True: the median pruner (after 3 trials, from the first evaluation on); False or None: none; an
    `optuna.pruners.BasePruner`: that one."""
    optuna = _import_optuna()
    if pruner is True:
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if pruner is False or pruner is None:
        return optuna.pruners.NopPruner()
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    raise NLPTransferError(f"pruner {pruner!r}: give true, false or an optuna pruner")


@contextmanager
def _locked(out: Path):
    """Hold ``OUT/.tune.lock`` (an advisory lock the system drops when the process dies, even by SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, one search per folder is then the user's to keep
        yield
        return
    handle = open(out / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise NLPTransferError(f"{out}: another nlp-transfer tune is running in this folder; wait for it to finish "
                                   f"or use another --out") from None
        yield
    finally:
        handle.close()  # closing releases the lock


def _first_difference(old: Any, new: Any, path: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if old == new else f"{path or 'value'}: {json.dumps(old)} then, {json.dumps(new)} now"


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _folder_name(number: int) -> str:
    return f"trial-{number:03d}"


@dataclass(frozen=True)
class SearchPlan:
    """What `tune` was given and resolved, shared by the steps of the search: the recipe (``base``), the output
    folder, the trial count, the checked space and where it comes from, rows, holdout, seed, pruner, confirm,
    keep_weights, the main metric and its direction, and the study's description (refused when it changes). The data
    fields are set once the study is open: ``common`` (the overrides every trial takes), ``final`` (what best.yaml
    takes of the search's data) and ``holdout_info`` (tune.json's ``holdout``)."""

    base: Recipe
    out: Path
    trials: int
    space: dict[str, dict[str, Any]]
    space_source: str
    rows: int | None
    holdout: float | None
    seed: int
    pruner: Any
    confirm: bool
    keep_weights: str
    metric: str
    higher: bool
    description: dict[str, Any]
    common: tuple[str, ...] = ()
    final: tuple[str, ...] = ()
    holdout_info: dict[str, Any] | None = None


def tune(recipe: Recipe | str | Path | dict, trials: int, space: str | Path | dict | None = None,
         rows: int | None = None, holdout: float | None = None, out: str | Path | None = None,
         overrides: list[str] | tuple[str, ...] = (), seed: int = 0, pruner: Any = True,
         confirm: bool = False, keep_weights: str = "best") -> TuneResult:
    """Search ``recipe``'s hyperparameters until the study in ``out`` (default: the recipe's output_dir + "-tune")
    holds ``trials`` finished (complete or pruned) trials; write the outputs; with ``confirm`` train best.yaml into
    ``OUT/best/``. ``space``: a YAML file, a space dict, or None for the strategy's default (`DEFAULT_SPACES`).
    ``rows``: search on that many training rows. ``holdout``: the search's validation is that fraction of the
    training split. ``seed``: the sampler's (and the holdout's). ``pruner``: True (median), False, or an optuna
    pruner. ``keep_weights``: "best" (the default) removes the weights of every complete trial but the best one as
    the search goes (their metrics, predictions and recipe stay), "all" keeps them. Everything is checked before
    anything trains; errors are one line (`NLPTransferError`)."""
    _check_options(trials, rows, seed, holdout, keep_weights)
    optuna = _import_optuna()
    base = load_recipe(recipe, list(overrides))
    if base.seeds is not None:
        raise NLPTransferError(f"{base.source or 'recipe'}: tune trains one seed per trial; remove seeds (or add "
                               f"seeds=null), the recipe's seed is used")
    out = _output_folder(base, out)
    space_dict, space_source = _resolve_space(space, base)
    card = recipe_card(base)
    metric = main_metric(base, card)
    from ..tasks.base import greater_is_better

    higher = greater_is_better(metric)
    _check_selection(base, card, holdout)
    description = _normalised({"recipe": base.to_dict(), "space": space_dict, "rows": rows,
                               "holdout": {"fraction": holdout, "seed": seed} if holdout is not None else None,
                               "main_metric": metric})
    if not (out / STUDY).is_file() and out.is_dir() and any(out.glob("trial-*")):
        raise NLPTransferError(f"--out {out}: holds trial folders but no {STUDY} (removed?); remove the trial-* "
                               f"folders or use another --out")
    plan = SearchPlan(base, out, trials, space_dict, space_source, rows, holdout, seed, pruner, confirm, keep_weights,
                      metric, higher, description)
    out.mkdir(parents=True, exist_ok=True)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial; a failed trial's error is ours
    try:
        with _locked(out):
            return _search(optuna, plan)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _check_options(trials: Any, rows: Any, seed: Any, holdout: Any, keep_weights: Any) -> None:
    """The plain options of `tune`, checked before the recipe is read (and refused under several ranks)."""
    if world_size() > 1:
        raise NLPTransferError(f"nlp-transfer tune runs its trials one after another in one process (WORLD_SIZE is "
                               f"{world_size()}); start it with nlp-transfer tune, not under accelerate launch / "
                               f"torchrun")
    for name, value, low in (("--trials", trials, 1), ("--rows", rows, 1), ("--seed", seed, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise NLPTransferError(f"{name} {value!r}: give an integer >= {low}")
    if keep_weights not in KEEP_WEIGHTS:
        raise NLPTransferError(f"--keep-weights {keep_weights!r}: choose {' or '.join(KEEP_WEIGHTS)}"
                               f"{did_you_mean(keep_weights, KEEP_WEIGHTS)}")
    if holdout is not None and (isinstance(holdout, bool) or not isinstance(holdout, (int, float))
                                or not 0 < holdout < 1):
        raise NLPTransferError(f"--holdout {holdout!r}: give the fraction of the training split to hold out, between 0 "
                               f"and 1, e.g. --holdout 0.1")


def _output_folder(base: Recipe, out: str | Path | None) -> Path:
    """The search's folder: ``out``, or the recipe's output_dir + "-tune"; never a single run's folder."""
    out = Path(out) if out is not None else Path(f"{base.output_dir}-tune")
    check_folder_target(out, "--out")
    from ..rundir import is_run_folder

    if out.is_dir() and is_run_folder(out):
        raise NLPTransferError(f"--out {out}: holds a single run; choose another folder for the search")
    return out


def _resolve_space(space: str | Path | dict | None, base: Recipe) -> tuple[dict[str, dict[str, Any]], str]:
    """The checked search space and where it comes from: a file, a dict, or the strategy's default; each key is
    tried against the recipe (`fit_space`)."""
    if isinstance(space, (str, Path)):
        space_dict, space_source = load_space(space), str(space)
    elif isinstance(space, dict):
        space_dict, space_source = check_space(space, "search space"), "the given search space"
    else:
        space_dict, space_source = default_space(base)
    fit_space(space_dict, base, space_source)
    return space_dict, space_source


def _check_selection(base: Recipe, card, holdout: float | None) -> None:
    """The split the search selects on exists: the card's evaluation split, or ``holdout`` where the task keeps a
    test split apart and the recipe has none yet."""
    from ..tasks import get_task

    if holdout is not None:
        if not get_task(base.task).scored_sets:
            raise NLPTransferError(f"--holdout: {get_task(base.task)} has no test split to keep apart (its held-out "
                                   f"score is on eval_split); leave --holdout out")
        if base.test_split:
            raise NLPTransferError(f"--holdout: {base.source or 'recipe'} already has a test split (test_split: "
                                   f"{base.test_split}); the search selects on '{base.eval_split}' and never sees "
                                   f"it: leave --holdout out")
    elif base.eval_split not in card.splits:
        raise NLPTransferError(f"{card.source}: no '{base.eval_split}' split for the search to select on; add one to "
                               f"the card, set eval_split, or hold out part of the training split (--holdout 0.1)")


def _search(optuna, plan: SearchPlan) -> TuneResult:
    """Open (or resume) the study in OUT, train the missing trials, write the outputs, confirm the best."""
    from optuna.trial import TrialState

    from ..training import train  # torch and transformers load before the study is opened

    study = _open_study(optuna, plan)
    plan = _with_search_data(plan)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    remaining = plan.trials - len(study.get_trials(deepcopy=False, states=finished))
    _retry_stale(study, remaining, TrialState)
    study.sampler = optuna.samplers.TPESampler(seed=plan.seed + len(study.trials))  # a restart samples afresh
    if remaining > 0:
        _train_trials(optuna, study, plan, remaining, _objective(optuna, plan, train))
    else:
        print(f"nlp-transfer: tune: {plan.out / STUDY} already holds {plan.trials - remaining} finished trials "
              f"(--trials {plan.trials}); give a larger --trials to search more", flush=True)
    summary, best, rows_out = _write_outputs(study, plan)
    _write_plot(rows_out, plan.metric, plan.higher, plan.out / PLOT)
    if plan.confirm and best is not None:
        summary["confirm"] = _confirm(plan.out, plan.metric)
        write_json_atomic(plan.out / SUMMARY, summary)
    return TuneResult(plan.out, best, plan.out / BEST if best is not None else None, summary, rows_out, study)


def _open_study(optuna, plan: SearchPlan):
    """The study in ``OUT/study.db``, created or loaded; one started with another recipe or options is refused."""
    study = optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{(plan.out / STUDY).resolve()}",
                                load_if_exists=True, direction="maximize" if plan.higher else "minimize",
                                pruner=make_pruner(plan.pruner))
    saved, description = study.user_attrs.get("nlp_transfer"), plan.description
    if saved is None:
        study.set_user_attr("nlp_transfer", description)
    elif saved != description:
        what = {"recipe": "recipe or overrides", "space": "search space", "rows": "--rows",
                "holdout": "--holdout / --seed", "main_metric": "main metric"}
        key = next((k for k in what if saved.get(k) != description.get(k)), "recipe")
        raise NLPTransferError(f"{plan.out / STUDY}: this search was started with another {what[key]} "
                               f"({_first_difference(saved.get(key), description.get(key), key)}); resume it with the "
                               f"same recipe and options, or start a new search in another --out")
    return study


def _with_search_data(plan: SearchPlan) -> SearchPlan:
    """``plan`` with the overrides of the search's data: every trial's (``common``: no test split or eval sets,
    resumed; the holdout card's splits; ``rows``), best.yaml's (``final``) and the holdout's record; the holdout
    card is written here."""
    common = ["test_split=null", "eval_sets=null", "resume=true", "overwrite=false"]
    final: list[str] = []  # what best.yaml takes of the search's data
    holdout_info = None
    if plan.holdout is not None:
        card_path, counts = write_holdout(plan.base, plan.holdout, plan.seed, plan.out / DATA)
        split = ["train_split=train", "eval_split=validation", override("data", str(card_path))]
        common += split
        final += split + (["test_split=test"] if "test" in counts else [])
        holdout_info = {"fraction": plan.holdout, "seed": plan.seed, "card": str(card_path), "rows": counts}
    if plan.rows is not None:
        common += [f"train_rows={plan.rows}", "train_rows_stratified=true", "train_rows_per_class=null"]
    return replace(plan, common=tuple(common), final=tuple(final), holdout_info=holdout_info)


def _trial_folder(trial, out: Path) -> Path:
    """The trial's folder: the one its earlier try used (a retry), else ``trial-NNN``, recorded in the study; an
    unrecorded folder with files in it is refused."""
    name = trial.user_attrs.get("folder")
    folder = out / (name or _folder_name(trial.number))
    if name is None:
        if folder.is_dir() and any(folder.iterdir()):
            raise NLPTransferError(f"{folder}: exists but {out / STUDY} has no record of it; remove the trial-* "
                                   f"folders without a record, or use another --out")
        trial.set_user_attr("folder", folder.name)
    return folder


def _objective(optuna, plan: SearchPlan, train):
    """The study's objective: sample the space, train the recipe with those values into the trial's folder, return
    the main metric on the evaluation split (NaN, a failed trial, when it is missing or not finite)."""
    from ..tasks import get_task

    def objective(trial):
        params = {key: suggest(trial, key, spec) for key, spec in plan.space.items()}
        folder = _trial_folder(trial, plan.out)
        recipe = load_recipe(plan.base, list(plan.common) + [override(k, v) for k, v in params.items()]
                             + [f"output_dir={folder}"])
        callbacks = None
        if recipe.backend == "trainer":
            callbacks = [pruning_callback(trial, plan.metric, get_task(recipe.task).implementation().derived_metrics)]
        try:
            metrics = train(recipe, callbacks=callbacks).metrics
        except optuna.TrialPruned:
            remove_tree(folder, "the pruned trial's folder")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except NLPTransferError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        value = (metrics.get("eval") or {}).get(plan.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            trial.set_user_attr("error", f"{plan.metric} is {value!r} (diverged?)")
            return float("nan")  # a failed trial: the search goes on
        return float(value)

    return objective


def _after_trial(study, plan: SearchPlan, finished: tuple):
    """The callback after each trial: drop weights but the best's (``keep_weights="best"``), print the trial's line
    with the progress count and the best so far, rewrite the outputs."""
    state = {"done": len(study.get_trials(deepcopy=False, states=finished))}  # finished trials, for the progress line

    def after(study_, frozen):
        if frozen.state in finished:
            state["done"] += 1
        if plan.keep_weights == "best":
            drop_weights_but_best(study_, plan.out, plan.higher)
        print(f"nlp-transfer: tune [{state['done']}/{plan.trials}] {_trial_line(frozen, plan.metric)}"
              f"{_best_line(study_, plan.metric, plan.higher)}", flush=True)
        _write_outputs(study_, plan)

    return after


def _train_trials(optuna, study, plan: SearchPlan, remaining: int, objective) -> None:
    """Run the study until it holds ``plan.trials`` finished trials; a trial's error or Ctrl-C is recorded in the
    outputs too, then propagates."""
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    after = _after_trial(study, plan, finished)
    print(f"nlp-transfer: tune: {remaining} trial(s) to train{f' of {plan.trials}' if remaining < plan.trials else ''} "
          f"into {plan.out} ({plan.metric} on "
          f"{'held-out training rows' if plan.holdout is not None else plan.base.eval_split}, "
          f"{'higher' if plan.higher else 'lower'} is better; space: {plan.space_source})", flush=True)
    # at most as many failed (diverged) trials as missing ones before the search stops
    try:
        study.optimize(objective, n_trials=2 * remaining, gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(plan.trials, states=finished), after])
    except BaseException:  # a trial's error or Ctrl-C: the tables record that trial too, then it propagates
        _write_outputs(study, plan)
        raise


def _retry_stale(study, remaining: int, TrialState) -> None:
    """Trials left running by a killed search (or interrupted with Ctrl-C) are marked failed and, while trials are
    missing, queued again with the same values and folder (their newest checkpoint resumes)."""
    every = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in every}
    for trial in every:
        stale = trial.state == TrialState.RUNNING or (trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"))
        if not stale or trial.number in retried:
            continue
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
        if remaining > 0:
            study.enqueue_trial(dict(trial.params), user_attrs={
                "retry_of": trial.number, "folder": trial.user_attrs.get("folder") or _folder_name(trial.number)})
            print(f"nlp-transfer: tune: trial {trial.number} was interrupted; running it again with the same values",
                  flush=True)


# ------------------------------------------------------------------------------------------------ outputs

def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if not isinstance(value, str) else value


def _params_line(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_shown(value)}" for key, value in params.items())


def _trial_line(frozen, metric: str) -> str:
    state = frozen.state.name.lower()
    if state == "complete":
        return f"trial {frozen.number}: {metric} {frozen.value:.4f} ({_params_line(frozen.params)})"
    if state == "pruned":
        last = max(frozen.intermediate_values) if frozen.intermediate_values else None
        at = f" at evaluation {last} ({metric} {frozen.intermediate_values[last]:.4f})" if last is not None else ""
        return f"trial {frozen.number}: pruned{at} ({_params_line(frozen.params)})"
    return f"trial {frozen.number}: {state}: {frozen.user_attrs.get('error', 'no objective value')}"


def _best_line(study, metric: str, higher: bool) -> str:
    best = _best_trial(study, higher)
    return f"; best {metric} {best.value:.4f} (trial {best.number})" if best is not None else ""


def drop_weights_but_best(study, out: Path, higher: bool) -> list[Path]:
    """Remove the weight files (and checkpoints) of every complete trial's folder except the best trial's; the rest
    of each folder (metrics.json, predictions, recipe.yaml, model card) stays. Returns the files removed."""
    from optuna.trial import TrialState

    best = _best_trial(study, higher)
    removed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        name = trial.user_attrs.get("folder")
        if best is not None and trial.number == best.number or not name or not (out / name).is_dir():
            continue
        folder = out / name
        for pattern in WEIGHT_FILES:
            for path in folder.glob(pattern):
                path.unlink()
                removed.append(path)
        for checkpoint in folder.glob("checkpoint-*"):
            remove_tree(checkpoint, "a trial's checkpoint")
            removed.append(checkpoint)
    return removed


def _best_trial(study, higher: bool):
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    return min(done, key=lambda t: (-t.value if higher else t.value, t.number))


def trial_rows(study, out: Path) -> list[dict[str, Any]]:
    """trials.jsonl's rows: number, state, value, params, evaluations (step -> value), duration, folder (while it
    exists), retry_of and error."""
    every = study.get_trials(deepcopy=False)
    retried_as = {t.user_attrs["retry_of"]: t.number for t in every if t.user_attrs.get("retry_of") is not None}
    rows = []
    for t in every:
        folder = t.user_attrs.get("folder")
        error = t.user_attrs.get("error")
        if t.number in retried_as:
            error = f"interrupted; run again as trial {retried_as[t.number]}"
        rows.append({"number": t.number, "state": t.state.name.lower(),
                     "value": t.value if t.value is not None and math.isfinite(t.value) else None,
                     "params": dict(t.params),
                     "evaluations": {str(step): value for step, value in sorted(t.intermediate_values.items())},
                     "duration_s": round(t.duration.total_seconds(), 2) if t.duration is not None else None,
                     "folder": folder if folder and (out / folder).is_dir() else None,
                     "retry_of": t.user_attrs.get("retry_of"), "error": error})
    return rows


def _portable(base: Recipe) -> list[str]:
    """Overrides that make the recipe's data paths (found beside the recipe file) work from best.yaml's folder."""
    extra = []

    def fixed(path: str) -> str:
        resolved = resolve_path(path, base)
        return str(resolved) if resolved != Path(path).expanduser() and resolved.exists() else path

    if isinstance(base.data, str) and fixed(base.data) != base.data:
        extra.append(override("data", fixed(base.data)))
    elif isinstance(base.data, list) and [fixed(p) for p in base.data] != base.data:
        extra.append(override("data", [fixed(p) for p in base.data]))
    for name, entry in (base.eval_sets or {}).items():
        data = entry["data"]
        moved = [fixed(p) for p in data] if isinstance(data, list) else fixed(data)
        if moved != data:
            extra.append(override(f"eval_sets.{name}.data", moved))
    if isinstance(base.static, dict) and isinstance(base.static.get("vectors"), str):
        if fixed(base.static["vectors"]) != base.static["vectors"]:
            extra.append(override("static.vectors", fixed(base.static["vectors"])))
    return extra


def best_recipe(base: Recipe, params: dict[str, Any], out: Path, final: list[str]) -> Recipe:
    """The recipe best.yaml holds: the searched recipe with the best values, trained on its whole training split
    (or the holdout card's train part, with the card's evaluation split as test), into ``OUT/best``."""
    return load_recipe(base, _portable(base) + final + [override(k, v) for k, v in params.items()]
                       + [f"output_dir={out / BEST_RUN}", "resume=false", "overwrite=false"])


def _write_outputs(study, plan: SearchPlan) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    """best.yaml (when a trial completed), trials.jsonl, trials.md and tune.json as the study stands now; returns
    tune.json's contents, the best trial's record and trials.jsonl's rows."""
    out, base = plan.out, plan.base
    table = trial_rows(study, out)
    best_trial = _best_trial(study, plan.higher)
    best = None
    if best_trial is not None:
        best = {"number": best_trial.number, "value": best_trial.value, "params": dict(best_trial.params),
                "folder": best_trial.user_attrs.get("folder")}
        recipe = best_recipe(base, best["params"], out, list(plan.final))
        header = (f"# nlp-transfer tune: trial {best['number']} of {out}, {plan.metric} {best['value']:.4f}\n"
                  f"# nlp-transfer train {out / BEST}\n")
        write_text_atomic(out / BEST, header + yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True))
    states: dict[str, int] = {}
    for row in table:
        states[row["state"]] = states.get(row["state"], 0) + 1
    summary = {"schema": SCHEMA, "recipe": base.source, "output": str(out), "task": base.task, "model": base.model,
               "data": base.data, "strategy": base.strategy.name, "main_metric": plan.metric,
               "direction": "maximize" if plan.higher else "minimize",
               "eval_split": "validation (held-out training rows)" if plan.holdout_info else base.eval_split,
               "trials": plan.trials, "finished": states.get("complete", 0) + states.get("pruned", 0),
               "states": states, "space": plan.space, "space_source": plan.space_source, "rows": plan.rows,
               "holdout": plan.holdout_info, "seed": plan.seed, "pruner": type(make_pruner(plan.pruner)).__name__,
               "best": best, "best_recipe": str(out / BEST) if best is not None else None}
    _keep_confirm(out / SUMMARY, summary)
    write_jsonl_atomic(out / TRIALS_JSONL, table)
    write_text_atomic(out / TRIALS_MD, markdown(summary, table))
    write_json_atomic(out / SUMMARY, summary)
    return summary, best, table


def _keep_confirm(previous: Path, summary: dict[str, Any]) -> None:
    """A confirm run of an earlier call stays recorded in ``summary`` while its best is still the best."""
    if previous.is_file():
        try:
            earlier = json.loads(previous.read_text(encoding="utf-8"))
        except ValueError:
            earlier = {}
        if earlier.get("confirm") and earlier.get("best") == summary["best"]:
            summary["confirm"] = earlier["confirm"]


def markdown(summary: dict[str, Any], table: list[dict[str, Any]]) -> str:
    """trials.md: what was searched, the best trial, then one row per trial with its values."""
    metric = summary["main_metric"]
    keys = list(summary["space"])
    states = summary["states"]
    lines = [f"# Hyperparameter search: {summary['model']} on {summary['data']}", "",
             f"{metric} on {summary['eval_split']} ({'higher' if summary['direction'] == 'maximize' else 'lower'} is "
             f"better); {summary['finished']} of {summary['trials']} trials finished (" +
             ", ".join(f"{n} {s}" for s, n in states.items()) + f"); space: {summary['space_source']}; pruner: "
             f"{summary['pruner']}."
             + (f" Trials train on {summary['rows']} training rows; best.yaml on all of them." if summary["rows"] else "")
             + (f" The search's validation is {summary['holdout']['rows']['validation']} held-out training rows "
                f"(--holdout {summary['holdout']['fraction']})." if summary["holdout"] else ""), ""]
    best = summary["best"]
    if best:
        lines += [f"Best: trial {best['number']}, {metric} {best['value']:.4f} ({_params_line(best['params'])}); "
                  f"`nlp-transfer train {summary['best_recipe']}`.", ""]
    lines += ["| trial | state | " + metric + " | evaluations | time (s) | " + " | ".join(keys) + " |",
              "|---:|---|---:|---|---:|" + "---:|" * len(keys)]
    for row in table:
        value = f"{row['value']:.4f}" if row["value"] is not None else "–"
        evaluations = " ".join(f"{v:.3f}" for v in row["evaluations"].values()) or "–"
        seconds = f"{row['duration_s']:.1f}" if row["duration_s"] is not None else "–"
        state = row["state"] + (f" ({row['error']})" if row["error"] else "")
        params = [_shown(row["params"][k]) if k in row["params"] else "–" for k in keys]
        lines.append(f"| {row['number']} | {state} | {value} | {evaluations} | {seconds} | " + " | ".join(params) + " |")
    return "\n".join(lines) + "\n"


def _write_plot(table: list[dict[str, Any]], metric: str, higher: bool, path: Path) -> Path | None:
    """The objective per trial (pruned trials at their last evaluation) and the best so far."""
    from ..plots import figure, png

    done = [row for row in table if row["state"] == "complete" and row["value"] is not None]
    pruned = [row for row in table if row["state"] == "pruned" and row["evaluations"]]
    if not done and not pruned:
        return None
    made = figure(6.4, 4.0)
    ax = made.add_subplot()
    if done:
        ax.plot([r["number"] for r in done], [r["value"] for r in done], "o", label="complete")
        best, steps = None, []
        for row in done:
            best = row["value"] if best is None else (max if higher else min)(best, row["value"])
            steps.append(best)
        ax.step([r["number"] for r in done], steps, where="post", label="best so far")
    if pruned:
        ax.plot([r["number"] for r in pruned], [list(r["evaluations"].values())[-1] for r in pruned], "x",
                color="grey", label="pruned (last evaluation)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    with atomic_open(path, binary=True) as handle:
        handle.write(png(made))
    return path


def _confirm(out: Path, metric: str) -> dict[str, Any]:
    """Train best.yaml into OUT/best: resumed when the folder already trains the same recipe, replaced when it holds
    an earlier best."""
    from ..rundir import is_run_folder
    from ..training import train

    target = out / BEST_RUN
    recipe = load_recipe(out / BEST)
    extra: list[str] = []
    if target.is_dir() and is_run_folder(target):
        saved = target / "recipe.yaml"
        same = False
        if saved.is_file():
            ignore = ("resume", "overwrite")
            now = {k: v for k, v in recipe.to_dict().items() if k not in ignore}
            try:
                before = {k: v for k, v in load_recipe(saved).to_dict().items() if k not in ignore}
                same = _normalised(before) == _normalised(now)
            except NLPTransferError:
                same = False
        extra = ["resume=true"] if same or not saved.is_file() else ["overwrite=true"]
    print(f"nlp-transfer: tune: confirming the best recipe on the full training set -> {target}", flush=True)
    started = time.perf_counter()
    metrics = train(load_recipe(recipe, extra) if extra else recipe).metrics
    return {"output_dir": str(target), "main_metric": metric,
            "eval": (metrics.get("eval") or {}).get(metric), "test": (metrics.get("test") or {}).get(metric),
            "seconds": round(time.perf_counter() - started, 1)}
