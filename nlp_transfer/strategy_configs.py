"""Transfer strategies as registered objects, each a small dataclass of its own options.

    strategy: {name: lora, r: 8}      # in a recipe; or `strategy: last-n`, or strategy.name=last-n strategy.n=2

`build_strategy` turns a recipe's ``strategy:`` into the registered class's object: ``full``, ``last-n`` (n),
``feature-extraction`` (probe, pooling, layers, normalize), ``gradual`` (every), ``lora`` (r, alpha, dropout,
target_modules). The layer-rate options (lr_decay, group_lrs, head warm-up) are shared configs that a strategy
declares as base classes (`nlp_transfer.layer_rates`). An option the strategy does not have is an error naming it.

A strategy object knows its ``name``, its `options`, how a report describes it (`describe`), what trains it
(`backend`) and how it changes a model (`apply`: freezing or wrapping, callbacks and optimizer settings as a
`strategies.StrategyPlan`). This module is torch-free (a recipe is checked before torch loads); the torch code
lives in `nlp_transfer.strategies` and is imported when a strategy is applied.

Adding a strategy is one class here, registered with ``@register("name")``, plus its torch behaviour in
`nlp_transfer.strategies`; the recipe (config), training and compare need no change.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .checks import check_value, checked
from .contrastive import END_TO_END_EPOCHS, PAIR_LOSSES
from .errors import NLPTransferError, did_you_mean
from .layer_rates import SHARED_OPTIONS, HeadWarmup, LayerRates

POOLINGS = ("cls", "mean", "max")
PROBES = ("logistic", "head")

STRATEGIES: dict[str, type[Strategy]] = {}  # name -> class, in registration order

# The keys of every `strategy:` mapping in the recipe.yaml of runs saved while all strategies shared one flat set of
# options: such a mapping is read with the keys its strategy lacks left out (they held defaults that did nothing).
SAVED_FLAT_KEYS = frozenset({"name", "probe", "pooling", "layers", "normalize", "n", "every", "r", "alpha", "dropout",
                             "target_modules", "lr_decay", "group_lrs", "head_warmup_steps", "head_warmup_epochs",
                             "head_lr"})


def register(name: str):
    """Class decorator: make a `Strategy` dataclass the strategy ``name`` of recipes."""
    def add(cls: type[Strategy]) -> type[Strategy]:
        if not (isinstance(cls, type) and issubclass(cls, Strategy) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"strategy '{name}': register a dataclass subclassing Strategy, not {cls!r}")
        if STRATEGIES.get(name, cls) is not cls:
            raise ValueError(f"strategy '{name}' is already registered ({STRATEGIES[name].__qualname__})")
        cls.name = name
        STRATEGIES[name] = cls
        return cls
    return add


def strategy_names() -> tuple[str, ...]:
    return tuple(STRATEGIES)


def _one_of(names: list[str]) -> str:
    """['full', 'last-n', 'gradual'] -> 'full, last-n or gradual'."""
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


@dataclass
class Strategy:
    """A registered strategy; subclasses are dataclasses whose fields are its options (with `checked` ranges)."""

    name: ClassVar[str] = ""
    shown: ClassVar[tuple[str, ...]] = ()  # the options that tell runs apart in reports (`describe`)
    adapter: ClassVar[bool] = False  # the trained model is an adapter on the base model (saved as adapter + head)
    distils: ClassVar[bool] = False  # the training rows get a teacher's soft targets first (`nlp_transfer.distillation`)
    opens_layers: ClassVar[bool] = False  # frozen parameters open mid-run (they join the optimizer from the start)

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """Its option names: its own first, then those of the shared configs it declares."""
        shared = [f.name for group in SHARED_OPTIONS if issubclass(cls, group) for f in dataclasses.fields(group)]
        return tuple([f.name for f in dataclasses.fields(cls) if f.name not in shared] + shared)

    @property
    def backend(self) -> str:
        """What trains a recipe with this strategy: ``trainer`` (transformers.Trainer) or ``probe`` (scikit-learn)."""
        return "trainer"

    def fits(self, task) -> bool:
        """Whether ``task`` (a `tasks.base.Task`) can train with this strategy."""
        return True

    def check(self, source: str) -> None:
        """Checks across options, after each option's own type and range; raises NLPTransferError."""

    def check_inputs(self, source: str) -> None:
        """Checks of the files the strategy reads, when a run starts (before its data is read): a shipped recipe may
        name one that is made first, e.g. a teacher run; raises NLPTransferError."""

    def check_data(self, problem_type: str, pairs: bool, source: str) -> None:
        """Refuse data this strategy cannot train on (``problem_type`` of the card; ``pairs``: sentence pairs),
        before anything trains; raises NLPTransferError."""

    def to_dict(self) -> dict[str, Any]:
        """The ``strategy:`` mapping of a saved recipe.yaml."""
        values = dataclasses.asdict(self)
        return {"name": self.name, **{key: values[key] for key in self.options()}}

    def describe(self) -> str:
        """The options that distinguish a run's strategy in reports, e.g. ``n 2`` or ``lr decay 0.8``."""
        shown = {key for cls in type(self).__mro__ for key in vars(cls).get("shown", ())}
        parts = []
        for key in self.options():
            value = getattr(self, key)
            if key not in shown or value is None:
                continue
            if isinstance(value, dict):
                value = "/".join(f"{v:g}" for v in value.values())
            elif isinstance(value, float):
                value = f"{value:.4g}"  # a searched value: 0.9498, not 0.9497859536643813
            parts.append(f"{key.replace('_', ' ')} {value}")
        return ", ".join(parts)

    def adapt(self, model, peft_task_type: str | None):
        """Freeze (or wrap) ``model`` for training; returns the model to train. Default: everything trains."""
        return model

    def callbacks(self) -> list:
        """The strategy's own TrainerCallbacks (the shared head warm-up adds its own)."""
        return []

    def plan_options(self) -> dict[str, Any]:
        """StrategyPlan settings from the shared configs (`nlp_transfer.layer_rates`)."""
        return {}

    def apply(self, model, peft_task_type: str | None = None):
        """Freeze (or wrap with LoRA) ``model``; returns the model to train and its `strategies.StrategyPlan`."""
        from .strategies import make_plan

        model = self.adapt(model, peft_task_type)
        return model, make_plan(self.name, self.callbacks(), opens_layers=self.opens_layers, **self.plan_options())


@register("full")
@dataclass
class Full(LayerRates, HeadWarmup, Strategy):
    """Everything trains."""


@register("feature-extraction")
@dataclass
class FeatureExtraction(Strategy):
    """A frozen encoder: pooled features and a scikit-learn probe (``probe: logistic``), or the task head trained
    alone in Trainer (``probe: head``)."""

    shown: ClassVar[tuple[str, ...]] = ("probe",)

    probe: str = checked("logistic", choices=PROBES)  # logistic (scikit-learn) | head (the task head in Trainer)
    pooling: str = checked("mean", choices=POOLINGS)
    layers: list[int] = field(default_factory=lambda: [-1])
    normalize: bool = False

    @property
    def backend(self) -> str:
        return "probe" if self.probe == "logistic" else "trainer"

    def embedding(self) -> dict[str, Any]:
        """The probe's feature settings (`encoders.EmbedSettings` fields)."""
        return {"pooling": self.pooling, "layers": list(self.layers), "normalize": self.normalize}

    def probe_grid(self) -> tuple[float, ...] | None:
        """The probe's C values: None, the usual grid, each scored on the evaluation split (the best is kept)."""
        return None

    def probe_encoder(self, recipe, texts: list[str], labels: list[int], folder, device: str):
        """The encoder the probe's features come from: the recipe's model, frozen. Returns (name or path, what
        metrics.json records of its training: None, as nothing trains)."""
        return recipe.model, None

    def adapt(self, model, peft_task_type: str | None):
        from .strategies import freeze_encoder

        freeze_encoder(model)
        return model


@register("last-n")
@dataclass
class LastN(LayerRates, HeadWarmup, Strategy):
    """Embeddings and the lower layers frozen; the top ``n`` encoder layers and the head train."""

    shown: ClassVar[tuple[str, ...]] = ("n",)

    n: int = checked(2, low=1)  # how many top encoder layers train

    def adapt(self, model, peft_task_type: str | None):
        from .strategies import train_top_layers

        train_top_layers(model, self.n)
        return model


@register("gradual")
@dataclass
class Gradual(LayerRates, Strategy):
    """The head first, then one more layer group from the top every ``every`` steps, or every epoch."""

    shown: ClassVar[tuple[str, ...]] = ("every",)
    opens_layers: ClassVar[bool] = True

    every: Any = "epoch"  # a positive number of steps, or "epoch"

    def check(self, source: str) -> None:
        every = self.every
        if every != "epoch" and not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
            raise NLPTransferError(f"{source}: strategy.every must be 'epoch' or a positive number of steps, "
                                   f"got {every!r}")
        super().check(source)

    def callbacks(self) -> list:
        from .strategies import make_gradual_unfreezing

        return [make_gradual_unfreezing(self.every)]


@register("lora")
@dataclass
class Lora(Strategy):
    """Low-rank adapters (peft) and a fully trained head (with the encoder's pooler, ``pooler: true``)."""

    shown: ClassVar[tuple[str, ...]] = ("r",)
    adapter: ClassVar[bool] = True

    r: int = checked(8, low=1)  # rank
    alpha: float = checked(16, low=0, low_open=True)  # scaling (alpha / r)
    dropout: float = checked(0.1, low=0, high=1, high_open=True)  # dropout on the adapter input
    target_modules: list[str] | None = None  # module names; None = peft's default for the architecture
    # train the encoder's pooler with the head (BERT-family models have one): sentence-transformers checkpoints such
    # as all-MiniLM-L6-v2 ship an untrained pooler, and through it frozen LoRA stayed at the majority class
    pooler: bool = True

    def fits(self, task) -> bool:
        return task.peft_task_type is not None

    def adapt(self, model, peft_task_type: str | None):
        from .strategies import apply_lora

        return apply_lora(model, self, peft_task_type)


@register("contrastive")
@dataclass
class Contrastive(Strategy):
    """Few-shot contrastive fine-tuning (the SetFit recipe): the encoder trains on pairs of the labelled rows (same
    label = similar) with sentence-transformers, then a scikit-learn probe fits on its pooled features
    (`nlp_transfer.contrastive`). Single-label classification of single texts."""

    shown: ClassVar[tuple[str, ...]] = ("iterations", "max_pairs")

    iterations: int = checked(20, low=1)  # per iteration every row gets one same-label and one other-label pair
    max_pairs: int | None = checked(2000, low=1)  # a seeded sample of the pairs when there are more (null: all)
    epochs: int = checked(1, low=1)
    batch_size: int = checked(16, low=1)  # pairs per step
    # null: from the encoder's width (`contrastive.pair_learning_rate`): 1e-4 below hidden size 768 (SetFit's 2e-5
    # barely moves MiniLM-L6 in 40 steps), 2e-5 from 768 up (1e-4 over-fits MPNet's pairs); benchmarks/RESULTS.md
    learning_rate: float | None = checked(None, low=0, low_open=True)
    pooling: str = checked("mean", choices=POOLINGS)
    loss: str = checked("cosine", choices=tuple(PAIR_LOSSES))  # the pairs' loss (`contrastive.PAIR_LOSSES`)
    # after the pairs, the encoder trains through a linear head on the rows (`contrastive.train_through_head`)
    end_to_end: bool = False
    end_to_end_epochs: int = checked(END_TO_END_EPOCHS, low=1)
    # L2-normalise the probe's features: +0.9 points on MiniLM-L6 (higher on 5 of 5 few-shot subsets), no cost on MPNet
    # (within 0.25 points on each of 5): the default since 2026-12-06 (benchmarks/RESULTS.md, few-shot against SetFit)
    normalize: bool = True
    # the probe's C, fixed: after pair training the few rows are separated and every C fits them, so nothing is
    # chosen on the evaluation split (1.0: scikit-learn's default, SetFit's head); null: the grid, chosen there
    C: float | None = checked(1.0, low=0, low_open=True)

    @property
    def backend(self) -> str:
        return "probe"

    def probe_grid(self) -> tuple[float, ...] | None:
        return None if self.C is None else (self.C,)

    def check(self, source: str) -> None:
        from .contrastive import check_installed

        if self.end_to_end_epochs != END_TO_END_EPOCHS and not self.end_to_end:
            raise NLPTransferError(f"{source}: strategy.end_to_end_epochs counts the epochs of the end-to-end "
                                   f"phase; set strategy.end_to_end=true with it, or drop it")
        check_installed()

    def check_data(self, problem_type: str, pairs: bool, source: str) -> None:
        from .tasks.problems import exclusive_labels

        exclusive = exclusive_labels(problem_type)
        if not exclusive or pairs:
            what = "sentence pairs" if pairs else f"{problem_type.replace('_', '-')} data"
            raise NLPTransferError(f"{source}: strategy contrastive draws same-label / other-label pairs from "
                                   f"single-label rows of one text; this is {what}: use feature-extraction or full")

    def embedding(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "layers": [-1], "normalize": self.normalize}

    def probe_encoder(self, recipe, texts: list[str], labels: list[int], folder, device: str):
        """Fine-tune the recipe's encoder on pairs of ``texts`` and save it to ``folder``; returns (its path,
        what metrics.json records of the pair training)."""
        from .contrastive import fine_tune_encoder

        info = fine_tune_encoder(recipe.model, texts, labels, self, recipe.seed, recipe.max_length, folder,
                                 recipe.trust_remote_code, device)
        return str(folder), info


@register("distill")
@dataclass
class Distill(LayerRates, HeadWarmup, Strategy):
    """Everything trains, towards a trained teacher run's predictions as well as the gold labels: the loss is
    ``soft_weight`` x T^2 x KL(teacher || student), both softened by ``temperature`` T, plus (1 - ``soft_weight``) x
    cross-entropy on the labelled rows. The teacher also labels texts without gold labels: ``unlabelled`` (a text
    file, one text per line) and ``augment`` copies of each training text (Tang et al. 2019: each word masked with
    ``mask_prob``, then with ``ngram_prob`` an n-gram of 1 to 5 words kept; drawn with ``augment_seed``, the same for
    every run seed). Its predictions are computed once and cached (`nlp_transfer.distillation`). Single-label classification of single texts."""

    distils: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("teacher", "augment")

    teacher: str | None = None  # a trained run folder of this task (any backend: fine-tuned, probe, static)
    temperature: float = checked(2.0, low=0, low_open=True)
    soft_weight: float = checked(0.5, low=0, high=1)
    unlabelled: str | None = None  # a file of unlabelled texts for the teacher to label (as predict --input reads)
    augment: int = checked(0, low=0)  # augmented copies of every training text
    augment_seed: int = checked(0, low=0)  # the copies' seed: not the run's, so every seed's run shares the teacher's labels
    mask_prob: float = checked(0.1, low=0, high=1)
    ngram_prob: float = checked(0.25, low=0, high=1)

    def fits(self, task) -> bool:
        return task.distils

    def check(self, source: str) -> None:
        if not self.teacher:
            raise NLPTransferError(f"{source}: strategy distill needs strategy.teacher: the folder of a trained run "
                                   f"(e.g. nlp-transfer train with a larger model first)")
        super().check(source)

    def check_inputs(self, source: str) -> None:
        from pathlib import Path

        if not (Path(self.teacher) / "nlp_transfer.json").is_file():
            raise NLPTransferError(f"{source}: strategy.teacher '{self.teacher}' is not a trained run folder (no "
                                   f"nlp_transfer.json); give the output_dir of a finished nlp-transfer train")
        if self.unlabelled is not None and not Path(self.unlabelled).is_file():
            raise NLPTransferError(f"{source}: strategy.unlabelled '{self.unlabelled}' is not a file; give a text "
                                   f"file with one text per line")

    def check_data(self, problem_type: str, pairs: bool, source: str) -> None:
        from .tasks.problems import exclusive_labels

        if not exclusive_labels(problem_type) or pairs:
            what = "sentence pairs" if pairs else f"{problem_type.replace('_', '-')} data"
            raise NLPTransferError(f"{source}: strategy distill learns a teacher's label distribution on "
                                   f"single-label rows of one text; this is {what}: use full")

    def soft_loss(self):
        """(logits, labels, soft targets) -> this strategy's loss (`strategies.distillation_loss`), for every student:
        the Trainer's (through the plan) and the static BiLSTM's."""
        from functools import partial

        from .strategies import distillation_loss

        return partial(distillation_loss, temperature=self.temperature, soft_weight=self.soft_weight)

    def plan_options(self) -> dict[str, Any]:
        return {**super().plan_options(), "soft_loss": self.soft_loss()}


def build_strategy(value: Any, source: str = "recipe", where: str = "strategy.", lenient: bool = False) -> Strategy:
    """The strategy object of a recipe's ``strategy:`` (a mapping with ``name``, or a name alone), each option
    checked against its type and range. An option the strategy lacks is an error, except: a null value (null takes
    a key back), a shared option the strategy accepts and ignores (``head_lr``), and the other strategies' keys in
    a recipe saved with the old flat options (`SAVED_FLAT_KEYS`). ``lenient`` leaves out every unknown option
    (describing old runs)."""
    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise NLPTransferError(f"{source}: '{where.rstrip('.')}' must be a mapping of keys to values, e.g. "
                               f"{{name: lora, r: 8}}, or a strategy name")
    name = check_value(value.get("name", "full"), str, {"choices": strategy_names()}, f"{where}name", source)
    cls = STRATEGIES[name]
    options = cls.options()
    fields_by_name = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    ignored = {key for group in SHARED_OPTIONS if not issubclass(cls, group) for key in group.ignored_elsewhere}
    saved_flat = SAVED_FLAT_KEYS <= set(value)
    kwargs = {}
    for key, item in value.items():
        if key == "name":
            continue
        if key in options:
            kwargs[key] = check_value(item, hints[key], dict(fields_by_name[key].metadata), f"{where}{key}", source)
        elif not (item is None or lenient or saved_flat or key in ignored):
            raise NLPTransferError(f"{source}: {_missing_option(cls, key, where)}")
    strategy = cls(**kwargs)
    strategy.check(source)
    return strategy


def _missing_option(cls: type[Strategy], key: Any, where: str) -> str:
    """Why strategy ``cls`` refuses ``key``: a shared config it does not declare, another strategy's option, or
    an unknown key (a typo)."""
    options = cls.options()
    listing = f"its options: {', '.join(options)}" if options else "it has no options"
    for group in SHARED_OPTIONS:
        if key in {f.name for f in dataclasses.fields(group)}:
            accepting = _one_of([n for n, c in STRATEGIES.items() if issubclass(c, group)])
            return f"{where}{key}: strategy {cls.name} {group.refusal.format(accepting=accepting)}"
    elsewhere = [n for n, c in STRATEGIES.items() if key in c.options()]
    if elsewhere:
        return (f"{where}{key}: strategy {cls.name} has no option '{key}'{did_you_mean(key, options, where)} "
                f"({listing}); '{key}' is an option of {_one_of(elsewhere)}")
    return (f"unknown key '{where}{key}'{did_you_mean(key, ('name', *options), where)} (strategy {cls.name} has no "
            f"option '{key}'; {listing})")


def describe_saved(values: Any) -> str:
    """`Strategy.describe` of a saved recipe's ``strategy:`` (old flat mappings too); "" when it cannot be read."""
    try:
        return build_strategy(values, lenient=True).describe()
    except NLPTransferError:
        return ""
