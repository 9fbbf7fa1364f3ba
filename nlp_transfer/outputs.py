"""The end of every run, done one way for every backend (Trainer, scikit-learn probe, static baselines).

A backend trains and stages its model files in ``OUT/.final-staging`` (weights, ``nlp_transfer.json``), then hands
over its part of the run record; `finish` does the rest the same way for all of them:

0. calibration (`calibrate_staged`, classifiers): temperature and thresholds fitted on the evaluation split;
1. final scoring (`score_final`): the recipe's ``test_split`` and ``eval_sets`` are scored once by the staged model,
   opened with `load_model` like any user would open it, on the device and in the precision training used;
2. the run record ``metrics.json`` (`run_record`: one versioned schema, ``schema`` = `RECORD_SCHEMA`), the
   resolved ``recipe.yaml``, the evaluation split's predictions and the model card are written into the staging
   folder (each file atomically);
3. the staged files move into ``OUT`` together.

`nlp_transfer.rundir` owns the run folder around this (refuse, resume, replace); compare reads the record.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from .io import move_contents, write_json_atomic, write_jsonl_atomic, write_text_atomic
from .record import STAGING, run_record, staging_folder  # noqa: F401  (backends import them from record)

def score_final(model: Callable[[], Any], recipe, card, metrics: dict[str, Any],
                eval_cards: dict[str, tuple[Any, str]] | None) -> None:
    """Score the staged model (``model()`` opens it, once) on the test split and the eval sets, into ``metrics``
    (in place).

    Both are scored once by the final model and never used for training or checkpoint selection. Labels are read
    by name in the model's order, with the recipe's ``label_map``."""
    from .evaluation import evaluate

    on = {"label_map": recipe.label_map}
    if recipe.test_split:
        scores = evaluate(model(), card, recipe.test_split, **on)
        metrics["test_split"] = recipe.test_split
        metrics["test"] = {k: v for k, v in scores.items() if k not in ("model", "data", "split")}
    if eval_cards:  # extra sets (other languages, other datasets)
        metrics["eval_sets"] = {}
        for name, (eval_card, split) in eval_cards.items():
            print(f"nlp-transfer: scoring eval set {name} ({eval_card.name}, {split})", flush=True)
            scores = evaluate(model(), eval_card, split, where=f"eval_sets.{name}", **on)
            metrics["eval_sets"][name] = {k: v for k, v in scores.items() if k != "model"}


def calibrates(recipe, metrics: dict[str, Any]) -> bool:
    """A classifier with an evaluation split whose recipe asks for calibration (the default)."""
    from .tasks import get_task
    from .tasks.problems import PROBLEM_TYPES

    kind = PROBLEM_TYPES.get(metrics.get("problem_type"))  # None: no (or no known) problem type
    return (get_task(recipe.task).calibrated and recipe.calibration.enabled and bool(metrics.get("eval_split"))
            and kind is not None and kind.labelled)


def calibrate_staged(staging: Path, model: Any, recipe, metrics: dict[str, Any],
                     rows: tuple[list, list]) -> dict[str, Any]:
    """Fit `recipe.calibration` on the evaluation rows with the staged ``model``; calibration.json joins the folder
    and the model applies it from now on."""
    from .calibration import summary_line
    from .evaluation import fit_calibration

    texts, gold = rows
    report = fit_calibration(staging, texts, gold, metrics["eval_split"], recipe.calibration, model=model)
    print(f"nlp-transfer: calibrated on {metrics['eval_split']} ({report['rows']} rows): {summary_line(report)}",
          flush=True)
    return report


def _opened_once(folder: Path, device: str, precision: str) -> Callable[[], Any]:
    """``folder``'s predictor, opened with `load_model` (as a user would open it) on the first call only."""
    opened: list = []

    def model():
        if not opened:
            from .inference import load_model

            opened.append(load_model(folder, device, precision=precision))
        return opened[0]

    return model


def finish(out: Path, recipe, card, metrics: dict[str, Any], readme: Callable[[dict[str, Any]], str], *,
           eval_cards: dict[str, tuple[Any, str]] | None = None, device: str = "auto", precision: str = "float32",
           predictions: Iterable[dict[str, Any]] | None = None,
           calibration_rows: tuple[list, list] | None = None) -> dict[str, Any]:
    """Calibrate, score, write the record, the recipe, the predictions and the model card beside the staged model,
    then move the staging folder's contents into ``out``. Returns the final metrics.

    ``calibration_rows``: the evaluation split's (texts, gold labels) of a classifier; the temperature and
    thresholds (`recipe.calibration`) are fitted on them before the test split and eval sets are scored."""
    import yaml

    staging = staging_folder(out)
    model = _opened_once(staging, device, precision)  # calibration and every scored set share one load
    if calibration_rows is not None and calibrates(recipe, metrics):
        metrics["calibration"] = calibrate_staged(staging, model(), recipe, metrics, calibration_rows)
    score_final(model, recipe, card, metrics, eval_cards)
    write_json_atomic(staging / "metrics.json", metrics)
    write_text_atomic(staging / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True))
    if predictions is not None and metrics.get("eval_split"):
        write_jsonl_atomic(staging / f"predictions_{metrics['eval_split']}.jsonl", predictions)
    write_text_atomic(staging / "README.md", readme(metrics))
    move_contents(staging, out)
    return metrics
