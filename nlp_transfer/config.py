"""Recipes: one YAML file per experiment, every value with a default.

    from nlp_transfer.config import load_recipe
    recipe = load_recipe("recipes/sst2_minilm.yaml", ["training.learning_rate=3e-5"])

Unknown keys are rejected with the closest valid key; ``training:`` is passed through to
`transformers.TrainingArguments`, so its keys are checked against that class. ``strategy:`` becomes a registered
strategy object with its own options (`nlp_transfer.strategy_configs`).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checks import check_keys, check_value, checked
from .errors import NLPTransferError, did_you_mean
from .strategy_configs import STRATEGIES, Full, Strategy, build_strategy
from .tasks.base import TASKS, Task, get_task

PROBLEM_TYPES = ("auto", "single_label", "multi_label", "regression")


@dataclass
class EarlyStoppingConfig:
    """Stop when ``metric`` has not improved for ``patience`` evaluations (None: never stop early)."""

    patience: int | None = checked(None, low=1)
    metric: str | None = None  # default: the task's main metric (accuracy, f1_micro, pearson)
    threshold: float = checked(0.0, low=0)


@dataclass
class CalibrationConfig:
    """Fitted on the evaluation split once training ends (classification; `nlp_transfer.calibration`), stored in
    the run folder's calibration.json and applied by predict / evaluate; the test split is scored with it."""

    temperature: bool = True  # temperature scaling of the logits (minimum validation NLL)
    thresholds: bool = True  # multi-label: a threshold per label maximising its validation F1 (else `threshold`)
    binary_target: str | None = None  # binary: tune label 1's threshold for f1 | precision>=P | recall>=R
    bins: int = checked(15, low=2)  # equal-width confidence bins of the expected calibration error

    @property
    def enabled(self) -> bool:
        return self.temperature or self.thresholds or self.binary_target is not None


@dataclass
class Recipe:
    """One experiment. Paths are relative to the working directory (or to the recipe file)."""

    task: str = checked("sequence-classification", choices=tuple(TASKS))
    data: Any = None  # a data card (data_cards/*.md), or a list of cards read as one (rows keep their language)
    model: str = "minilm-l6"  # alias, local directory or hub id
    output_dir: str = "runs/default"
    max_length: int = checked(128, low=8)  # and at most the model's positions (checked when the model loads)
    seed: int = checked(42, low=0)
    seeds: list[int] | None = None  # train once per seed into output_dir/seed-N, summary in seeds.json (nlp_transfer.seeds)
    problem_type: str = checked("auto", choices=PROBLEM_TYPES)  # auto: from the card (multi-label / regression) or single-label
    threshold: float = checked(0.5, low=0, high=1, low_open=True, high_open=True)  # multi-label decision threshold on sigmoid scores
    class_weights: Any = None  # None | "balanced" | list of weights in label order
    train_split: str = "train"
    eval_split: str = "validation"  # evaluated during training; selects the best checkpoint
    test_split: str | None = None  # scored once by the final model, never used for selection
    train_rows: int | None = checked(None, low=1)  # train on a random subset of this many rows (seeded), e.g. for comparisons
    train_rows_stratified: bool = False  # single-label classification: the train_rows subset keeps the label shares
    train_rows_per_class: int | None = checked(None, low=1)  # single-label: this many rows of each label (seeded)
    eval_rows: int | None = checked(None, low=1)  # score (and select on) a fixed sample of the eval split: same rows for every seed
    data_storage: str = checked("auto", choices=("auto", "memory", "arrow"))  # splits in memory, or streamed to a memory-mapped Arrow cache (auto: files of 256 MB or more)
    eval_sets: Any = None  # extra sets scored once by the final model: {name: {data: CARD, split: test}} or a list
    label_map: dict[str, str] | None = None  # NER: entity type -> type or O, applied on reading ({MISC: O})
    stride: int = checked(32, low=0)  # subwords shared by overlapping windows of long inputs (NER training and prediction)
    label_all_subwords: bool = False  # NER: label every subword, not only the first of each word
    mlm_probability: float = checked(0.15, low=0, high=1, low_open=True, high_open=True)  # masked-lm: share of tokens (or words) masked
    whole_word_mask: bool = False  # masked-lm: mask every piece of a chosen word together
    strict: bool = False  # NER: seqeval strict mode (entities must match the IOB2 scheme exactly)
    resume: bool = False  # continue from the last checkpoint in output_dir
    overwrite: bool = False  # allow writing into a non-empty output_dir
    keep_checkpoints: bool = False  # keep checkpoint-* folders after a successful run
    trust_remote_code: bool = False
    strategy: Strategy = field(default_factory=Full)  # a registered strategy and its options (strategy_configs)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)  # fitted on eval_split after training
    training: dict[str, Any] = field(default_factory=dict)  # passed to TrainingArguments
    static: dict[str, Any] | None = None  # a static-embedding baseline instead of a transformer (nlp_transfer.static)
    source: str | None = field(default=None, repr=False)  # the recipe file, for messages
    given: frozenset = field(default=frozenset(), repr=False)  # keys the user set ("strategy", "strategy.r", ...)

    @property
    def backend(self) -> str:
        """What trains this recipe: ``static`` (GloVe-family baselines), ``probe`` (frozen features + scikit-learn)
        or ``trainer`` (transformers.Trainer); decided by the recipe alone, before any data is read."""
        if self.static is not None:
            return "static"
        return self.strategy.backend

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        out.pop("given")
        if out["seeds"] is None:  # a single run's saved recipe.yaml stays as it was before seeds existed
            out.pop("seeds")
        if not out["train_rows_stratified"]:  # likewise for the plain random subset
            out.pop("train_rows_stratified")
        for key in ("train_rows_per_class", "eval_rows"):  # keys newer than most saved runs: only when set
            if out[key] is None:
                out.pop(key)
        if out["data_storage"] == "auto":
            out.pop("data_storage")
        if out["calibration"] == dataclasses.asdict(CalibrationConfig()):
            out.pop("calibration")
        out["strategy"] = self.strategy.to_dict()  # with its name (a class attribute)
        for key in ignored_keys(self.backend, self.strategy.distils):  # what this backend refuses is left out,
            out.pop(key, None)                                        # so the saved recipe.yaml trains again as it is
        return out


def _training_fields() -> dict[str, Any]:
    from transformers import TrainingArguments

    return {f.name: f.type for f in dataclasses.fields(TrainingArguments) if f.init}


def _training_argument_names() -> set[str]:
    return set(_training_fields())


# Ranges of the TrainingArguments a recipe sets most (transformers checks few of them itself and fails late, or trains
# with a negative learning rate); types of every key come from TrainingArguments' own annotations.
TRAINING_LIMITS: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": float, "low": 0, "low_open": True},
    "per_device_train_batch_size": {"type": int, "low": 1},
    "per_device_eval_batch_size": {"type": int, "low": 1},
    "gradient_accumulation_steps": {"type": int, "low": 1},
    "eval_accumulation_steps": {"type": int, "low": 1},
    "num_train_epochs": {"type": float, "low": 0, "low_open": True},
    "max_steps": {"type": int, "low": -1},
    "weight_decay": {"type": float, "low": 0},
    "warmup_steps": {"type": float, "low": 0},
    "warmup_ratio": {"type": float, "low": 0, "high": 1},
    "max_grad_norm": {"type": float, "low": 0},
    "adam_beta1": {"type": float, "low": 0, "high": 1, "high_open": True},
    "adam_beta2": {"type": float, "low": 0, "high": 1, "high_open": True},
    "adam_epsilon": {"type": float, "low": 0, "low_open": True},
    "label_smoothing_factor": {"type": float, "low": 0, "high": 1, "high_open": True},
    "logging_steps": {"type": float, "low": 0, "low_open": True},
    "eval_steps": {"type": float, "low": 0, "low_open": True},
    "save_steps": {"type": float, "low": 0, "low_open": True},
    "save_total_limit": {"type": int, "low": 1},
    "dataloader_num_workers": {"type": int, "low": 0},
    "seed": {"type": int, "low": 0},
}


def _aliases(target: str, *spellings: str) -> dict[str, str]:
    return {spelling: target for spelling in spellings}


# Spellings other tools use for an option the recipe names differently, per level (`errors.did_you_mean`): a user of
# run_glue or simpletransformers writes `epochs: 3` or `training.evaluation_strategy`, and is told the real key.
RECIPE_ALIASES = {
    "": {
        **_aliases("training.num_train_epochs", "epochs", "num_epochs", "n_epochs", "num_train_epochs"),
        **_aliases("training.learning_rate", "lr", "learning_rate"),
        **_aliases("training.per_device_train_batch_size", "batch_size", "train_batch_size", "bs",
                   "per_device_train_batch_size"),
        **_aliases("training.per_device_eval_batch_size", "eval_batch_size", "per_device_eval_batch_size"),
        **{name: f"training.{name}" for name in ("weight_decay", "warmup_steps", "warmup_ratio", "max_steps",
                                                  "gradient_accumulation_steps", "fp16", "bf16", "eval_strategy",
                                                  "save_strategy", "logging_steps", "eval_steps", "lr_scheduler_type")},
        **_aliases("model", "model_name", "model_name_or_path", "model_id", "base_model", "pretrained_model",
                   "checkpoint", "encoder"),
        **_aliases("data", "dataset", "dataset_name", "data_card", "card", "train_file", "data_path"),
        **_aliases("output_dir", "output", "out", "output_path", "save_dir", "out_dir", "run_dir"),
        **_aliases("max_length", "max_seq_length", "max_seq_len", "max_len", "max_tokens", "max_source_length"),
        **_aliases("problem_type: multi_label", "multi_label", "multilabel"),
        **_aliases("strategy: {name: lora}", "lora", "use_lora", "peft"),
        **_aliases("strategy: {name: feature-extraction}", "freeze", "freeze_encoder", "frozen"),
        **_aliases("early_stopping: {patience: N}", "patience", "early_stopping_patience"),
        **_aliases("labels in the data card (data_cards/*.md)", "labels", "num_labels", "label_names"),
    },
    "training.": {
        **_aliases("training.num_train_epochs", "epochs", "num_epochs", "n_epochs"),
        **_aliases("training.learning_rate", "lr"),
        **_aliases("training.per_device_train_batch_size", "batch_size", "train_batch_size"),
        **_aliases("training.per_device_eval_batch_size", "eval_batch_size"),
        **_aliases("training.eval_strategy", "evaluation_strategy"),
        **_aliases("training.train_sampling_strategy: group_by_length", "group_by_length"),
        **_aliases("early_stopping: {patience: N} (a recipe key, not a training one)", "early_stopping_patience",
                   "patience"),
    },
}


def check_training(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``training:`` values checked against TrainingArguments' annotated types and `TRAINING_LIMITS`.

    The keys of `TRAINING_LIMITS` are checked first, without importing transformers, so the common mistakes (a
    negative learning rate, batch size 0) are reported in well under a second."""
    for key, value in values.items():
        if key in TRAINING_LIMITS and value is not None:  # whether a key takes null, its annotation says below
            check_value(value, TRAINING_LIMITS[key]["type"], TRAINING_LIMITS[key], f"training.{key}", source)
    check_keys(values, _training_argument_names(), "training.", source, RECIPE_ALIASES["training."])
    types_by_name = _training_fields()
    values = {key: _yaml_word(value, types_by_name[key]) for key, value in values.items()}
    return {key: check_value(value, types_by_name[key], TRAINING_LIMITS.get(key, {}), f"training.{key}", source)
            for key, value in values.items()}


def _yaml_word(value: Any, annotation: Any) -> Any:
    """YAML 1.1 reads ``no`` / ``off`` / ``false`` as False (and ``yes`` / ``on`` as True); for an option that takes
    words, not booleans (``eval_strategy: no``), give the word back: "no" for False, "yes" for True."""
    if isinstance(value, bool) and "bool" not in str(annotation):
        return "yes" if value else "no"
    return value


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



def _build(cls, values: dict, where: str, source: str):
    if not isinstance(values, dict):
        raise NLPTransferError(f"{source}: '{where.rstrip('.')}' must be a mapping of keys to values")
    fields_by_name = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    check_keys(values, set(fields_by_name), where, source, RECIPE_ALIASES.get(where))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    # our own keys first: their mistakes are reported without importing transformers (which training: needs)
    for name, value in sorted(values.items(), key=lambda item: item[0] == "training"):
        default = fields_by_name[name].default_factory if fields_by_name[name].default is dataclasses.MISSING else None
        if hints[name] is Strategy:
            value = build_strategy(value, source, f"{where}{name}.")
        elif default in (EarlyStoppingConfig, CalibrationConfig):
            value = _build(default, value or {}, f"{where}{name}.", source)
        elif name == "training":
            value = value or {}
            if not isinstance(value, dict):
                raise NLPTransferError(f"{source}: 'training' must be a mapping of TrainingArguments options")
            value = check_training(value, source)
        else:
            value = check_value(value, hints[name], dict(fields_by_name[name].metadata), f"{where}{name}", source)
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
    _check_backend_keys(recipe.backend, recipe.strategy.distils, recipe.given, source)
    recipe.output_dir = str(Path(recipe.output_dir).expanduser())  # "~/runs/x" is the user's, for every writer
    if recipe.data is None:
        raise NLPTransferError(f"{source}: no 'data' key; point it at a data card, e.g. data: data_cards/sst2.md")
    task = get_task(recipe.task)
    if not task.scored_sets and recipe.test_split:
        raise NLPTransferError(f"{source}: {task} has no test_split; its held-out perplexity is measured on "
                               f"eval_split")
    if not recipe.strategy.fits(task) or (recipe.backend == "probe" and not task.probe):
        raise NLPTransferError(f"{source}: {task} does not train with strategy {recipe.strategy.name}"
                               f"{' (a scikit-learn probe)' if recipe.backend == 'probe' else ''}; use full, "
                               f"last-n, gradual or feature-extraction with probe: head")
    if isinstance(recipe.data, list) and not all(isinstance(item, str) for item in recipe.data) or recipe.data == []:
        raise NLPTransferError(f"{source}: data must be a data card path or a list of them, got {recipe.data!r}")
    recipe.label_map = _check_label_map(recipe.label_map, task, source)
    recipe.eval_sets = normalise_eval_sets(recipe.eval_sets, source)
    if recipe.eval_sets and not task.scored_sets:
        raise NLPTransferError(f"{source}: {task} has no eval_sets; its held-out perplexity is measured on "
                               f"eval_split")
    _check_seeds(recipe.seeds, source)
    from .calibration import parse_target

    parse_target(recipe.calibration.binary_target, f"{source}: calibration.binary_target")
    if recipe.test_split and recipe.test_split == recipe.eval_split:
        raise NLPTransferError(f"{source}: test_split and eval_split are both '{recipe.test_split}': the model would be "
                               f"selected and calibrated on the rows it is tested on; use another split for one")
    if recipe.train_rows is not None and recipe.train_rows_per_class is not None:
        raise NLPTransferError(f"{source}: train_rows and train_rows_per_class both choose the training subset; keep "
                               f"one (train_rows_per_class: N draws N rows of each label)")
    cw = recipe.class_weights
    if cw is not None and cw != "balanced" and not (isinstance(cw, list) and all(isinstance(w, (int, float)) for w in cw)):
        raise NLPTransferError(f"{source}: class_weights must be 'balanced' or a list of numbers, got {cw!r}")
    return recipe


def _check_seeds(seeds: list[int] | None, source: str) -> None:
    """``seeds: [1, 2, 3]``: at least one, each >= 0, no repeats (the list's type is checked with the other keys)."""
    if seeds is None:
        return
    if not seeds:
        raise NLPTransferError(f"{source}: seeds must list at least one seed, e.g. seeds: [1, 2, 3] (or remove it)")
    for seed in seeds:
        if seed < 0:
            raise NLPTransferError(f"{source}: seeds must be integers >= 0, got {seed}")
        if seeds.count(seed) > 1:
            raise NLPTransferError(f"{source}: seeds lists {seed} twice; give each seed once, e.g. seeds: [1, 2, 3]")


def _check_label_map(label_map: Any, task: Task, source: str) -> dict[str, str] | None:
    """``{MISC: O, PERSON: PER}``: entity types (no B-/I- prefix) to another type, or to O (dropped)."""
    if not label_map:
        return None
    if not task.label_map:
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


def load_recipe(path_or_values: str | Path | dict | Recipe | None = None, overrides: list[str] | None = None,
                **kwargs: Any) -> Recipe:
    """Build a validated Recipe from a YAML file, a dict or a Recipe, plus ``key=value`` overrides
    (strings, as on the command line) and keyword overrides (``training={"num_train_epochs": 1}``)."""
    source = "recipe"
    given = None
    if isinstance(path_or_values, Recipe):
        values = path_or_values.to_dict()
        source = path_or_values.source or source
        given = set(path_or_values.given)
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
    changed = {}  # what the overrides set, to update a Recipe's record of the keys the user gave
    for key, value in parse_overrides(overrides):
        _set_dotted(values, key, value)
        changed[key] = value
    for key, value in kwargs.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
        changed[key] = value
    if given is None:
        given = _given_keys(values)
    else:  # key=null takes a key back (e.g. training=null for a probe run of a shared recipe)
        given = (given | {part for key, value in changed.items() if value is not None
                          for part in (key, key.split(".")[0])}) - {key for key, value in changed.items() if value is None}
    _check_backend_keys(*_backend_of(values), given, source)  # before the values' own checks: the key is the mistake
    recipe = _build(Recipe, values, "", source)
    recipe.source = source
    recipe.given = frozenset(given)
    return validate(recipe)


def _given_keys(values: dict) -> set[str]:
    """Top-level keys the user set, and one level below for mappings: {"strategy", "strategy.r", "training", ...}.
    A key set to null or an empty mapping counts as not set."""
    given = set()
    for key, value in values.items():
        if value is None or value == {}:
            continue
        given.add(key)
        if isinstance(value, dict):
            given |= {f"{key}.{sub}" for sub, inner in value.items() if inner is not None}
    return given


# The TrainingArguments nlp_transfer sets when a recipe's training: does not (nlp_transfer.training adds the ones that
# depend on the run: output_dir, seed, evaluation, reporting); the curve reads them to count a point's steps.
TRAINING_DEFAULTS = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 5e-5,
    "num_train_epochs": 3,
    "weight_decay": 0.01,
    "warmup_steps": 0.06,  # a float below 1 is a fraction of the total steps
    "logging_steps": 50,
    "save_total_limit": 2,
}


# Recipe keys each backend has no use for; setting one is an error naming the key and the backend (the static
# baselines have their own settings under static:, the probe fits scikit-learn without TrainingArguments).
IGNORED_BY_BACKEND = {
    "static": ("model", "max_length", "strategy", "training", "early_stopping", "trust_remote_code", "stride",
               "label_all_subwords", "mlm_probability", "whole_word_mask", "keep_checkpoints"),
    "probe": ("training", "early_stopping", "stride", "label_all_subwords", "strict", "mlm_probability",
              "whole_word_mask", "keep_checkpoints"),  # a strategy option feature-extraction lacks: its own error
    "trainer": (),
}
BACKEND_NAMES = {"static": "the static-embedding baseline (static:)",
                 "probe": "the scikit-learn probe (strategy feature-extraction)", "trainer": "transformers.Trainer"}
BACKEND_HINTS = {"static": "its settings live under static:", "probe": "it fits a linear model on frozen features",
                 "trainer": ""}


def _backend_of(values: dict) -> tuple[str | None, bool]:
    """(`Recipe.backend` of raw recipe values, or None while they do not say (a bad strategy: reported later), and
    whether the strategy distils)."""
    given = values.get("strategy")
    name = given.get("name") if isinstance(given, dict) else given
    distils = isinstance(name, str) and name in STRATEGIES and STRATEGIES[name].distils  # a static student keeps it
    if values.get("static") is not None:
        return "static", distils
    try:
        return build_strategy(given, lenient=True).backend, distils
    except NLPTransferError:
        return None, distils


def ignored_keys(backend: str | None, distils: bool = False) -> tuple[str, ...]:
    """The recipe keys ``backend`` does nothing with; a static student (strategy distill) keeps its strategy."""
    return tuple(key for key in IGNORED_BY_BACKEND.get(backend, ()) if not (distils and key == "strategy"))


def _check_backend_keys(backend: str | None, distils: bool, given: set[str] | frozenset[str], source: str) -> None:
    for key in ignored_keys(backend, distils):
        if key in given:
            raise NLPTransferError(f"{source}: '{key}' does nothing with {BACKEND_NAMES[backend]}, which this recipe "
                                   f"trains ({BACKEND_HINTS[backend]}); remove it")


def _deep_copy(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _deep_copy(v) for k, v in values.items()}
    if isinstance(values, list):
        return [_deep_copy(v) for v in values]
    return values


def recipe_card(recipe: Recipe):
    """The data card a recipe's ``data:`` names: a card file, several read as one (every row keeps its card's
    language), or a card written inline as a mapping. The one place a recipe's data is resolved."""
    from .data.cards import card_from_dict, load_cards

    if isinstance(recipe.data, dict):
        return card_from_dict(recipe.data, None)
    paths = recipe.data if isinstance(recipe.data, list) else [recipe.data]
    return load_cards([resolve_path(path, recipe) for path in paths])


def resolve_path(path: str, recipe: Recipe) -> Path:
    """A path from a recipe: relative to the working directory, else to the recipe's folder."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists() or not recipe.source or recipe.source == "recipe":
        return candidate
    beside = Path(recipe.source).parent / candidate
    return beside if beside.exists() else candidate
