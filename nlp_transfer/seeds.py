"""Multi-seed runs: ``seeds: [1, 2, 3]`` (or ``nlp-transfer train RECIPE --seeds 3``, or ``--seeds 1,2,3``) trains the recipe once per
seed into ``OUTPUT_DIR/seed-N`` (each an ordinary run folder: resumable, replaced by ``overwrite=true`` as usual), then
writes ``OUTPUT_DIR/seeds.json``: for the main metric and every other scalar metric of ``eval`` (and ``test``, and
each of the recipe's ``eval_sets``) the
mean, the sample standard deviation (ddof=1; 0 for one seed) and each seed's value.

    summary = train_seeds(recipe, train)   # train: nlp_transfer.training.train, which calls this for a recipe with seeds

With ``resume=true`` a finished seed folder is left as it is (`nlp_transfer.rundir` says it has nothing to do).
`nlp_transfer.analysis.compare` reads the summary to show ``mean ± std (n seeds)``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from .config import Recipe, load_recipe
from .errors import NLPTransferError
from .io import write_json_atomic
from .rundir import RUN_RECORD, is_run_folder
from .runtime import is_main_process

SUMMARY = "seeds.json"
SUMMARY_SCHEMA = 1
SCORED = ("eval", "test")  # the metrics.json sections summarised


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``"3"`` is a count (seeds 1, 2, 3); ``"4,5,6"`` (with a comma) lists the seeds themselves, and
    ``"7,"`` is the single seed 7. A one-line error otherwise."""
    text = str(text).strip()
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise NLPTransferError(f"--seeds '{text}': give a count (--seeds 3: seeds 1, 2, 3) or seeds separated by "
                               f"commas (--seeds 4,5,6; --seeds 7, for seed 7 alone)")
    if "," not in text:
        count = int(parts[0])
        if count < 1:
            raise NLPTransferError("--seeds 0: give a count of at least 1, e.g. --seeds 3 (seeds 1, 2, 3)")
        return list(range(1, count + 1))
    seeds = [int(part) for part in parts]
    for seed in seeds:
        if seeds.count(seed) > 1:
            raise NLPTransferError(f"--seeds '{text}' lists {seed} twice; give each seed once")
    return seeds


def count_note(text: str) -> str | None:
    """A reminder that ``--seeds N`` (no comma) is a count, for a user who meant seed N alone; None for lists."""
    text = str(text).strip()
    if "," in text or not text.isdigit() or int(text) < 2:
        return None
    count = int(text)
    listed = ", ".join(map(str, range(1, count + 1))) if count <= 4 else f"1, 2, ..., {count}"
    return f"nlp-transfer: --seeds {count} is a count: seeds {listed} (seed {count} alone: --seeds {count},)"


def seed_folder(output_dir: str | Path, seed: int) -> Path:
    return Path(output_dir) / f"seed-{seed}"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_spread(mean: float, std: float, count: int) -> str:
    return f"{mean:.4f} ± {std:.4f} ({count} seed{'s' if count != 1 else ''})"


def check_parent(recipe: Recipe) -> None:
    """The parent folder holds seed folders and the summary only: never a single run, nor anything else."""
    parent = Path(recipe.output_dir)
    source = recipe.source or "recipe"
    if parent.exists() and not parent.is_dir():
        raise NLPTransferError(f"{source}: output_dir '{parent}' is a file; give a folder path for the seed runs")
    if not parent.is_dir():
        return
    if (parent / RUN_RECORD).is_file() or is_run_folder(parent):
        raise NLPTransferError(f"{source}: output_dir '{parent}' holds a single run; with seeds each seed trains into "
                               f"output_dir/seed-N, so choose another output_dir")
    others = sorted(p.name for p in parent.iterdir() if not p.name.startswith(".") and p.name != SUMMARY
                    and not (p.is_dir() and p.name.startswith("seed-")))
    if others:
        raise NLPTransferError(f"{source}: output_dir '{parent}' holds '{others[0]}', which is not a seed folder; with "
                               f"seeds it holds only seed-N folders and {SUMMARY}: choose a new or empty output_dir")


def train_seeds(recipe: Recipe, train: Callable[[Recipe], Any]) -> dict[str, Any]:
    """Train ``recipe`` once per seed with ``train`` (returns a result with ``.metrics``); write and return the
    summary. Each seed's recipe is the same recipe with ``seed: N``, no ``seeds`` and ``output_dir/seed-N``."""
    check_parent(recipe)
    results = {}
    for seed in recipe.seeds:
        one = load_recipe(recipe, seed=seed, seeds=None, output_dir=str(seed_folder(recipe.output_dir, seed)))
        metrics = train(one).metrics
        results[seed] = metrics
        if is_main_process():
            main = metrics.get("main_metric")
            value = (metrics.get("eval") or {}).get(main)
            shown = f"{main} {value:.4f}" if isinstance(value, float) else "no main metric"
            print(f"nlp-transfer: seed {seed}: {shown} ({one.output_dir})", flush=True)
    summary = summarise(results)
    if is_main_process():
        write_json_atomic(Path(recipe.output_dir) / SUMMARY, summary)
        main = summary["main_metric"]
        scores = summary["eval"].get(main)
        if scores:
            print(f"nlp-transfer: {main} {format_spread(scores['mean'], scores['std'], len(scores['values']))}",
                  flush=True)
    return summary


def summarise(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """seeds.json from each seed's metrics.json: the run's description from the first seed, then per section
    (eval, test, and each of the recipe's eval_sets under ``eval_sets``) every metric that is a number in every
    seed: mean, std and the values in seed order."""
    first = next(iter(results.values()))
    summary: dict[str, Any] = {"schema": SUMMARY_SCHEMA, "seeds": list(results),
                               **{key: first.get(key) for key in ("task", "model", "data", "strategy", "main_metric",
                                                                  "eval_split", "test_split")},
                               "runs": {str(seed): f"seed-{seed}" for seed in results}}
    for section in SCORED:
        tables = [metrics.get(section) for metrics in results.values()]
        if all(isinstance(table, dict) for table in tables):
            summary[section] = _spreads(tables)
    sets = [metrics.get("eval_sets") for metrics in results.values()]
    if all(isinstance(named, dict) for named in sets):
        summary["eval_sets"] = {name: _spreads([named.get(name) or {} for named in sets]) for name in sets[0]}
    return summary


def _spreads(tables: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{metric: {mean, std, values}} for every metric that is a finite float in every table (scores, not counts)."""
    scalars = {}
    for key in tables[0]:
        values = [table.get(key) for table in tables]
        if all(isinstance(v, float) and math.isfinite(v) for v in values):
            mean, std = mean_std([float(v) for v in values])
            scalars[key] = {"mean": mean, "std": std, "values": [float(v) for v in values]}
    return scalars
