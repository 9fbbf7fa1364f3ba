"""Recipes: one YAML file per experiment, every value with a default.

    from nlp_transfer.config import load_recipe
    recipe = load_recipe("recipes/sst2_minilm.yaml", ["training.learning_rate=3e-5"])

Unknown keys are rejected with the closest valid key; ``training:`` is passed through to
`transformers.TrainingArguments`, so its keys are checked against that class.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import NLPTransferError, did_you_mean

TASKS = ("sequence-classification", "token-classification", "masked-lm")
PROBLEM_TYPES = ("auto", "single_label", "multi_label", "regression")
STRATEGIES = ("full", "feature-extraction", "last-n", "gradual", "lora")


@dataclass
class StrategyConfig:
    """How much of the pretrained network is adapted.

    ``full``: fine-tune everything. ``feature-extraction``: frozen encoder features (``pooling`` over ``layers``,
    optionally ``normalize``d) and a scikit-learn probe (classification recipes)."""

    name: str = "full"
    probe: str = "logistic"  # feature-extraction: logistic (scikit-learn) | head (the task head in Trainer)
    pooling: str = "mean"
    layers: list[int] = field(default_factory=lambda: [-1])
    normalize: bool = False
    n: int = 2  # last-n: how many top encoder layers train
    every: Any = "epoch"  # gradual: open one more layer group from the top every N steps, or every epoch
    r: int = 8  # lora: rank
    alpha: int = 16  # lora: scaling (alpha / r)
    dropout: float = 0.1  # lora: dropout on the adapter input
    target_modules: list[str] | None = None  # lora: module names; None = peft's default for the architecture
    lr_decay: float | None = None  # layer-wise learning-rate decay, e.g. 0.9: lr * decay**depth from the top
    group_lrs: dict[str, float] | None = None  # discriminative groups: {embeddings, lower, upper, head} -> lr
    head_warmup_steps: int | None = None  # two-stage: the head trains alone for this many steps first...
    head_warmup_epochs: float | None = None  # ... or this many epochs
    head_lr: float = 1e-3  # two-stage: the head's learning rate during the warm-up stage


@dataclass
class EarlyStoppingConfig:
    """Stop when ``metric`` has not improved for ``patience`` evaluations (None: never stop early)."""

    patience: int | None = None
    metric: str | None = None  # default: the task's main metric (accuracy, f1_micro, pearson)
    threshold: float = 0.0


@dataclass
class Recipe:
    """One experiment. Paths are relative to the working directory (or to the recipe file)."""

    task: str = "sequence-classification"
    data: Any = None  # a data card (data_cards/*.md), or a list of cards read as one (rows keep their language)
    model: str = "minilm-l6"  # alias, local directory or hub id
    output_dir: str = "runs/default"
    max_length: int = 128
    seed: int = 42
    problem_type: str = "auto"  # auto: from the card (multi-label / regression) or single-label
    threshold: float = 0.5  # multi-label decision threshold on sigmoid scores
    class_weights: Any = None  # None | "balanced" | list of weights in label order
    train_split: str = "train"
    eval_split: str = "validation"  # evaluated during training; selects the best checkpoint
    test_split: str | None = None  # scored once by the final model, never used for selection
    train_rows: int | None = None  # train on a random subset of this many rows (seeded), e.g. for comparisons
    eval_sets: Any = None  # extra sets scored once by the final model: {name: {data: CARD, split: test}} or a list
    label_map: dict[str, str] | None = None  # NER: entity type -> type or O, applied on reading ({MISC: O})
    stride: int = 32  # subwords shared by overlapping windows of long inputs (NER training and prediction)
    label_all_subwords: bool = False  # NER: label every subword, not only the first of each word
    mlm_probability: float = 0.15  # masked-lm: share of tokens (or words) masked
    whole_word_mask: bool = False  # masked-lm: mask every piece of a chosen word together
    strict: bool = False  # NER: seqeval strict mode (entities must match the IOB2 scheme exactly)
    resume: bool = False  # continue from the last checkpoint in output_dir
    overwrite: bool = False  # allow writing into a non-empty output_dir
    keep_checkpoints: bool = False  # keep checkpoint-* folders after a successful run
    trust_remote_code: bool = False
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    training: dict[str, Any] = field(default_factory=dict)  # passed to TrainingArguments
    static: dict[str, Any] | None = None  # a static-embedding baseline instead of a transformer (nlp_transfer.static)
    source: str | None = field(default=None, repr=False)  # the recipe file, for messages

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


def _training_argument_names() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def _coerce(text: str) -> Any:
    """Parse an override value: YAML scalars, plus numbers YAML 1.1 leaves as strings (3e-5)."""
    value = yaml.safe_load(text) if text != "" else ""
    if isinstance(value, str):
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
    return value


def _check_keys(values: dict, allowed: set[str], where: str, source: str) -> None:
    for key in values:
        if key not in allowed:
            listing = (f"valid keys: {', '.join(sorted(allowed))}" if len(allowed) <= 30
                       else "see the transformers TrainingArguments documentation")
            raise NLPTransferError(f"{source}: unknown key '{where}{key}'{did_you_mean(key, allowed, where)} ({listing})")


def _build(cls, values: dict, where: str, source: str):
    if not isinstance(values, dict):
        raise NLPTransferError(f"{source}: '{where.rstrip('.')}' must be a mapping of keys to values")
    fields_by_name = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    _check_keys(values, set(fields_by_name), where, source)
    kwargs = {}
    for name, value in values.items():
        default = fields_by_name[name].default_factory if fields_by_name[name].default is dataclasses.MISSING else None
        if default in (StrategyConfig, EarlyStoppingConfig):
            if isinstance(value, str) and default is StrategyConfig:
                value = {"name": value}
            value = _build(default, value or {}, f"{where}{name}.", source)
        elif name == "training":
            value = value or {}
            if not isinstance(value, dict):
                raise NLPTransferError(f"{source}: 'training' must be a mapping of TrainingArguments options")
            _check_keys(value, _training_argument_names(), "training.", source)
        kwargs[name] = value
    return cls(**kwargs)


def _set_dotted(values: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = values
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            if child is None:
                child = {}
            elif part == "strategy":  # strategy: lora -> {name: lora}
                child = {"name": child}
            elif depth == 1 and parts[0] == "eval_sets" and isinstance(child, str):  # NAME: CARD -> {data: CARD}
                child = {"data": child}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise NLPTransferError(f"override '{item}' is not of the form key=value (e.g. training.learning_rate=3e-5)")
        parsed.append((key.strip(), _coerce(text.strip())))
    return parsed


def validate(recipe: Recipe) -> Recipe:
    source = recipe.source or "recipe"
    checks = [("task", recipe.task, TASKS), ("problem_type", recipe.problem_type, PROBLEM_TYPES),
              ("strategy.name", recipe.strategy.name, STRATEGIES)]
    for key, value, allowed in checks:
        if value not in allowed:
            raise NLPTransferError(
                f"{source}: {key} '{value}' is not supported{did_you_mean(value, allowed)} (choose from {', '.join(allowed)})"
            )
    _validate_strategy(recipe.strategy, source)
    if recipe.data is None:
        raise NLPTransferError(f"{source}: no 'data' key; point it at a data card, e.g. data: data_cards/sst2.md")
    if not isinstance(recipe.max_length, int) or recipe.max_length < 8:
        raise NLPTransferError(f"{source}: max_length must be an integer >= 8, got {recipe.max_length!r}")
    if recipe.task == "masked-lm":
        if recipe.test_split:
            raise NLPTransferError(f"{source}: masked-lm has no test_split; its held-out perplexity is measured on eval_split")
        if recipe.strategy.name == "lora" or (recipe.strategy.name == "feature-extraction" and recipe.strategy.probe != "head"):
            raise NLPTransferError(f"{source}: masked-lm trains with strategy full, last-n, gradual or feature-extraction "
                                   f"with probe: head (the MLM head alone), not {recipe.strategy.name}")
    if isinstance(recipe.data, list) and not all(isinstance(item, str) for item in recipe.data) or recipe.data == []:
        raise NLPTransferError(f"{source}: data must be a data card path or a list of them, got {recipe.data!r}")
    recipe.label_map = _check_label_map(recipe.label_map, recipe.task, source)
    recipe.eval_sets = normalise_eval_sets(recipe.eval_sets, source)
    if recipe.eval_sets and recipe.task == "masked-lm":
        raise NLPTransferError(f"{source}: masked-lm has no eval_sets; its held-out perplexity is measured on eval_split")
    cw = recipe.class_weights
    if cw is not None and cw != "balanced" and not (isinstance(cw, list) and all(isinstance(w, (int, float)) for w in cw)):
        raise NLPTransferError(f"{source}: class_weights must be 'balanced' or a list of numbers, got {cw!r}")
    return recipe


def _check_label_map(label_map: Any, task: str, source: str) -> dict[str, str] | None:
    """``{MISC: O, PERSON: PER}``: entity types (no B-/I- prefix) to another type, or to O (dropped)."""
    if not label_map:
        return None
    if task != "token-classification":
        raise NLPTransferError(f"{source}: label_map maps entity types and applies to token-classification recipes only")
    if not isinstance(label_map, dict):
        raise NLPTransferError(f"{source}: label_map must map entity types to types or O, e.g. label_map: {{MISC: O}}")
    checked = {}
    for key, value in label_map.items():
        for part in (key, value):
            if not isinstance(part, str) or not part.strip():
                raise NLPTransferError(f"{source}: label_map: {key!r}: {value!r}: use type names, e.g. {{MISC: O}}")
            if part[:2] in ("B-", "I-", "E-", "S-"):
                raise NLPTransferError(f"{source}: label_map: write the entity type '{part[2:]}', not the tag '{part}' "
                                       f"(B- and I- tags of a type map together)")
        checked[key.strip()] = value.strip()
    return checked


EVAL_SET_KEYS = ("data", "split")


def normalise_eval_sets(value: Any, source: str) -> dict[str, dict[str, Any]] | None:
    """``eval_sets`` as ``{name: {data, split}}``. Accepted: that mapping (a card path alone stands for
    ``{data: PATH}``), or a list of card paths / ``{data, split, name}`` entries, named ``STEM-SPLIT``.
    ``split`` defaults to ``test``; ``data`` may list several cards (read as one, rows keep their language)."""
    if not value:
        return None
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for entry in value:
            entry = {"data": entry} if isinstance(entry, (str, list)) else entry
            if not isinstance(entry, dict):
                raise NLPTransferError(f"{source}: eval_sets entries are card paths or {{data: CARD, split: SPLIT}}, "
                                       f"got {entry!r}")
            entry = dict(entry)
            name = entry.pop("name", None) or _eval_set_name(entry.get("data"), entry.get("split", "test"))
            items.append((name, entry))
    else:
        raise NLPTransferError(f"{source}: eval_sets must be a list or a mapping of name -> {{data: CARD, split: SPLIT}}")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in items:
        entry = {"data": entry} if isinstance(entry, (str, list)) else entry
        if not isinstance(entry, dict):
            raise NLPTransferError(f"{source}: eval_sets.{name} must be {{data: CARD, split: SPLIT}}, got {entry!r}")
        for key in entry:
            if key not in EVAL_SET_KEYS:
                raise NLPTransferError(f"{source}: unknown key 'eval_sets.{name}.{key}'"
                                       f"{did_you_mean(key, EVAL_SET_KEYS, f'eval_sets.{name}.')} (valid keys: data, split)")
        data = entry.get("data")
        if not data or not (isinstance(data, str) or isinstance(data, list) and all(isinstance(d, str) for d in data)):
            raise NLPTransferError(f"{source}: eval_sets.{name} needs 'data': a data card path (or a list of them)")
        split = entry.get("split", "test")
        if not isinstance(split, str) or not split:
            raise NLPTransferError(f"{source}: eval_sets.{name}.split must be a split name, e.g. test")
        if str(name) in out:
            raise NLPTransferError(f"{source}: eval_sets: two sets are named '{name}'; give them distinct names")
        out[str(name)] = {"data": data, "split": split}
    return out


def _eval_set_name(data: Any, split: str) -> str:
    paths = data if isinstance(data, list) else [data]
    return "+".join(Path(str(p)).stem for p in paths) + f"-{split}"


def _validate_strategy(strategy: StrategyConfig, source: str) -> None:
    from .strategies import check_group_lrs

    strategy.group_lrs = check_group_lrs(strategy.group_lrs, source) or None
    if strategy.group_lrs and strategy.lr_decay is not None:
        raise NLPTransferError(f"{source}: strategy: set either lr_decay or group_lrs, not both")
    if strategy.lr_decay is not None and not (isinstance(strategy.lr_decay, (int, float)) and 0 < strategy.lr_decay <= 1):
        raise NLPTransferError(f"{source}: strategy.lr_decay must be in (0, 1], e.g. 0.9; got {strategy.lr_decay!r}")
    warmup = strategy.head_warmup_steps is not None or strategy.head_warmup_epochs is not None
    if warmup:
        if strategy.head_warmup_steps is not None and strategy.head_warmup_epochs is not None:
            raise NLPTransferError(f"{source}: strategy: set head_warmup_steps or head_warmup_epochs, not both")
        if strategy.name not in ("full", "last-n"):
            raise NLPTransferError(f"{source}: strategy {strategy.name} has no head warm-up stage; use it with full or last-n")
        value = strategy.head_warmup_steps if strategy.head_warmup_steps is not None else strategy.head_warmup_epochs
        if not isinstance(value, (int, float)) or value <= 0 or (strategy.head_warmup_steps is not None and not isinstance(value, int)):
            raise NLPTransferError(f"{source}: strategy head warm-up must be a positive number of "
                                   f"{'steps (an integer)' if strategy.head_warmup_steps is not None else 'epochs'}, got {value!r}")
    if (strategy.group_lrs or strategy.lr_decay is not None) and strategy.name in ("lora", "feature-extraction"):
        raise NLPTransferError(f"{source}: strategy {strategy.name} does not take lr_decay or group_lrs; use full, last-n or gradual")


def load_recipe(path_or_values: str | Path | dict | Recipe | None = None, overrides: list[str] | None = None,
                **kwargs: Any) -> Recipe:
    """Build a validated Recipe from a YAML file, a dict or a Recipe, plus ``key=value`` overrides
    (strings, as on the command line) and keyword overrides (``training={"num_train_epochs": 1}``)."""
    source = "recipe"
    if isinstance(path_or_values, Recipe):
        values = path_or_values.to_dict()
        source = path_or_values.source or source
    elif isinstance(path_or_values, dict):
        values = dict(path_or_values)
    elif path_or_values is None:
        values = {}
    else:
        path = Path(path_or_values)
        source = str(path)
        if not path.is_file():
            raise NLPTransferError(f"recipe file '{path}' not found; check the path (recipes live in recipes/*.yaml)")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f": line {mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            start = getattr(exc, "context_mark", None)  # where an unclosed quote/bracket began
            if start and getattr(exc, "context", None) and (not mark or start.line != mark.line):
                problem += f" ({exc.context} started on line {start.line + 1})"
            raise NLPTransferError(f"{path}{line}: {problem}; fix the YAML syntax") from None
        except UnicodeDecodeError:
            raise NLPTransferError(f"{path}: not valid UTF-8; re-save the recipe as UTF-8") from None
        if not isinstance(values, dict):
            raise NLPTransferError(f"{path}: a recipe must be a YAML mapping (key: value lines)")
    values = _deep_copy(values)
    for key, value in parse_overrides(overrides):
        _set_dotted(values, key, value)
    for key, value in kwargs.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    recipe = _build(Recipe, values, "", source)
    recipe.source = source
    return validate(recipe)


def _deep_copy(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _deep_copy(v) for k, v in values.items()}
    if isinstance(values, list):
        return [_deep_copy(v) for v in values]
    return values


def resolve_path(path: str, recipe: Recipe) -> Path:
    """A path from a recipe: relative to the working directory, else to the recipe's folder."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists() or not recipe.source or recipe.source == "recipe":
        return candidate
    beside = Path(recipe.source).parent / candidate
    return beside if beside.exists() else candidate
