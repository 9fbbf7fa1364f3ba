"""The Trainer wrapper: one place that turns a Recipe into a `transformers.Trainer` run.

    from nlp_transfer import train
    result = train("recipes/sst2_demo.yaml", ["training.num_train_epochs=1"])
    print(result.metrics["eval"]["accuracy"])

Runs unchanged on one CPU and under ``accelerate launch`` / ``torchrun`` (DDP): Trainer handles the
processes, every rank computes the same metrics on the gathered predictions, and only the main
process writes the output directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rundir
from .runtime import Runtime, is_main_process, world_size
from .version import __version__
from .config import TRAINING_DEFAULTS, Recipe, load_recipe, resolve_path
from .data.adapters import DynamicPaddingCollator
from .data.cards import card_from_dict, load_card, merge_cards
from .data.readers import load_data, read_labelled
from .errors import NLPTransferError, did_you_mean
from .io import remove_tree, write_json_atomic
from .models import load_tokenizer
from .outputs import STAGING, finish, run_record
from .reports import model_card
from .tasks import get_task
from .tasks.base import greater_is_better

SIDECAR = "nlp_transfer.json"
# Trainer's evaluation entries that are timings, not scores (throughput is kept apart under "predict")
TRAINER_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time")


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict[str, Any]


def _build_trainer_class():
    from transformers import Trainer

    class TaskTrainer(Trainer):
        """Stock Trainer, plus: a task's own loss (class weights), and evaluation read in dataset order."""

        def __init__(self, *args, task_loss=None, strategy=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.strategy = strategy  # a strategies.StrategyPlan: optimizer groups and schedule (None: stock)
            self.head_warmup = strategy.head_warmup if strategy else None  # its stage length is resolved here
            # Our heads return a batch *mean* loss and ignore num_items_in_batch, but their forward() takes
            # **kwargs, so Trainer would multiply the loss by the number of processes under DDP (2x loss and
            # gradients on 2 ranks). Declaring that the model takes no loss kwargs keeps the mean as it is.
            self.model_accepts_loss_kwargs = False
            self.task_loss = task_loss

        def _get_eval_sampler(self, eval_dataset):
            # Trainer groups *evaluation* batches by length too when train_sampling_strategy="group_by_length",
            # in a shuffled order; predictions could then not be matched back to their rows. Tasks sort the
            # evaluation set by length themselves (same saving on padding) and it is read in order.
            from torch.utils.data import SequentialSampler

            return SequentialSampler(eval_dataset)

        def create_optimizer(self, model=None):
            # Our own groups when a strategy needs them: per-depth (lr_decay) or per-group (group_lrs) rates, frozen
            # parameters included from the start (gradual unfreezing, head warm-up), head apart (two-stage schedule).
            if self.optimizer is None and self.strategy is not None and self.strategy.custom_optimizer:
                from .strategies import parameter_groups

                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
                optimizer_kwargs.pop("lr", None)
                groups = parameter_groups(self.model, self.args.learning_rate, self.args.weight_decay,
                                          self.strategy.lr_decay, set(self.get_decay_parameter_names(self.model)),
                                          self.strategy.all_parameters, self.strategy.group_lrs)
                self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
                return self.optimizer
            return super().create_optimizer(model) if model is not None else super().create_optimizer()

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.head_warmup is None or self.lr_scheduler is not None:
                return super().create_scheduler(num_training_steps, optimizer)
            from .strategies import two_stage_schedule

            if self.args.lr_scheduler_type != "linear":
                raise NLPTransferError("head warm-up (two-stage) uses the linear schedule; remove training.lr_scheduler_type")
            stage = self.head_warmup.steps
            if stage is None:  # epochs -> steps, from this run's steps per epoch
                per_epoch = num_training_steps / max(self.args.num_train_epochs, 1e-9)
                if self.args.max_steps > 0:
                    raise NLPTransferError("with training.max_steps, give the warm-up as head_warmup_steps")
                stage = self.head_warmup.steps = max(1, round(self.head_warmup.epochs * per_epoch))
            if stage >= num_training_steps:
                raise NLPTransferError(f"the head warm-up ({stage} steps) is as long as the whole run "
                                       f"({num_training_steps} steps); shorten it or train longer")
            warmup = self.args.get_warmup_steps(num_training_steps - stage)
            self.lr_scheduler = two_stage_schedule(optimizer or self.optimizer, stage, num_training_steps, warmup,
                                                   self.strategy.head_lr)
            self._created_lr_scheduler = True
            return self.lr_scheduler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.task_loss is None or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = self.task_loss(outputs.logits, labels)
            return (loss, outputs) if return_outputs else loss

    return TaskTrainer


def training_arguments(recipe: Recipe, main_metric: str, has_eval: bool, output_dir: str | Path | None = None):
    """Our defaults, then the recipe's ``training:`` keys on top, as TrainingArguments (checkpoints and logs go to
    ``output_dir``, by default the recipe's)."""
    import importlib.util

    from transformers import TrainingArguments

    user = dict(recipe.training)
    values: dict[str, Any] = {
        "output_dir": str(output_dir or recipe.output_dir),
        **TRAINING_DEFAULTS,
        "eval_strategy": "epoch" if has_eval else "no",
        "seed": recipe.seed,
        "train_sampling_strategy": "group_by_length",
        "length_column_name": "length",
        "remove_unused_columns": False,  # our collator keeps exactly the model's inputs
        "batch_eval_metrics": True,  # stream metrics per batch: no full logits held in memory
        "dataloader_pin_memory": _cuda_available(),
        "report_to": ["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
    }
    values.update(user)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _cuda_available() and "use_cpu" not in user:
        # Several processes but no GPU (accelerate launch --multi_gpu / torchrun on CPUs): without use_cpu,
        # every process would silently train alone with world_size 1. use_cpu gives gloo DDP across them.
        values["use_cpu"] = True
    if has_eval and values.get("eval_strategy", "no") != "no":
        values.setdefault("load_best_model_at_end", True)
        values.setdefault("metric_for_best_model", main_metric)
        if "save_strategy" not in user:
            values["save_strategy"] = values["eval_strategy"]
        if "save_steps" not in user and "eval_steps" in user:
            values["save_steps"] = user["eval_steps"]
        values.setdefault("greater_is_better", greater_is_better(values["metric_for_best_model"]))
    else:
        values["eval_strategy"] = "no"
        values["load_best_model_at_end"] = False
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError) as exc:
        message = str(exc).strip().splitlines()[0]
        raise NLPTransferError(f"{recipe.source or 'recipe'}: training: {message}") from None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


def weights_fingerprint(model) -> str:
    """A hash of all weights: equal on every DDP rank when the ranks stayed in sync."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_card_for(recipe: Recipe):
    if isinstance(recipe.data, dict):
        return card_from_dict(recipe.data, None)
    if isinstance(recipe.data, list):  # several cards read as one; every row keeps its card's language
        return merge_cards([load_card(resolve_path(path, recipe)) for path in recipe.data])
    return load_card(resolve_path(recipe.data, recipe))


def _eval_set_cards(recipe: Recipe, card) -> dict[str, tuple[Any, str]]:
    """``eval_sets`` as name -> (card, split), checked before any training so a typo costs seconds, not a run."""
    out = {}
    for name, entry in (recipe.eval_sets or {}).items():
        paths = entry["data"] if isinstance(entry["data"], list) else [entry["data"]]
        cards = []
        for path in paths:
            try:
                cards.append(load_card(resolve_path(path, recipe)))
            except NLPTransferError as exc:
                raise NLPTransferError(f"{recipe.source}: eval_sets.{name}: {exc}") from None
        eval_card = merge_cards(cards)
        if eval_card.task != card.task:
            raise NLPTransferError(f"{recipe.source}: eval_sets.{name}: {eval_card.source} holds {eval_card.task} data "
                                   f"but the model is trained on {card.task}; use a card of the same task")
        if entry["split"] not in eval_card.splits:
            raise NLPTransferError(f"{recipe.source}: eval_sets.{name}: {eval_card.source} has no split '{entry['split']}'"
                                   f"{did_you_mean(entry['split'], eval_card.splits)} (splits: {', '.join(eval_card.splits)})")
        out[name] = (eval_card, entry["split"])
    return out


def _check_eval_set_rows(eval_cards: dict[str, tuple[Any, str]], data, label_map, task) -> None:
    """Read every eval set now, as final scoring will, so a bad row or an unknown label stops the run before it
    trains rather than after (NER: entity types the model lacks are left out of the scores then, not errors)."""
    for eval_card, split in eval_cards.values():
        if task.label_map:  # NER (eval cards hold the recipe's task: checked by _eval_set_cards)
            read_labelled(eval_card, split, label_map=label_map)
        else:
            read_labelled(dataclasses.replace(eval_card, problem_type=data.problem_type), split, data.label_names)


def _subsample(data, recipe: Recipe) -> None:
    """Keep a seeded random ``train_rows`` of the training split (in file order), the same on every rank. With
    ``train_rows_stratified`` and single-label data each label keeps its share of the split (`stratified_choice`);
    ``train_rows_per_class`` keeps that many rows of each label."""
    import numpy as np

    rows = data.splits[recipe.train_split]  # train_rows is a positive integer (config checks it)
    rng = np.random.default_rng(recipe.seed)
    single_label = data.problem_type == "single_label" and "label" in rows.column_names
    if recipe.train_rows_per_class is not None:
        if not single_label:
            raise NLPTransferError(f"{recipe.source or 'recipe'}: train_rows_per_class draws rows per label of "
                                   f"single-label data; this is {data.problem_type} data: use train_rows")
        data.splits[recipe.train_split] = rows.select(
            per_class_choice(rows["label"], recipe.train_rows_per_class, rng, data.label_names, recipe.source))
    elif recipe.train_rows < len(rows):
        data.splits[recipe.train_split] = rows.select(
            _draw(rows, recipe.train_rows, rng, recipe.train_rows_stratified and single_label))


EVAL_SAMPLE_SEED = 0  # eval_rows: one sample for every run and seed, so their scores compare


def _sample_eval(data, recipe: Recipe) -> None:
    """Keep ``eval_rows`` rows of the evaluation split (in file order), drawn with a fixed seed (not the run's) and,
    for single-label data, keeping the label shares; every run of the recipe is scored on the same rows."""
    import numpy as np

    rows = data.splits[recipe.eval_split]
    if recipe.eval_rows >= len(rows):
        return
    stratified = data.problem_type == "single_label" and "label" in rows.column_names
    data.splits[recipe.eval_split] = rows.select(
        _draw(rows, recipe.eval_rows, np.random.default_rng(EVAL_SAMPLE_SEED), stratified))


def _draw(rows, count: int, rng, stratified: bool):
    """``count`` sorted row indices of ``rows``: keeping each label's share (`stratified_choice`) or plain random."""
    import numpy as np

    if stratified:
        return stratified_choice(rows["label"], count, rng)
    return np.sort(rng.choice(len(rows), count, replace=False))


def per_class_choice(labels, count: int, rng, label_names: list[str], source: str | None = None):
    """``count`` row indices of every label (sorted), drawn without replacement; a label with fewer rows is an
    error naming it."""
    import numpy as np

    labels = np.asarray(labels)
    chosen = []
    for label, name in enumerate(label_names):
        members = np.flatnonzero(labels == label)
        if len(members) < count:
            raise NLPTransferError(f"{source or 'recipe'}: train_rows_per_class is {count} but label '{name}' has "
                                   f"{len(members)} training rows; lower it to at most {len(members)}")
        chosen.append(rng.choice(members, count, replace=False))
    return np.sort(np.concatenate(chosen))


def stratified_choice(labels, count: int, rng):
    """``count`` row indices (sorted) drawn per label in proportion to the label's rows: each label gets the floor
    of its share, the rows left over go to the largest remainders (ties in a seeded random order)."""
    import numpy as np

    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    shares = sizes * count / len(labels)
    quota = np.floor(shares).astype(int)
    order = rng.permutation(len(classes))
    order = order[np.argsort(-(shares - quota)[order], kind="stable")]
    quota[order[:count - int(quota.sum())]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == label), size, replace=False)
              for label, size in zip(classes, quota) if size]
    return np.sort(np.concatenate(chosen))


def _with_problem_type(recipe: Recipe, card):
    """The card as this recipe reads it: a copy with the recipe's problem_type when it sets one (cards are never
    changed after loading)."""
    if recipe.problem_type == "auto" or recipe.problem_type == card.problem_type:
        return card
    return dataclasses.replace(card, problem_type=recipe.problem_type)


def train(recipe: Recipe | str | Path | dict, overrides: list[str] | None = None, *, callbacks: list | None = None,
          **kwargs: Any) -> RunResult:
    """Fine-tune the recipe's model on its data card; returns the output directory and metrics.

    Everything is checked before anything is written: the recipe's values, the data cards, the model's config
    and tokenizer, ``max_length`` against the model's positions, the data itself and the TrainingArguments.
    Only then does the run folder change (see `nlp_transfer.rundir`). With ``seeds`` it trains once per seed
    (`nlp_transfer.seeds`) and the result's metrics are the seeds summary (seeds.json).

    ``callbacks``: more `transformers.TrainerCallback` objects for the Trainer backend, after the strategy's own
    (`nlp_transfer.tune` reports each evaluation to Optuna's pruner this way); the probe and static backends have
    no Trainer and ignore them."""
    recipe = load_recipe(recipe, overrides, **kwargs)
    if recipe.seeds is not None:  # once per seed into output_dir/seed-N, then output_dir/seeds.json
        from .seeds import train_seeds

        return RunResult(Path(recipe.output_dir), train_seeds(recipe, lambda one: train(one, callbacks=callbacks)))
    card = _load_card_for(recipe)
    task = get_task(recipe.task)
    if card.task not in task.card_tasks:
        raise NLPTransferError(f"{recipe.source}: the recipe's task is {recipe.task} but {card.source} holds {card.task} data; "
                               f"use a matching data card or task")
    card = _with_problem_type(recipe, card)
    has_eval = recipe.eval_split in card.splits
    for split in [recipe.train_split] + ([recipe.test_split] if recipe.test_split else []):
        if split not in card.splits:
            raise NLPTransferError(f"{card.source}: no '{split}' split{did_you_mean(split, card.splits)}; "
                                   f"set train_split/test_split in the recipe or add the split to the card")
    eval_cards = _eval_set_cards(recipe, card)
    backend = recipe.backend
    probe = backend == "probe"
    if backend != "trainer" and world_size() > 1:
        raise NLPTransferError(f"{recipe.source}: the {backend} backend runs in one process; start it with "
                               f"nlp-transfer train, not under accelerate launch / torchrun")
    if probe and recipe.class_weights is not None and card.problem_type != "single_label":
        raise NLPTransferError(f"{recipe.source}: the probe weighs classes for single-label data only; remove "
                               f"class_weights or train with strategy full")
    if backend != "trainer" and not has_eval:
        chooser = "static baselines choose C / the best epoch" if backend == "static" else \
            "the probe chooses its regularisation"
        raise NLPTransferError(f"{card.source}: {chooser} on '{recipe.eval_split}'; add that split to the card or set "
                               f"eval_split")
    if is_main_process():
        rundir.recover(recipe.output_dir)
    run = rundir.plan(recipe.output_dir, recipe.resume, recipe.overwrite, _inputs(recipe, card, eval_cards),
                      recipe.source or "recipe", checkpoints=backend == "trainer")
    if run.finished:
        return _finished_run(run)
    static_config = None
    if backend == "static":
        from .static.baselines import check_static

        static_config = check_static(recipe)
    else:
        check_model(recipe)
    # the test split is read now too, so a label it alone has (or a bad row) stops the run before it starts
    splits = [recipe.train_split] + ([recipe.eval_split] if has_eval else [])
    splits += [recipe.test_split] if recipe.test_split and recipe.test_split not in splits else []
    data = load_data(card, splits, recipe.train_split, label_map=recipe.label_map)
    _check_eval_set_rows(eval_cards, data, recipe.label_map, task)
    recipe.strategy.check_data(data.problem_type, "text_pair" in data.splits[recipe.train_split].column_names,
                               recipe.source or "recipe")
    if recipe.train_rows is not None or recipe.train_rows_per_class is not None:
        _subsample(data, recipe)
    if recipe.eval_rows is not None and has_eval:
        _sample_eval(data, recipe)
    if static_config is not None:  # GloVe / word2vec / fastText baselines: same cards, same metrics.json
        from .static.baselines import train_static

        return _run_once(run, recipe, lambda: train_static(recipe, card, data, run.work, static_config, eval_cards))
    if probe:
        from .probe import train_probe

        return _run_once(run, recipe, lambda: train_probe(recipe, card, data, run.work, eval_cards=eval_cards))
    return _train_with_trainer(recipe, card, task, data, has_eval, eval_cards, run, callbacks)


def _run_once(run: rundir.RunPlan, recipe: Recipe, body) -> RunResult:
    """A single-process backend: begin the run folder, train, finish it (swapping out a replaced run)."""
    rundir.begin(run, _record(recipe))
    try:
        metrics = body()
    except BaseException:
        rundir.abandon(run)
        raise
    rundir.finish(run)
    return RunResult(run.target, metrics)


def _record(recipe: Recipe) -> dict[str, Any]:
    model = recipe.static.get("vectors") if recipe.backend == "static" else recipe.model
    return {"task": recipe.task, "backend": recipe.backend, "model": model, "nlp_transfer_version": __version__}


def _finished_run(run: rundir.RunPlan) -> RunResult:
    import json

    print(f"nlp-transfer: {run.target} is a finished run; resume=true has nothing to do (overwrite=true trains it "
          f"again, the old run staying until the new one finishes)", flush=True)
    path = run.target / "metrics.json"
    return RunResult(run.target, json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {})


def _inputs(recipe: Recipe, card, eval_cards: dict[str, tuple[Any, str]]) -> list[Path]:
    """Every path the run reads: a folder holding one of them is never replaced by overwrite=true."""
    paths = [Path(recipe.source)] if recipe.source and recipe.source != "recipe" else []
    for each, splits in [(card, list(card.splits))] + [(c, [s]) for c, s in eval_cards.values()]:
        for part in each.parts or [each]:
            if part.path is not None:
                paths.append(Path(part.path))
            if part.format != "datasets":
                paths += [Path(part.split_path(split)) for split in splits if split in part.splits]
    model = Path(recipe.model).expanduser()
    if model.exists():
        paths.append(model)
    if isinstance(recipe.static, dict) and isinstance(recipe.static.get("vectors"), str):
        paths.append(resolve_path(recipe.static["vectors"], recipe))
    return paths


def check_model(recipe: Recipe):
    """The model's config loads, and ``max_length`` fits its position embeddings; returns the config."""
    from .models import load_config, max_positions

    config = load_config(recipe.model, recipe.trust_remote_code)
    limit = max_positions(config)
    if limit is not None and recipe.max_length > limit:
        raise NLPTransferError(f"{recipe.source or 'recipe'}: max_length {recipe.max_length} is longer than {recipe.model} "
                               f"reads ({limit} positions); set max_length <= {limit} (long texts are split into "
                               f"windows where the task supports it)")
    return config


def _train_with_trainer(recipe: Recipe, card, task, data, has_eval: bool, eval_cards, run: rundir.RunPlan,
                        callbacks: list | None = None) -> RunResult:
    from transformers import EarlyStoppingCallback, set_seed

    implementation = task.implementation()
    main_metric = implementation.main_metric(data.problem_type)
    _check_metric(recipe, implementation.metric_names(data.problem_type), data.problem_type)
    if recipe.early_stopping.patience is not None and not has_eval:
        raise NLPTransferError(f"{recipe.source}: early_stopping needs an '{recipe.eval_split}' split in the data card")
    args = training_arguments(recipe, recipe.early_stopping.metric or main_metric, has_eval, run.work)
    tokenizer = load_tokenizer(recipe.model, recipe.trust_remote_code, for_words=task.words_input)
    # every check is done: only now does the run folder change (the main process writes; the others wait for it)
    args.distributed_state.wait_for_everyone()  # every rank has planned from the same, untouched folder
    if args.should_save:
        rundir.begin(run, _record(recipe))
    args.distributed_state.wait_for_everyone()
    try:
        metrics = _train_in(run, recipe, card, task, data, has_eval, eval_cards, args, tokenizer, main_metric,
                            EarlyStoppingCallback, set_seed, callbacks)
    except BaseException:
        if args.should_save:
            rundir.abandon(run)
        raise
    if args.should_save:
        rundir.finish(run)
    return RunResult(run.target, metrics)


def _train_in(run, recipe, card, task, data, has_eval, eval_cards, args, tokenizer, main_metric, EarlyStoppingCallback,
              set_seed, extra_callbacks=None) -> dict[str, Any]:
    checkpoint = run.checkpoint
    set_seed(recipe.seed)  # before the head is created, so the same seed gives the same run
    prepared = task.implementation().prepare(recipe, data, tokenizer, has_eval)
    prepared.model, strategy = recipe.strategy.apply(prepared.model, task.peft_task_type)
    callbacks = list(strategy.callbacks)
    if recipe.early_stopping.patience is not None:
        callbacks.append(EarlyStoppingCallback(recipe.early_stopping.patience, recipe.early_stopping.threshold))
    callbacks += list(extra_callbacks or [])

    with _tensorboard_dir(run.work / "logs"):  # read when Trainer creates its callbacks
        trainer = _build_trainer_class()(
            model=prepared.model, args=args, train_dataset=prepared.train_set, eval_dataset=prepared.eval_set,
            processing_class=tokenizer,
            data_collator=prepared.collator or DynamicPaddingCollator(tokenizer, 8 if (args.fp16 or args.bf16) else None,
                                                                      token_labels=prepared.token_labels),
            compute_metrics=prepared.metrics, callbacks=callbacks, task_loss=prepared.loss,
            preprocess_logits_for_metrics=prepared.preprocess_logits, strategy=strategy,
        )
    if args.should_save:
        eval_rows = len(data.splits[recipe.eval_split]) if has_eval else 0
        replacing = " (replacing the run there when it finishes)" if run.replacing else ""
        print(f"nlp-transfer: training {recipe.model} on {card.name} ({len(data.splits[recipe.train_split])} train rows, "
              f"{eval_rows} {recipe.eval_split} rows, {prepared.summary}) -> {run.target}{replacing}"
              + (f", resuming from {Path(checkpoint).name}" if checkpoint else ""), flush=True)
    before = None
    if prepared.evaluate_before and has_eval and checkpoint is None:
        before = _derived(task, {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()})
        if args.should_save:
            print(f"nlp-transfer: before training: {_brief(before)}", flush=True)
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - started
    eval_metrics = trainer.evaluate() if has_eval else {}

    metrics = _collect_metrics(recipe, card, data.problem_type, main_metric, trainer, train_output, train_seconds,
                               eval_metrics, prepared.metrics, checkpoint)
    metrics["eval"] = _derived(task, metrics["eval"])
    if before is not None:
        metrics["eval_before"] = {k: v for k, v in before.items() if k in ("loss", "perplexity")}
    metrics["rows"] = {split: len(rows) for split, rows in data.splits.items()}
    if any(data.repairs.values()):
        metrics["repaired_tags"] = data.repairs  # I- tags after O etc., made B- on reading
    _save_outputs(trainer, recipe, card, data, metrics, prepared, run.work, eval_cards)
    world = trainer.args.world_size
    if world > 1:
        print(f"[rank {trainer.args.process_index}/{world}] finished: global_step={trainer.state.global_step} "
              f"eval_{main_metric}={eval_metrics.get('eval_' + main_metric)} weights={weights_fingerprint(trainer.model)} "
              f"writes_outputs={trainer.args.should_save}",
              flush=True)
    return metrics


def _derived(task, scores: dict[str, Any]) -> dict[str, Any]:
    """Scores plus what the task derives from them (perplexity from the masked-LM loss)."""
    return {**scores, **task.implementation().derived_metrics(scores)}


def _brief(scores: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if k in ("loss", "perplexity") and isinstance(v, float))


@contextmanager
def _tensorboard_dir(path: Path):
    """TensorBoard logs go to OUTPUT_DIR/logs unless the user set TENSORBOARD_LOGGING_DIR; the variable is
    restored afterwards so a second run in the same process logs into its own folder."""
    key = "TENSORBOARD_LOGGING_DIR"
    if key in os.environ:
        yield
        return
    os.environ[key] = str(path)
    try:
        yield
    finally:
        os.environ.pop(key, None)


def _check_metric(recipe: Recipe, allowed: tuple[str, ...], problem_type: str) -> None:
    metric = recipe.early_stopping.metric or recipe.training.get("metric_for_best_model")
    if metric is None:
        return
    if metric.removeprefix("eval_") not in allowed:
        raise NLPTransferError(
            f"{recipe.source}: metric '{metric}' is not computed for {problem_type}{did_you_mean(metric, allowed)} "
            f"(choose from {', '.join(allowed)})"
        )


def _collect_metrics(recipe, card, problem_type, main_metric, trainer, train_output, train_seconds, eval_metrics,
                     metrics_fn, checkpoint) -> dict[str, Any]:
    eval_part = {k.removeprefix("eval_"): v for k, v in eval_metrics.items()
                 if k.removeprefix("eval_") not in TRAINER_BOOKKEEPING}
    if metrics_fn is not None:
        eval_part.update({k: v for k, v in metrics_fn.details.items() if not isinstance(v, float)})
    train = {
        "runtime_s": round(train_seconds, 2),
        "samples_per_second": train_output.metrics.get("train_samples_per_second"),
        "loss": train_output.metrics.get("train_loss"),
        "global_step": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        # checkpoint names, not paths: a replacing run trains in a hidden sibling folder that is renamed at the end
        "best_checkpoint": _name(trainer.state.best_model_checkpoint),
        "resumed_from": _name(checkpoint),
    }
    return run_record(recipe, card, backend="trainer", problem_type=problem_type, main_metric=main_metric,
                      model=recipe.model, strategy=recipe.strategy.name, eval_scores=eval_part, train=train,
                      params=_count_parameters(trainer.model),
                      eval_split=recipe.eval_split if eval_metrics else None,
                      predict_rate=eval_metrics.get("eval_samples_per_second"),
                      history=trainer.state.log_history, world_size=trainer.args.world_size)


def _name(path: str | None) -> str | None:
    return Path(path).name if path else None


def _save_outputs(trainer, recipe, card, data, metrics, prepared, out: Path, eval_cards=None) -> None:
    """Save the final model into the staging folder, then let `outputs.finish` score it and move it into ``out``."""
    staging = out / STAGING
    trainer.save_model(str(staging))  # every rank calls it (some backends need that); only the main one writes
    if not trainer.args.should_save:
        return
    sidecar = {"task": recipe.task, "max_length": recipe.max_length, "label_names": data.label_names,
               **prepared.sidecar, "nlp_transfer_version": __version__}
    if recipe.strategy.adapter:  # adapter + head only (lora): keep the head's config and name the base model
        trainer.model.base_model.model.config.save_pretrained(staging)
        sidecar["adapter"] = {"base_model": recipe.model}
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; recipe.yaml holds the same settings
    write_json_atomic(staging / SIDECAR, sidecar)
    if prepared.after_save is not None:
        prepared.after_save(staging, trainer.model)
    runtime = Runtime.from_training_args(trainer.args)  # final scoring runs where and as training ran
    finish(out, recipe, card, metrics,
           lambda final: model_card(recipe, card, final, data.label_names, prepared.pipeline_tag),
           eval_cards=eval_cards, device=runtime.device, precision=runtime.dtype,
           predictions=prepared.prediction_rows() if prepared.prediction_rows is not None else None,
           calibration_rows=prepared.calibration_rows() if prepared.calibration_rows is not None else None)
    if not recipe.keep_checkpoints:
        for checkpoint in out.glob("checkpoint-*"):
            remove_tree(checkpoint, "the finished run's checkpoint")
