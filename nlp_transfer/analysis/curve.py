"""Learning curves: a recipe trained per strategy, training-set size and seed, summarised in ``curve.json`` with the
advice that follows from it.

    data = curve("recipes/sst2_minilm.yaml", sizes=[32, 100, 300], strategies=["full", "lora", "feature-extraction"],
                 seeds=[1, 2, 3], output="runs/curve")
    for line in advice(data): ...

    nlp-transfer curve RECIPE --sizes 32,100,300 --strategies full,lora,feature-extraction --seeds 1,2,3 --out DIR

Every point is an ordinary run folder ``OUT/STRATEGY/SIZE/seed-SEED`` trained with ``train_rows=SIZE`` (a seeded
subset that keeps the label shares, ``train_rows_stratified``), ``seed=SEED`` and ``resume=true``: after an
interruption the finished points are left as they are (`nlp_transfer.rundir`) and an unfinished one resumes. A size
at or above the training split's rows trains on all of them. After each point ``OUT/curve.json`` is rewritten from
the run folders' metrics.json (mean, sample std and each seed's value of the main metric, mean train time), and
``OUT/curve.md`` with the table and the advice; the plots (``curve.png``, ``curve-time.png``) come at the end.

``per_class`` makes sizes rows of each label (``train_rows_per_class``: the few-shot setting, e.g. 8 per label);
``min_steps`` gives fine-tuning points at least that many optimizer steps; ``strategy_overrides`` sets recipe keys
for one strategy's points (e.g. a higher learning rate for LoRA). curve.json records all three.

Strategies are the registered strategy names (``feature-extraction``: the scikit-learn probe; ``contrastive``:
the SetFit-style pair-trained encoder + probe) and ``static-average``
/ ``static-bilstm``: the static-embedding baselines of a second recipe (``static_recipe``, or the recipe itself
when it holds ``static:``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..config import IGNORED_BY_BACKEND, TRAINING_DEFAULTS, Recipe, load_recipe, resolve_path
from ..errors import NLPTransferError, did_you_mean
from ..io import atomic_open, write_json_atomic, write_text_atomic
from ..plots import figure, png
from ..rundir import is_finished, is_run_folder
from ..seeds import mean_std, seed_folder
from ..strategy_configs import STRATEGIES, strategy_names
from ..tasks.base import greater_is_better

SUMMARY = "curve.json"
REPORT = "curve.md"
PLOTS = ("curve.png", "curve-time.png")
SCHEMA = 1
STATIC = {"static-average": "average", "static-bilstm": "bilstm"}  # strategy -> static.baseline


def known_strategies() -> tuple[str, ...]:
    return strategy_names() + tuple(STATIC)


def parse_list(text: str, option: str, low: int, example: str) -> list[int]:
    """``"32,100,300"`` -> [32, 100, 300]: integers >= ``low``, each once (a one-line error otherwise)."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts or not all(part.lstrip("-").isdigit() for part in parts):
        raise NLPTransferError(f"{option} '{text}': give integers separated by commas, e.g. {option} {example}")
    values = [int(part) for part in parts]
    return check_numbers(values, option, low, example)


def check_numbers(values: list[int], option: str, low: int, example: str) -> list[int]:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise NLPTransferError(f"{option}: {value!r} is not an integer >= {low}; e.g. {option} {example}")
        if values.count(value) > 1:
            raise NLPTransferError(f"{option}: {value} is listed twice; give each once, e.g. {option} {example}")
    if not values:
        raise NLPTransferError(f"{option}: give at least one, e.g. {option} {example}")
    return list(values)


def check_strategies(strategies: list[str], has_static: bool) -> list[str]:
    known = known_strategies()
    if not strategies:
        raise NLPTransferError("--strategies: give at least one, e.g. --strategies full,lora,feature-extraction")
    for name in strategies:
        if name not in known:
            raise NLPTransferError(f"--strategies: unknown strategy '{name}'{did_you_mean(name, known, '')} "
                                   f"(known: {', '.join(known)})")
        if strategies.count(name) > 1:
            raise NLPTransferError(f"--strategies: '{name}' is listed twice; give each strategy once")
        if name in STATIC and not has_static:
            raise NLPTransferError(f"--strategies: {name} trains a static baseline: pass --static-recipe PATH (a "
                                   f"recipe with static: vectors) or leave {name} out")
    return list(strategies)


def point_folder(output: str | Path, strategy: str, size: int, seed: int) -> Path:
    return seed_folder(Path(output) / strategy / str(size), seed)


def training_rows(recipe: Recipe) -> tuple[int, dict[str, int] | None]:
    """Rows of the recipe's training split, read as training reads them, and the rows of each label (single-label
    data; None otherwise)."""
    from ..config import recipe_card
    from ..data.readers import load_data
    from ..tasks.problems import exclusive_labels

    card = recipe_card(recipe)
    if recipe.train_split not in card.splits:
        raise NLPTransferError(f"{card.source}: no '{recipe.train_split}' split{did_you_mean(recipe.train_split, card.splits)}")
    data = load_data(card, [recipe.train_split], recipe.train_split, label_map=recipe.label_map,
                     storage=recipe.data_storage)
    rows = data.splits[recipe.train_split]
    exclusive = exclusive_labels(data.problem_type)
    if not exclusive or "label" not in rows.column_names:
        return len(rows), None
    labels = list(rows["label"])
    return len(rows), {name: labels.count(index) for index, name in enumerate(data.label_names)}


def parse_strategy_overrides(items: list[str]) -> dict[str, list[str]]:
    """``["lora:training.learning_rate=5e-4", ...]`` -> {"lora": ["training.learning_rate=5e-4"], ...}."""
    out: dict[str, list[str]] = {}
    for item in items:
        strategy, sep, override = item.partition(":")
        if not sep or "=" not in override or not strategy.strip():
            raise NLPTransferError(f"--strategy-override '{item}': give STRATEGY:KEY=VALUE, e.g. --strategy-override "
                                   f"lora:training.learning_rate=5e-4")
        out.setdefault(strategy.strip(), []).append(override.strip())
    return out


def _at_least(point: Recipe, rows: int, min_steps: int) -> list[str]:
    """``training.max_steps=min_steps`` when a Trainer point's epochs over ``rows`` give fewer optimizer steps (and
    the recipe sets no max_steps); nothing otherwise."""
    if not min_steps or point.backend != "trainer":
        return []
    training = point.training or {}
    if (training.get("max_steps") or -1) > 0:
        return []
    settings = {**TRAINING_DEFAULTS, **training}
    batch = settings["per_device_train_batch_size"] * settings.get("gradient_accumulation_steps", 1)
    steps = math.ceil(rows / batch) * settings["num_train_epochs"]
    return [f"training.max_steps={min_steps}"] if steps < min_steps else []


def _strategy_overrides(base: Recipe, strategy: str) -> list[str]:
    """What turns the recipe into one of ``strategy``: the strategy's name (its options kept when the recipe already
    trains it), the static baseline variant, and null for the keys the probe (feature-extraction, contrastive)
    refuses that hold a mapping."""
    if strategy in STATIC:
        return [f"static.baseline={STATIC[strategy]}"]
    overrides = [] if base.strategy.name == strategy else [f"strategy={strategy}"]
    if STRATEGIES[strategy]().backend == "probe":  # its defaults, unchecked (distill's teacher comes later)
        overrides += [f"{key}=null" for key in IGNORED_BY_BACKEND["probe"]
                      if key in base.given and isinstance(getattr(base, key), dict)]
    return overrides


def plan_points(recipe, sizes, strategies, seeds, output, overrides, static_recipe, per_class: bool = False,
                min_steps: int = 0, strategy_overrides: dict[str, list[str]] | None = None) -> tuple[list, dict]:
    """Every point's recipe, built (and so checked) before anything trains, in the order they train: strategy, then
    size, then seed. Returns the points ``(strategy, size, seed, Recipe)`` and the curve's description."""
    base = load_recipe(recipe, overrides)
    static_base = load_recipe(static_recipe) if static_recipe is not None else (base if base.backend == "static" else None)
    strategies = check_strategies(list(strategies), static_base is not None)
    sizes = check_numbers(list(sizes), "--sizes", 1, "32,100,300")
    seeds = check_numbers(list(seeds), "--seeds", 0, "1,2,3")
    out = Path(output or base.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise NLPTransferError(f"curve output '{out}' is a file; give a folder for the curve's runs")
    if out.is_dir() and is_run_folder(out):
        raise NLPTransferError(f"curve output '{out}' holds a single run; choose another folder (--out)")
    strategy_overrides = dict(strategy_overrides or {})
    for name in strategy_overrides:
        if name not in strategies:
            raise NLPTransferError(f"--strategy-override {name}:...: '{name}' is not one of --strategies "
                                   f"({', '.join(strategies)}){did_you_mean(name, strategies, '')}")
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
        raise NLPTransferError(f"--min-steps {min_steps!r}: give a number of optimizer steps >= 0")
    available, per_label = training_rows(base)
    if per_class:
        if per_label is None:
            raise NLPTransferError(f"--per-class: sizes per label need single-label classification data; "
                                   f"{base.data} is not; leave --per-class out")
        smallest = min(per_label, key=per_label.get)
        if max(sizes) > per_label[smallest]:
            raise NLPTransferError(f"--sizes {max(sizes)} --per-class: label '{smallest}' has {per_label[smallest]} "
                                   f"training rows; give sizes up to {per_label[smallest]}")
        effective = list(sizes)
    else:  # a size at or above the split's rows trains on all of them: one point, named by the row count
        effective = list(dict.fromkeys(min(size, available) for size in sizes))
    points = []
    for strategy in strategies:
        source = static_base if strategy in STATIC else base
        if strategy in STATIC and static_base is not base:
            _check_same_data(base, static_base)
        for rows in effective:
            subset = [f"train_rows_per_class={rows}"] if per_class else [
                f"train_rows={'null' if rows >= available else rows}", "train_rows_stratified=true"]
            for seed in seeds:
                every = _strategy_overrides(source, strategy) + subset + [
                    f"seed={seed}", "resume=true", f"output_dir={point_folder(out, strategy, rows, seed)}"]
                every += ["seeds=null"] if source.seeds is not None else []
                every += strategy_overrides.get(strategy, [])
                point = load_recipe(source, every)
                extra = _at_least(point, rows * len(per_label) if per_class else rows, min_steps)
                points.append((strategy, rows, seed, load_recipe(point, extra) if extra else point))
    description = {"task": base.task, "data": base.data, "model": base.model, "eval_split": base.eval_split,
                   "training_rows": available, "unit": "rows per label" if per_class else "rows",
                   "sizes": effective, "requested_sizes": sizes, "strategies": strategies, "seeds": seeds,
                   "min_steps": min_steps, "strategy_overrides": strategy_overrides}
    return points, {"output": out, **description}


def _check_same_data(base: Recipe, static: Recipe) -> None:
    for key in ("task", "train_split", "eval_split", "eval_rows"):
        if getattr(base, key) != getattr(static, key):
            raise NLPTransferError(f"{static.source}: the static recipe's {key} is {getattr(static, key)!r} but the "
                                   f"curve's recipe has {getattr(base, key)!r}; a curve compares one data set")
    paths = [[str(resolve_path(p, r).resolve()) for p in (r.data if isinstance(r.data, list) else [r.data])]
             if not isinstance(r.data, dict) else r.data for r in (base, static)]
    if paths[0] != paths[1]:
        raise NLPTransferError(f"{static.source}: the static recipe reads other data ({static.data}) than the curve's "
                               f"recipe ({base.data}); a curve compares one data set")


def curve(recipe: Recipe | str | Path | dict, sizes: list[int], strategies: list[str], seeds: list[int],
          output: str | Path | None = None, overrides: list[str] | None = None,
          static_recipe: Recipe | str | Path | dict | None = None, per_class: bool = False, min_steps: int = 0,
          strategy_overrides: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Train every point not finished yet (printing one line each), rewriting ``curve.json`` and ``curve.md`` after
    each; then the plots. Returns curve.json's contents.

    ``per_class``: sizes are rows of each label (``train_rows_per_class``). ``min_steps``: a fine-tuning point
    trains at least this many optimizer steps (few rows at the recipe's epochs may give only a handful).
    ``strategy_overrides``: recipe overrides for one strategy's points, e.g. {"lora": ["training.learning_rate=5e-4"]}."""
    from ..training import train

    points, description = plan_points(recipe, sizes, strategies, seeds, output, overrides, static_recipe,
                                      per_class, min_steps, strategy_overrides)
    out = description["output"]
    description["output"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    for count, (strategy, size, seed, point) in enumerate(points, 1):
        metrics = train(point).metrics
        main = metrics.get("main_metric")
        value = (metrics.get("eval") or {}).get(main)
        shown = f"{main} {value:.4f}" if isinstance(value, (int, float)) else "no main metric"
        seconds = (metrics.get("train") or {}).get("runtime_s")
        took = f", {seconds:.1f} s training" if isinstance(seconds, (int, float)) else ""
        print(f"nlp-transfer: curve [{count}/{len(points)}] {strategy} {size} {description['unit']} seed {seed}: {shown}{took} "
              f"({point.output_dir})", flush=True)
        data = summarise(out, description)
        write_json_atomic(out / SUMMARY, data)
        write_text_atomic(out / REPORT, markdown(data))
    data = summarise(out, description)
    write_json_atomic(out / SUMMARY, data)
    write_text_atomic(out / REPORT, markdown(data))
    write_plots(data, out)
    return data


def summarise(out: Path, description: dict[str, Any]) -> dict[str, Any]:
    """curve.json from the finished run folders under ``out``: per strategy and size the main metric's mean, sample
    std, n and each seed's value, the mean train time (metrics.json ``train.runtime_s``) and the runs' folders."""
    data: dict[str, Any] = {"schema": SCHEMA, **description, "main_metric": None, "points": {}}
    for strategy in description["strategies"]:
        table = data["points"][strategy] = {}
        for size in description["sizes"]:
            values, times, seeds, runs, model = [], [], [], [], None
            for seed in description["seeds"]:
                folder = point_folder(out, strategy, size, seed)
                if not (folder / "metrics.json").is_file() or not is_finished(folder):
                    continue
                metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
                main = metrics.get("main_metric")
                value = (metrics.get("eval") or {}).get(main)
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                data["main_metric"] = data["main_metric"] or main
                model = metrics.get("model")
                values.append(float(value))
                times.append(float((metrics.get("train") or {}).get("runtime_s") or 0.0))
                seeds.append(seed)
                runs.append(str(folder.relative_to(out)))
            if not values:
                continue
            mean, std = mean_std(values)
            table[str(size)] = {"mean": mean, "std": std, "n": len(values), "values": values, "seeds": seeds,
                                "train_time_s": mean_std(times)[0], "model": model, "runs": runs}
    data["advice"] = advice(data)
    return data


def _entry(strategy: str, cell: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": strategy, "mean": cell["mean"], "std": cell["std"], "n": cell["n"],
            "train_time_s": cell["train_time_s"]}


def advice(curve_data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per size: the best strategy (highest mean, lowest for a lower-is-better metric) and the cheapest (lowest mean
    train time) whose mean is within one standard deviation (the best's) of the best's mean, with their numbers."""
    metric = curve_data.get("main_metric")
    higher = greater_is_better(metric) if metric else True
    out = []
    for size in curve_data.get("sizes", []):
        cells = [(strategy, table[str(size)]) for strategy, table in curve_data.get("points", {}).items()
                 if str(size) in table]
        if not cells:
            continue
        best_name, best = max(cells, key=lambda item: item[1]["mean"] if higher else -item[1]["mean"])
        close = [(name, cell) for name, cell in cells if abs(cell["mean"] - best["mean"]) <= best["std"]]
        cheap_name, cheap = min(close, key=lambda item: item[1]["train_time_s"])
        out.append({"size": size, "unit": curve_data.get("unit", "rows"), "metric": metric,
                    "best": _entry(best_name, best),
                    "cheapest": _entry(cheap_name, cheap)})
    return out


def advice_line(item: dict[str, Any]) -> str:
    best, cheap = item["best"], item["cheapest"]

    def shown(entry):
        return (f"{entry['strategy']} {entry['mean']:.4f} ± {entry['std']:.4f} (n={entry['n']}, "
                f"{entry['train_time_s']:.1f} s training)")
    line = f"{item['size']} {item.get('unit', 'rows')}: best {shown(best)}"
    if cheap["strategy"] == best["strategy"]:
        return line + "; it is also the cheapest within one std"
    return line + f"; cheapest within one std of it: {shown(cheap)}"


def markdown(curve_data: dict[str, Any]) -> str:
    sizes = curve_data["sizes"]
    metric = curve_data.get("main_metric") or "main metric"
    lines = [f"# Learning curve: {curve_data['model']} on {curve_data['data']}", "",
             f"{metric} on {curve_data['eval_split']} (mean ± sample std over seeds {curve_data['seeds']}); "
             f"training split: {curve_data['training_rows']} rows; sizes are {curve_data.get('unit', 'rows')}."
             + (f" Fine-tuning points train at least {curve_data['min_steps']} optimizer steps."
                if curve_data.get("min_steps") else "")
             + "".join(f" {name}: {', '.join(items)}." for name, items in
                       (curve_data.get("strategy_overrides") or {}).items()), "",
             "| strategy | " + " | ".join(str(size) for size in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for strategy, table in curve_data["points"].items():
        cells = [f"{table[str(s)]['mean']:.4f} ± {table[str(s)]['std']:.4f}" if str(s) in table else "–" for s in sizes]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += ["", "## Advice (from the table)", ""] + [f"- {advice_line(item)}" for item in curve_data["advice"]]
    return "\n".join(lines) + "\n"


def write_plots(curve_data: dict[str, Any], out: Path) -> list[Path]:
    """Score against labelled rows (log x, mean ± std band) and score against mean train time, one line per
    strategy; nothing when no point has finished."""
    import numpy as np

    if not any(curve_data["points"].values()):
        return []
    metric = curve_data.get("main_metric") or "score"
    by_size, by_time = figure(6.4, 4.2), figure(6.4, 4.2)
    ax_size, ax_time = by_size.add_subplot(), by_time.add_subplot()
    for strategy, table in curve_data["points"].items():
        sizes = [s for s in curve_data["sizes"] if str(s) in table]
        if not sizes:
            continue
        mean = np.array([table[str(s)]["mean"] for s in sizes])
        std = np.array([table[str(s)]["std"] for s in sizes])
        line, = ax_size.plot(sizes, mean, marker="o", label=strategy)
        ax_size.fill_between(sizes, mean - std, mean + std, alpha=0.2, color=line.get_color())
        ax_time.plot([table[str(s)]["train_time_s"] for s in sizes], mean, marker="o", label=strategy)
    ax_size.set_xscale("log")
    ax_size.set_xticks(curve_data["sizes"], [f"{size:,}" for size in curve_data["sizes"]])  # the sizes, not 10^k
    ax_size.minorticks_off()
    ax_size.set_xlabel(f"labelled training {curve_data.get('unit', 'rows')} (log)")
    ax_time.set_xscale("symlog")
    ax_time.set_xlabel("mean train time (s)")
    for ax in (ax_size, ax_time):
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    paths = []
    for made, name in zip((by_size, by_time), PLOTS):
        with atomic_open(out / name, binary=True) as handle:
            handle.write(png(made))
        paths.append(out / name)
    return paths
