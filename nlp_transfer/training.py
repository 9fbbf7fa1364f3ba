"""A run from a recipe: the recipe read once, its card and data checked, the backend that trains it, the run's end.

    from nlp_transfer import train
    result = train("recipes/sst2_demo.yaml", ["training.num_train_epochs=1"])
    print(result.metrics["eval"]["accuracy"])

    recipe -> card (config.recipe_card) -> data (data.readers) -> BACKENDS[recipe.backend].fit -> outputs.finish

Everything is checked before the run folder changes (`nlp_transfer.rundir`); the backends (`nlp_transfer.backends`)
train, and every run ends the same way (`nlp_transfer.outputs`). Runs unchanged under ``accelerate launch`` /
``torchrun`` with the Trainer backend: every rank trains, only the main process writes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rundir
from .backends import Backend, Fitted, Job, get_backend
from .config import Recipe, load_recipe, recipe_card, resolve_path
from .data.cards import load_card, merge_cards
from .data.readers import load_data, read_labelled
from .errors import NLPTransferError, did_you_mean
from .outputs import finish
from .runtime import Runtime, is_main_process, world_size
from .tasks import get_task
from .tasks.problems import chosen_problem_type, data_kind, exclusive_labels
from .version import __version__


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict[str, Any]


def train(recipe: Recipe | str | Path | dict, overrides: list[str] | None = None, *, callbacks: list | None = None,
          device: str | None = None, precision: str | None = None, **kwargs: Any) -> RunResult:
    """Train the recipe's model on its data card; returns the output directory and metrics.

    Everything is checked before anything is written: the recipe's values, the data cards, the model's config
    and tokenizer, ``max_length`` against the model's positions, the data itself and the TrainingArguments.
    Only then does the run folder change (see `nlp_transfer.rundir`). With ``seeds`` it trains once per seed
    (`nlp_transfer.seeds`) and the result's metrics are the seeds summary (seeds.json).

    ``device`` / ``precision`` (``train --device/--precision``): where every backend runs (default: a GPU when
    there is one, in float32, or what ``training:`` / ``static.device`` say). ``callbacks``: more
    `transformers.TrainerCallback` objects for the Trainer backend, after the strategy's own (`nlp_transfer.analysis.tune`
    reports each evaluation to Optuna's pruner this way); the probe and static backends have no Trainer."""
    recipe = load_recipe(recipe, overrides, **kwargs)
    if recipe.seeds is not None:  # once per seed into output_dir/seed-N, then output_dir/seeds.json
        from .seeds import train_seeds

        return RunResult(Path(recipe.output_dir), train_seeds(
            recipe, lambda one: train(one, callbacks=callbacks, device=device, precision=precision)))
    runtime = Runtime.resolve(device or "auto", precision) if device or precision else None
    backend = get_backend(recipe.backend)
    card = _checked_card(recipe, backend)
    eval_cards = _eval_set_cards(recipe, card)
    if is_main_process():
        rundir.recover(recipe.output_dir)
    run = rundir.plan(recipe.output_dir, recipe.resume, recipe.overwrite, _inputs(recipe, card, eval_cards),
                      recipe.source or "recipe", checkpoints=backend.resumable)
    if run.finished:
        return _finished_run(run)
    backend.check(recipe, card)
    recipe.strategy.check_inputs(recipe.source or "recipe")
    data = _read_data(recipe, card, eval_cards)
    record = {"task": recipe.task, "backend": backend.name, "model": backend.model_name(recipe),
              "nlp_transfer_version": __version__}
    job = Job(recipe, card, data, eval_cards, run, runtime, on_start=lambda: rundir.begin(run, record),
              callbacks=list(callbacks or []))
    return _fit_and_finish(backend, job)


def _checked_card(recipe: Recipe, backend: Backend):
    """The recipe's card as the recipe reads it, refused when it cannot train this recipe: another task, a split
    the recipe names missing, no evaluation split for a backend that selects on it, a process count it cannot use."""
    card = _with_problem_type(recipe, recipe_card(recipe))
    task = get_task(recipe.task)
    if card.task not in task.card_tasks:
        raise NLPTransferError(f"{recipe.source}: the recipe's task is {recipe.task} but {card.source} holds "
                               f"{card.task} data; use a matching data card or task")
    for split in [recipe.train_split] + ([recipe.test_split] if recipe.test_split else []):
        if split not in card.splits:
            raise NLPTransferError(f"{card.source}: no '{split}' split{did_you_mean(split, card.splits)}; "
                                   f"set train_split/test_split in the recipe or add the split to the card")
    if not backend.distributed and world_size() > 1:
        raise NLPTransferError(f"{recipe.source}: the {backend.name} backend runs in one process; start it with "
                               f"nlp-transfer train, not under accelerate launch / torchrun")
    if backend.needs_eval and recipe.eval_split not in card.splits:
        raise NLPTransferError(f"{card.source}: {backend.needs_eval} on '{recipe.eval_split}'; add that split to the "
                               f"card or set eval_split")
    return card


def _read_data(recipe: Recipe, card, eval_cards: dict[str, tuple[Any, str]]):
    """Every split the run uses, read and checked now (the test split and eval sets too, so a bad row or a label
    only they have stops the run before it trains), then the recipe's row selections."""
    has_eval = recipe.eval_split in card.splits
    splits = [recipe.train_split] + ([recipe.eval_split] if has_eval else [])
    splits += [recipe.test_split] if recipe.test_split and recipe.test_split not in splits else []
    data = load_data(card, splits, recipe.train_split, label_map=recipe.label_map, storage=recipe.data_storage)
    _check_eval_set_rows(eval_cards, data, recipe.label_map, get_task(recipe.task))
    recipe.strategy.check_data(data.problem_type, "text_pair" in data.splits[recipe.train_split].column_names,
                               recipe.source or "recipe")
    if recipe.train_rows is not None or recipe.train_rows_per_class is not None:
        _subsample(data, recipe)
    if recipe.eval_rows is not None and has_eval:
        _sample_eval(data, recipe)
    if recipe.strategy.distils:  # the teacher labels the (subsampled) rows and its extra texts
        from .distillation import attach_teacher

        attach_teacher(recipe, data)
    return data


def _fit_and_finish(backend: Backend, job: Job) -> RunResult:
    """The backend trains and stages its model; the process that writes finishes the run (`outputs.finish`: scored,
    recorded, moved into place). A run that fails is dropped unless it can be resumed (`rundir.abandon`)."""
    run, recipe = job.run, job.recipe
    try:
        fitted: Fitted = backend.fit(job)
        if not fitted.writes:
            return RunResult(run.target, fitted.metrics)
        runtime = fitted.runtime
        metrics = finish(run.work, recipe, job.card, fitted.metrics, fitted.readme, eval_cards=job.eval_cards,
                         device=runtime.device, precision=runtime.dtype, predictions=fitted.predictions,
                         calibration_rows=fitted.calibration_rows)
        if fitted.after is not None:
            fitted.after(run.work)
    except BaseException:
        if job.started:
            rundir.abandon(run)
        raise
    rundir.finish(run)
    return RunResult(run.target, metrics)


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
        if data_kind(eval_card.task) is not data_kind(card.task):
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
    single_label = _exclusive(data) and "label" in rows.column_names
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
    stratified = _exclusive(data) and "label" in rows.column_names
    data.splits[recipe.eval_split] = rows.select(
        _draw(rows, recipe.eval_rows, np.random.default_rng(EVAL_SAMPLE_SEED), stratified))


def _exclusive(data) -> bool:
    """One label per row (single-label data); token and plain-text data have no problem type."""
    return exclusive_labels(data.problem_type)


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
    chosen = chosen_problem_type(recipe.problem_type, card.problem_type)
    if chosen == card.problem_type:
        return card
    return dataclasses.replace(card, problem_type=chosen)




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
