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

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from .io import move_contents, write_json_atomic, write_jsonl_atomic, write_text_atomic
from .version import __version__

RECORD_SCHEMA = 1  # metrics.json: raise when a key changes meaning or goes away (new keys keep the number)
STAGING = ".final-staging"


def staging_folder(out: Path) -> Path:
    """Where a backend writes its model files before `finish` moves everything into ``out``."""
    staging = Path(out) / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def run_record(recipe, card, *, backend: str, problem_type: str, main_metric: str, model: str, strategy: str,
               eval_scores: dict[str, Any], train: dict[str, Any], params: dict[str, int],
               eval_split: str | None = None, predict_rate: float | None = None,
               history: list[dict[str, Any]] | None = None, rows: dict[str, int] | None = None,
               world_size: int = 1, **extra: Any) -> dict[str, Any]:
    """metrics.json as every backend writes it: the same keys in the same order, backend-specific ones after."""
    return {
        "schema": RECORD_SCHEMA,
        "backend": backend,
        "task": recipe.task,
        "problem_type": problem_type,
        "model": model,
        "data": card.name,
        "strategy": strategy,
        "eval_split": eval_split,
        "main_metric": main_metric,
        "eval": eval_scores,
        "train": train,
        "params": params,
        "predict": {"samples_per_second": predict_rate},  # evaluation-split throughput of the trained model
        "history": history or [],  # train loss and eval metrics per logging step or epoch: learning curves
        "rows": rows or {},
        "world_size": world_size,
        "seed": recipe.seed,
        "nlp_transfer_version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def score_final(folder: Path, recipe, card, metrics: dict[str, Any], eval_cards: dict[str, tuple[Any, str]] | None,
                device: str = "auto", precision: str = "float32") -> None:
    """Score the model staged in ``folder`` on the test split and the eval sets, into ``metrics`` (in place).

    Both are scored once by the final model and never used for training or checkpoint selection. Labels are read
    by name in the model's order, with the recipe's ``label_map``."""
    from .evaluation import evaluate

    on = {"device": device, "precision": precision, "label_map": recipe.label_map}
    if recipe.test_split:
        scores = evaluate(folder, card, recipe.test_split, **on)
        metrics["test_split"] = recipe.test_split
        metrics["test"] = {k: v for k, v in scores.items() if k not in ("model", "data", "split")}
    if eval_cards:  # extra sets (other languages, other datasets)
        metrics["eval_sets"] = {}
        for name, (eval_card, split) in eval_cards.items():
            print(f"nlp-transfer: scoring eval set {name} ({eval_card.name}, {split})", flush=True)
            scores = evaluate(folder, eval_card, split, where=f"eval_sets.{name}", **on)
            metrics["eval_sets"][name] = {k: v for k, v in scores.items() if k != "model"}


def calibrates(recipe, metrics: dict[str, Any]) -> bool:
    """A classifier with an evaluation split whose recipe asks for calibration (the default)."""
    from .tasks import get_task

    return (get_task(recipe.task).calibrated and recipe.calibration.enabled and bool(metrics.get("eval_split"))
            and metrics.get("problem_type") in ("single_label", "multi_label"))


def calibrate_staged(staging: Path, recipe, metrics: dict[str, Any], rows: tuple[list, list], device: str,
                     precision: str) -> dict[str, Any]:
    """Fit `recipe.calibration` on the evaluation rows with the staged model; calibration.json joins the folder."""
    from .calibration import summary_line
    from .evaluation import fit_calibration

    texts, gold = rows
    report = fit_calibration(staging, texts, gold, metrics["eval_split"], recipe.calibration, device=device,
                             precision=precision)
    print(f"nlp-transfer: calibrated on {metrics['eval_split']} ({report['rows']} rows): {summary_line(report)}",
          flush=True)
    return report


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
    if calibration_rows is not None and calibrates(recipe, metrics):
        metrics["calibration"] = calibrate_staged(staging, recipe, metrics, calibration_rows, device, precision)
    score_final(staging, recipe, card, metrics, eval_cards, device, precision)
    write_json_atomic(staging / "metrics.json", metrics)
    write_text_atomic(staging / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True))
    if predictions is not None and metrics.get("eval_split"):
        write_jsonl_atomic(staging / f"predictions_{metrics['eval_split']}.jsonl", predictions)
    write_text_atomic(staging / "README.md", readme(metrics))
    move_contents(staging, out)
    return metrics
