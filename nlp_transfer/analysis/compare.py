"""Side-by-side report of finished runs: one table (Markdown + self-contained HTML) and PNG plots.

    from nlp_transfer import compare
    folder = compare(["runs/sst2-minilm", "runs/sst2-minilm-probe"], output="reports/sst2")
    # folder/report.md, report.html, metrics.png, learning_curves.png, confusion.png, reliability.png, groups.png

or ``nlp-transfer compare runs/sst2-minilm runs/strategies/* --out reports/sst2``.

Every run folder holds the ``metrics.json`` that training, the probe or a static baseline wrote; a key an
older run lacks shows as "—". Rows are grouped by task (then data set and metric name: scores on different
data or metrics do not compare), best main metric first. Runs that differ only by ``seed`` in their recipe.yaml, and
the seed folders of a multi-seed run (a folder holding seeds.json, `nlp_transfer.seeds`), make one row showing
``mean ± std (n seeds)``. A hyperparameter search's folder (`nlp_transfer.analysis.tune`: it holds tune.json) gives its
complete trials and its confirmed best run as rows, and the report a section with the search's trials table and plot.
"""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import NLPTransferError, did_you_mean
from ..io import atomic_open, check_folder_target, write_text_atomic
from .. import plots
from ..rundir import read_record
from ..seeds import SUMMARY, format_spread, mean_std, seed_folder
from ..strategy_configs import describe_saved
from ..tasks.base import greater_is_better
from .tune import BEST_RUN, PLOT as TRIALS_PLOT, SUMMARY as TUNE_SUMMARY, TRIALS_MD

MISSING = "—"
MAX_LABELS = 8  # per-class F1 cell: more labels than this are cut with "… (+N)"
PLOTS = ("metrics.png", "learning_curves.png", "confusion.png", "reliability.png", "groups.png")
COLUMNS = ("run", "task", "data", "model", "strategy", "metric", "eval", "test", "per-class / per-type F1",
           "trainable params", "train time", "predict samples/s")


# ---------------------------------------------------------------------------------------------- loading runs

@dataclass
class Run:
    """One finished run: its folder, the name shown in the report and its metrics.json."""

    path: Path
    metrics: dict[str, Any]
    name: str = ""
    subset: int | None = None  # train_rows from the run's recipe.yaml (older metrics.json lack "rows")
    strategy_note: str = ""  # the strategy's non-default options from recipe.yaml, e.g. "lr_decay 0.8"
    recipe: dict | None = None  # the run's recipe.yaml
    seeds: list[Run] = field(default_factory=list)  # a row of runs that differ only by seed: its members

    def get(self, *keys: str) -> Any:
        """Nested lookup that returns None where any level is missing: ``run.get("eval", "accuracy")``."""
        value: Any = self.metrics
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    @property
    def main(self) -> str | None:
        return self.metrics.get("main_metric")

    @property
    def score(self) -> float | None:
        """The main metric on the evaluation split (the mean over seeds for a row of seeds), or None."""
        spread = self.spread("eval")
        return spread[0] if spread else _number(self.get("eval", self.main)) if self.main else None

    @property
    def test_score(self) -> float | None:
        spread = self.spread("test")
        return spread[0] if spread else _number(self.get("test", self.main)) if self.main else None

    def spread(self, section: str) -> tuple[float, float, int] | None:
        """A row of seeds: mean, std and count of the main metric in ``section`` (eval, test) over its members."""
        values = [_number(run.get(section, self.main)) for run in self.seeds]
        if not self.seeds or not self.main or any(v is None for v in values):
            return None
        return (*mean_std(values), len(values))

    @property
    def group(self) -> tuple[str, str, str]:
        return (str(self.metrics.get("task") or MISSING), str(self.metrics.get("data") or MISSING),
                str(self.main or MISSING))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _runs_inside(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / "metrics.json").is_file()) if folder.is_dir() else []


def _missing_run_error(folder: Path) -> NLPTransferError:
    """One line naming the folder and the fix: a close sibling, or the run folders inside it."""
    inside = _runs_inside(folder)
    if inside:
        return NLPTransferError(f"'{folder}' holds no metrics.json but {len(inside)} run folder(s) inside it do; "
                                f"pass those, e.g. '{folder}/*' or '{inside[0]}'")
    steps = [int(p.name.removeprefix("checkpoint-")) for p in folder.glob("checkpoint-*")
             if p.name.removeprefix("checkpoint-").isdigit()]
    record = read_record(folder) if folder.is_dir() else None
    if record is not None and record.get("status") == "running":  # the run record says what the folder is
        newest = f", newest checkpoint-{max(steps)}" if steps else ""
        return NLPTransferError(f"run folder '{folder}' holds a run that has not finished (run.json: running since "
                                f"{record.get('started', '?')}{newest}); let it finish (or resume it), or leave it out")
    if steps:  # a folder from before run records
        return NLPTransferError(f"run folder '{folder}' has no metrics.json yet, only checkpoint-{max(steps)}: "
                                "training is still running or was interrupted; let it finish (or resume it), "
                                "or leave it out")
    parent = folder.parent
    siblings = [p.name for p in _runs_inside(parent) if p.name != folder.name]
    prefix = "" if str(parent) == "." else f"{parent}/"
    hint = did_you_mean(folder.name, siblings, prefix=prefix)
    fix = hint or "; pass a folder written by 'nlp-transfer train' (it holds metrics.json)"
    what = "has no metrics.json (not a finished run)" if folder.is_dir() else "does not exist"
    return NLPTransferError(f"run folder '{folder}' {what}{fix}")


def load_run(folder: str | Path) -> Run:
    folder = Path(folder)
    if folder.name == "metrics.json" and folder.is_file():  # the file itself is fine too
        folder = folder.parent
    path = folder / "metrics.json"
    if not path.is_file():
        raise _missing_run_error(folder)
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise NLPTransferError(f"{path}: corrupt metrics.json (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                               f"rerun the run that wrote it, or leave '{folder}' out") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NLPTransferError(f"{path}: cannot read it ({type(exc).__name__}: {exc})".replace("\n", " ")) from None
    if not isinstance(metrics, dict):
        raise NLPTransferError(f"{path}: corrupt metrics.json (a JSON {type(metrics).__name__}, expected an object "
                               f"with task, model, eval); rerun the run that wrote it")
    recipe = _read_recipe(folder / "recipe.yaml")
    return Run(folder, metrics, subset=_recipe_train_rows(recipe), strategy_note=strategy_note(recipe), recipe=recipe)


def _seed_folders(folder: Path) -> list[Path] | None:
    """The seed folders a multi-seed run's seeds.json lists, or None when ``folder`` is not one."""
    path = Path(folder) / SUMMARY
    if not path.is_file() or (Path(folder) / "metrics.json").is_file():
        return None
    try:
        seeds = json.loads(path.read_text(encoding="utf-8")).get("seeds")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        seeds = None
    if not isinstance(seeds, list) or not seeds:
        raise NLPTransferError(f"{path}: corrupt {SUMMARY} (no list of seeds); train the recipe again with "
                               f"resume=true to rewrite it")
    return [seed_folder(folder, seed) for seed in seeds]


def _tune_folders(folder: Path) -> list[Path] | None:
    """The finished run folders of a search (complete trials, then the confirmed best run), or None when ``folder``
    holds no tune.json."""
    if not (Path(folder) / TUNE_SUMMARY).is_file():
        return None
    found = [p for p in sorted(Path(folder).glob("trial-*")) if (p / "metrics.json").is_file()]
    found += [p for p in [Path(folder) / BEST_RUN] if (p / "metrics.json").is_file()]
    if not found:
        raise NLPTransferError(f"{folder}: a search with no finished trial yet (no trial-*/metrics.json); let "
                               f"nlp-transfer tune finish a trial first")
    return found


def searches_of(runs: list[Run]) -> list[Path]:
    """The search folders (tune.json) the runs come from, in order of appearance."""
    found: list[Path] = []
    for run in runs:
        for member in run.seeds or [run]:
            parent = member.path.parent
            if (parent / TUNE_SUMMARY).is_file() and parent not in found:
                found.append(parent)
    return found


def search_lines(searches: list[Path], output: Path) -> list[str]:
    """Markdown: each search's summary lines and trials table (from its trials.md), then its trials.png."""
    lines = []
    for folder in searches:
        trials = folder / TRIALS_MD
        if not trials.is_file():
            continue
        body = trials.read_text(encoding="utf-8").splitlines()
        table = [line for line in body if line.startswith("|")]
        text = [line for line in body if line and not line.startswith(("|", "#"))]
        lines += [f"## Hyperparameter search: `{folder}`", "", *text, "", *table, ""]
        if (folder / TRIALS_PLOT).is_file():
            lines += [f"![trials of {folder.name}]({_relative(folder / TRIALS_PLOT, output)})", ""]
    return lines


SEED_ONLY_KEYS = ("seed", "seeds", "output_dir", "resume", "overwrite")  # what runs of one recipe may differ by


def _group_seeds(runs: list[Run]) -> list[Run]:
    """Runs whose recipe.yaml differ only by seed (two or more, distinct seeds) become one row, in place of the
    first; the others keep their rows as they are."""
    def recipe_key(run: Run) -> str | None:
        if run.recipe is None:
            return None
        return json.dumps({k: v for k, v in run.recipe.items() if k not in SEED_ONLY_KEYS}, sort_keys=True, default=str)

    groups: dict[str | None, list[Run]] = {}
    for run in runs:
        groups.setdefault(recipe_key(run), []).append(run)
    out = []
    for run in runs:
        members = groups[recipe_key(run)]
        seeds = [str(member.recipe.get("seed")) for member in members] if run.recipe is not None else []
        if len(members) < 2 or run.recipe is None or len(set(seeds)) < len(seeds):
            out.append(run)
        elif run is members[0]:
            parents = {member.path.parent for member in members}
            parent = next(iter(parents)) if len(parents) == 1 and (next(iter(parents)) / SUMMARY).is_file() else None
            runtimes = [_number(member.get("train", "runtime_s")) for member in members]
            metrics = {**run.metrics, "history": []}  # one seed's curves, per-class scores or confusion matrix
            for section in ("eval", "test"):          # would pass for the row's: only the mean main metric stays
                if isinstance(metrics.get(section), dict):
                    spread = Run(run.path, run.metrics, seeds=members).spread(section)
                    metrics[section] = {run.main: spread[0]} if spread else {}
            if all(r is not None for r in runtimes):  # the mean training time of one seed
                metrics["train"] = {**(metrics.get("train") or {}), "runtime_s": mean_std(runtimes)[0]}
            out.append(Run(parent or run.path, metrics, subset=run.subset, strategy_note=run.strategy_note,
                           recipe=run.recipe, seeds=members))
    return out


def _read_recipe(path: Path) -> dict | None:
    """Context only: a missing or unreadable recipe.yaml just leaves the details out."""
    import yaml

    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return recipe if isinstance(recipe, dict) else None


def strategy_note(recipe: dict | None) -> str:
    """The options that distinguish a run's strategy, e.g. ``lr decay 0.8`` or ``n 2``: the strategy's own
    `describe` (`strategy_configs.describe_saved`, which reads old runs' flat ``strategy:`` mappings too)."""
    strategy = (recipe or {}).get("strategy")
    return describe_saved(strategy) if isinstance(strategy, (dict, str)) else ""


def _recipe_train_rows(recipe: dict | None) -> int | None:
    rows = recipe.get("train_rows") if isinstance(recipe, dict) else None
    return rows if isinstance(rows, int) and not isinstance(rows, bool) else None


def load_runs(run_dirs) -> list[Run]:
    """Load each folder's metrics.json (duplicates dropped) and give each run a unique display name."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    runs, seen = [], set()
    for folder in run_dirs:
        # a multi-seed run: its seed folders; a search: its finished trials
        for one in _seed_folders(Path(folder)) or _tune_folders(Path(folder)) or [folder]:
            run = load_run(one)
            if run.path.resolve() not in seen:
                seen.add(run.path.resolve())
                runs.append(run)
    if not runs:
        raise NLPTransferError("compare: no run folders given; pass one or more, "
                               "e.g. runs/sst2-minilm runs/strategies/*")
    _name_runs(runs)
    grouped = _group_seeds(runs)
    rows = [run for run in grouped if run.seeds]
    _name_runs(grouped)
    for run in rows:  # runs of one recipe outside a multi-seed folder: their own names
        if not (run.path / SUMMARY).is_file():
            run.name = ", ".join(member.name for member in run.seeds)
    return grouped


def _name_runs(runs: list[Run]) -> None:
    """The folder name, or as many trailing path parts as it takes to tell same-named folders apart."""
    parts = [run.path.resolve().parts for run in runs]
    depth = 1
    while True:
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth >= max(map(len, parts)):
            break
        depth += 1
    for run, name in zip(runs, names):
        run.name = name


def sort_runs(runs: list[Run]) -> list[Run]:
    """Task, then data set and metric name, then best main metric first (runs without one last)."""
    def key(run: Run):
        score = run.score
        missing = score is None or math.isnan(score)
        sign = -1 if greater_is_better(run.main) else 1  # best first
        return (*run.group, missing, 0.0 if missing else sign * score, run.name)

    return sorted(runs, key=key)


# ---------------------------------------------------------------------------------------------- table cells

def _fmt_score(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def _fmt_count(count: float) -> str:
    for limit, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            return f"{count / limit:.1f}{unit}"
    return f"{count:.0f}"


def _fmt_percent(share: float) -> str:
    if share >= 10 or share == 0:
        return f"{share:.0f}%"
    return f"{share:.1f}%" if share >= 1 else f"{share:.2g}%"


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


def _fmt_spread(run: Run, section: str) -> str | None:
    spread = run.spread(section)
    return format_spread(*spread) if spread else None


def _split_note(value: str, split: Any, usual: str) -> str:
    return value if value == MISSING or not split or split == usual else f"{value} ({split})"


def per_label_f1(run: Run) -> str:
    """``negative 0.8918, positive 0.8992`` from eval.per_class (classification) or eval.per_type (NER)."""
    table = run.get("eval", "per_class") or run.get("eval", "per_type")
    if not isinstance(table, dict):
        return MISSING
    cells = [f"{label} {_fmt_score(_number(scores.get('f1')))}" for label, scores in table.items()
             if isinstance(scores, dict)]
    if len(cells) > MAX_LABELS:
        cells = cells[:MAX_LABELS] + [f"… (+{len(cells) - MAX_LABELS})"]
    return ", ".join(cells) or MISSING


def trainable_params(run: Run) -> str:
    trainable, total = _number(run.get("params", "trainable")), _number(run.get("params", "total"))
    if trainable is None:
        return MISSING
    return _fmt_count(trainable) + (f" ({_fmt_percent(100 * trainable / total)})" if total else "")


def predict_rate(run: Run) -> float | None:
    """predict.samples_per_second; older runs lack it, so fall back on the evaluation throughput that the
    Trainer logged in history (the same measurement: the batched evaluation loop of the trained model)."""
    rate = _number(run.get("predict", "samples_per_second"))
    if rate is None:
        history = run.metrics.get("history")
        logged = [_number(e.get("eval_samples_per_second")) for e in history if isinstance(e, dict)] \
            if isinstance(history, list) else []
        rate = next((r for r in reversed(logged) if r is not None), None)
    return rate


def row(run: Run) -> dict[str, str]:
    """The report's cells for one run, keyed by COLUMNS."""
    runtime, rate = _number(run.get("train", "runtime_s")), predict_rate(run)
    text = {key: str(run.metrics.get(key) or MISSING) for key in ("task", "data", "model", "strategy")}
    if run.strategy_note:
        text["strategy"] += f" ({run.strategy_note})"
    train_rows = _number(run.get("rows", "train")) or run.subset
    if train_rows is not None:  # a run on a subset (train_rows) scores differently from one on the full split
        text["data"] += f" ({train_rows:,.0f} train)"
    return {
        "run": run.name, **text,
        "metric": run.main or MISSING,
        "eval": _split_note(_fmt_spread(run, "eval") or _fmt_score(run.score), run.metrics.get("eval_split"),
                            "validation"),
        "test": _split_note(_fmt_spread(run, "test") or _fmt_score(run.test_score), run.metrics.get("test_split"),
                            "test"),
        "per-class / per-type F1": per_label_f1(run),
        "trainable params": trainable_params(run),
        "train time": MISSING if runtime is None else _fmt_duration(runtime),
        "predict samples/s": MISSING if rate is None else _fmt_rate(rate),
    }


def markdown_table(runs: list[Run]) -> str:
    """The comparison table in Markdown, rows in report order (``sort_runs``)."""
    def cell(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(row(run)[c]) for c in COLUMNS) + " |" for run in sort_runs(runs)]
    return "\n".join(lines)


def html_table(runs: list[Run]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(row(run)[c])}</td>" for c in COLUMNS) + "</tr>"
                     for run in sort_runs(runs))
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


# ---------------------------------------------------------------------------------------------- plots

def _colours(runs: list[Run]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(runs) <= 10 else "tab20"]
    return {run.name: palette(i % palette.N) for i, run in enumerate(runs)}


def metrics_plot(runs: list[Run]) -> bytes | None:
    """Horizontal bars of the main metric per run, one colour per task group; a diamond marks the test score."""
    scored = [run for run in sort_runs(runs) if run.score is not None and not math.isnan(run.score)]
    if not scored:
        return None
    from matplotlib import colormaps

    groups = list(dict.fromkeys(run.group for run in scored))
    palette = colormaps["Set2"]
    figure = plots.figure(8.5, 1.2 + 0.42 * len(scored) + 0.3 * len(groups))
    axes = figure.add_subplot()
    positions, y = [], 0.0
    for index, group in enumerate(groups):
        members = [run for run in scored if run.group == group]
        ys = [y + i for i in range(len(members))]
        positions += ys
        axes.barh(ys, [run.score for run in members], color=palette(index % palette.N), height=0.7,
                  label=" · ".join(group))
        for run, at in zip(members, ys):
            axes.text(run.score, at, f" {run.score:.4f}", va="center", fontsize=8)
            if run.test_score is not None:
                axes.plot(run.test_score, at, "D", color="black", markersize=4)
        y += len(members) + 0.8  # a gap between groups
    if any(run.test_score is not None for run in scored):
        axes.plot([], [], "D", color="black", markersize=4, linestyle="none", label="test split")
    axes.set_yticks(positions, [run.name for run in scored], fontsize=8)
    axes.invert_yaxis()
    low = min(0.0, *(run.score for run in scored))
    axes.set_xlim(low, max(run.score for run in scored) * 1.15 or 1.0)
    axes.set_xlabel("main metric on the evaluation split")
    figure.legend(fontsize=8, loc="outside lower center", ncol=min(2, len(groups) + 1), frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return plots.png(figure)


def _curve(history: Any, key: str) -> tuple[list[float], list[float]]:
    points = [(e["step"], e[key]) for e in history if isinstance(e, dict) and _number(e.get("step")) is not None
              and _number(e.get(key)) is not None] if isinstance(history, list) else []
    return [p[0] for p in points], [p[1] for p in points]


def learning_curves_plot(runs: list[Run]) -> bytes | None:
    """Train loss (left) and the eval main metric (right) against the step, one line per run with history."""
    ordered = sort_runs(runs)
    curves = {run.name: (run, _curve(run.metrics.get("history"), "loss"),
                         _curve(run.metrics.get("history"), f"eval_{run.main}"))
              for run in ordered}
    curves = {name: c for name, c in curves.items() if c[1][0] or c[2][0]}
    if not curves:
        return None
    colours = _colours(ordered)
    figure = plots.figure(12, 4.5)
    loss_axes, eval_axes = figure.subplots(1, 2)
    metric_names = {run.main for run, _, _ in curves.values()}
    for name, (run, (loss_x, loss_y), (eval_x, eval_y)) in curves.items():
        if loss_x:
            loss_axes.plot(loss_x, loss_y, color=colours[name], label=name, linewidth=1.2)
        if eval_x:
            label = name if len(metric_names) == 1 else f"{name} ({run.main})"
            eval_axes.plot(eval_x, eval_y, color=colours[name], label=label, marker="o", markersize=3)
    lengths = [max(loss_x + eval_x) for _, (loss_x, _), (eval_x, _) in curves.values()]
    log_x = min(lengths) > 0 and max(lengths) / min(lengths) > 5  # else a short run is squashed at the left
    xlabel = "step (log scale)" if log_x else "step"
    loss_axes.set(title="training loss", xlabel=xlabel, ylabel="loss")
    metric = next(iter(metric_names)) if len(metric_names) == 1 else "main metric"
    eval_axes.set(title=f"evaluation {metric}", xlabel=xlabel, ylabel=metric)
    for axes in (loss_axes, eval_axes):
        if log_x:  # ticks at 1, 2, 5 x 10^k written plainly (100, 200, 500), not as powers
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            axes.set_xscale("log")
            axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=7)
    return plots.png(figure)


def best_confusion_run(runs: list[Run]) -> Run | None:
    """The classification run with the best main metric among those whose eval holds a confusion matrix."""
    def has_matrix(run: Run) -> bool:
        matrix = run.get("eval", "confusion_matrix")
        return isinstance(matrix, dict) and isinstance(matrix.get("matrix"), list) and bool(matrix["matrix"])

    candidates = [run for run in sort_runs(runs) if has_matrix(run) and run.score is not None]
    candidates = [run for run in candidates if not math.isnan(run.score)]
    if not candidates:
        return None
    return max(candidates, key=lambda run: run.score if greater_is_better(run.main) else -run.score)


def confusion_plot(run: Run) -> bytes:
    """Counts in each cell; colour = share of the gold row (recall), so classes of any size read alike."""
    import numpy as np

    table = run.get("eval", "confusion_matrix")
    counts = np.asarray(table["matrix"], dtype=float)
    labels = [str(label) for label in table.get("labels") or range(len(counts))]
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.55 * len(labels)
    figure = plots.figure(size + 1.2, size)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        axes.text(j, i, f"{count:.0f}", ha="center", va="center", fontsize=9,
                  color="white" if shares[i, j] > 0.6 else "black")
    slanted = len(labels) > 3
    axes.set_xticks(range(len(labels)), labels, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="gold",
             title=f"{run.name}: {run.metrics.get('eval_split') or 'eval'} ({run.main} {run.score:.4f})")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of gold row")
    return plots.png(figure)


def reliability_plot(runs: list[Run]) -> bytes | None:
    """Reliability diagram: accuracy against confidence per bin, raw (dashed) and calibrated (solid), per run with a
    calibration report in its metrics.json."""
    calibrated = [run for run in sort_runs(runs) if run.get("calibration", "reliability")]
    if not calibrated:
        return None
    colours = _colours(calibrated)
    figure = plots.figure(6.5, 5.5)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="perfect calibration")
    for run in calibrated:
        report = run.metrics["calibration"]
        for stage, style in (("before", "--"), ("after", "-")):
            bins = report["reliability"][stage]
            label = (f"{run.name}: ECE {report['before']['ece']:.3f} raw" if stage == "before" else
                     f"{run.name}: ECE {report['after']['ece']:.3f} at T={report['temperature']:.2f}")
            axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style, marker="o",
                      markersize=3, color=colours[run.name], label=label, linewidth=1.2)
    axes.set_xlabel("confidence (mean predicted probability in the bin)")
    axes.set_ylabel("accuracy in the bin")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize=7, loc="upper left")
    return plots.png(figure)


def groups_plot(runs: list[Run]) -> bytes | None:
    """Per-group bars: the main metric of each group (card groups, languages) on the evaluation split, per run."""
    grouped = [run for run in sort_runs(runs) if run.get("eval", "per_group")]
    if not grouped:
        return None
    columns = list(dict.fromkeys(column for run in grouped for column in run.metrics["eval"]["per_group"]))
    colours = _colours(grouped)
    figure = plots.figure(4.5 * len(columns) + 1, 4)
    for axes, column in zip(figure.subplots(1, len(columns), squeeze=False)[0], columns):
        members = [run for run in grouped if column in run.metrics["eval"]["per_group"]]
        values = list(dict.fromkeys(v for run in members for v in run.metrics["eval"]["per_group"][column]["groups"]))
        width = 0.8 / len(members)
        for k, run in enumerate(members):
            block = run.metrics["eval"]["per_group"][column]
            heights = [block["groups"].get(v, {}).get(block["metric"], 0.0) for v in values]
            axes.bar([i + k * width for i in range(len(values))], heights, width, color=colours[run.name],
                     label=f"{run.name} (gap {block['gap']:.3f})")
        axes.set_xticks([i + width * (len(members) - 1) / 2 for i in range(len(values))], values, fontsize=8)
        axes.set_title(f"by {column}", fontsize=10)
        axes.set_ylabel(members[0].metrics["eval"]["per_group"][column]["metric"])
        axes.legend(fontsize=7, loc="lower right")
    return plots.png(figure)


def trust_lines(runs: list[Run], output: Path) -> list[str]:
    """Markdown: calibration per run, the worst group per group column, links to each run's error analysis."""
    lines = []
    calibrated = [run for run in sort_runs(runs) if run.get("calibration", "after")]
    if calibrated:
        lines += ["## Calibration (evaluation split)", "",
                  "| run | temperature | ECE raw | ECE calibrated | ECE, T fitted on the other half | Brier raw | "
                  "Brier calibrated |", "|---|---|---|---|---|---|---|"]
        for run in calibrated:
            c = run.metrics["calibration"]
            cross = f"{c['crossfit']['ece']:.4f}" if c.get("crossfit") else MISSING
            lines.append(f"| {run.name} | {c['temperature']:.3f} | {c['before']['ece']:.4f} | {c['after']['ece']:.4f} "
                         f"| {cross} | {c['before']['brier']:.4f} | {c['after']['brier']:.4f} |")
        lines.append("")
    grouped = [run for run in sort_runs(runs) if run.get("eval", "per_group")]
    if grouped:
        lines += ["## Worst groups (evaluation split)", "", "| run | grouped by | metric | worst group | best group | gap |",
                  "|---|---|---|---|---|---|"]
        for run in grouped:
            for column, block in run.metrics["eval"]["per_group"].items():
                worst, best = block["groups"][block["worst"]], block["groups"][block["best"]]
                lines.append(f"| {run.name} | {column} | {block['metric']} | {block['worst']} "
                             f"({worst[block['metric']]:.4f}, {worst['rows']} rows) | {block['best']} "
                             f"({best[block['metric']]:.4f}) | {block['gap']:.4f} |")
        lines.append("")
    analysed = [run for run in sort_runs(runs) if (run.path / "errors" / "errors.md").is_file()]
    if analysed:
        lines += ["## Error analysis", "", *(f"- `{run.name}`: [errors.md]({_relative(run.path / 'errors' / 'errors.md', output)})"
                                             for run in analysed), ""]
    return lines


def _lines_html(lines: list[str], output: Path) -> list[str]:
    """Report lines as HTML: headings, tables (pipe rows), links in list items, images (embedded; paths relative to
    ``output``)."""
    import re

    out, table = [], []

    def flush():
        if table:
            rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table if not line.startswith("|---")]
            head, body = rows[0], rows[1:]
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        image = re.fullmatch(r"!\[(.+?)\]\((.+?)\)", line)
        if image and (output / image.group(2)).is_file():  # a plot beside the runs: embedded, the page stays whole
            encoded = base64.b64encode((output / image.group(2)).read_bytes()).decode("ascii")
            out.append(f"<img alt=\"{html.escape(image.group(1))}\" src=\"data:image/png;base64,{encoded}\">")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            link = re.search(r"\[(.+?)\]\((.+?)\)", line)
            text = html.escape(line[2:link.start()].replace("`", "")) if link else html.escape(line[2:])
            out.append(f"<p>{text}<a href=\"{html.escape(link.group(2))}\">{html.escape(link.group(1))}</a></p>"
                       if link else f"<p>{text}</p>")
    flush()
    return out


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


# ---------------------------------------------------------------------------------------------- the report

@dataclass
class Report:
    """What ``write_report`` produced: the folder, the files written, the Markdown table."""

    output: Path
    table: str
    files: list[Path] = field(default_factory=list)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f2f2f2}tbody tr:nth-child(even){background:#fafafa}img{max-width:100%;margin:1em 0}
.note{color:#555;font-size:13px}"""

CAPTIONS = {"metrics.png": "Main metric per run",
            "learning_curves.png": "Learning curves",
            "confusion.png": "Confusion matrix of the best classification run",
            "reliability.png": "Reliability diagram (evaluation split)",
            "groups.png": "Main metric per group (evaluation split)"}


def _notes(runs: list[Run]) -> str:
    return (f"{len(runs)} run(s). *eval*: the main metric on each run's evaluation split (validation unless noted); "
            "*test*: scored once on the held-out test split, where the run has one. *predict samples/s*: batched "
            "evaluation throughput of the trained model. Rows grouped by task, data set and metric; best first.")


def _markdown(title: str, runs: list[Run], table: str, sections: list[str], plots: dict[str, bytes],
              confusion: Run | None) -> str:
    """``sections``: the Markdown lines between the table and the plots (trust notes, searches), shared with _html."""
    lines = [f"# {title}", "", _notes(runs), "", table, "", *sections]
    for name in plots:
        caption = CAPTIONS[name] + (f" ({confusion.name})" if name == "confusion.png" and confusion else "")
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    lines += ["## Runs", "", *(f"- `{run.name}`: `{run.path}`" for run in sort_runs(runs)), "",
              f"Generated by `nlp-transfer compare` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    return "\n".join(lines)


def _html(title: str, runs: list[Run], sections: list[str], plots: dict[str, bytes], confusion: Run | None,
          output: Path) -> str:
    parts = ["<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title>",
             f"<style>\n{CSS}\n</style>\n</head>\n<body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">{html.escape(_notes(runs).replace('*', ''))}</p>", html_table(runs),
             *_lines_html(sections, output)]
    for name, png in plots.items():
        caption = CAPTIONS[name] + (f" ({confusion.name})" if name == "confusion.png" and confusion else "")
        encoded = base64.b64encode(png).decode("ascii")
        parts += [f"<h2>{html.escape(caption)}</h2>",
                  f"<img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,{encoded}\">"]
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


def default_title(runs: list[Run]) -> str:
    data = sorted({str(run.metrics.get("data")) for run in runs if run.metrics.get("data")})
    return f"{', '.join(data) or 'Runs'}: {len(runs)} run(s) compared"


def write_report(runs: list[Run], output: str | Path = "reports/compare", title: str | None = None) -> Report:
    """Write report.md, report.html and the PNG plots for already loaded runs (see ``load_runs``).
    Each file is written whole or not at all; a plot this report has no data for is removed if an older
    report left one there, so the folder never shows a stale picture."""
    output = check_folder_target(output, "output")
    title = title or default_title(runs)
    confusion = best_confusion_run(runs)
    rendered = {"metrics.png": metrics_plot(runs), "learning_curves.png": learning_curves_plot(runs),
                "confusion.png": confusion_plot(confusion) if confusion else None,
                "reliability.png": reliability_plot(runs), "groups.png": groups_plot(runs)}
    plots = {name: png for name, png in rendered.items() if png is not None}
    report = Report(output, markdown_table(runs))
    for name in PLOTS:
        if name in plots:
            with atomic_open(output / name, binary=True) as handle:
                handle.write(plots[name])
            report.files.append(output / name)
        else:
            (output / name).unlink(missing_ok=True)
    sections = trust_lines(runs, output) + search_lines(searches_of(runs), output)
    write_text_atomic(output / "report.html", _html(title, runs, sections, plots, confusion, output))
    write_text_atomic(output / "report.md", _markdown(title, runs, report.table, sections, plots, confusion))
    report.files[:0] = [output / "report.md", output / "report.html"]
    return report


def compare(run_dirs, output: str | Path = "reports/compare", title: str | None = None) -> Path:
    """Compare finished runs side by side; returns the folder holding report.md, report.html and the plots.

    ``run_dirs``: run folders (each with the metrics.json that training wrote). Raises NLPTransferError,
    one line naming the folder and the fix, for a folder without metrics.json or with a corrupt one.
    """
    check_folder_target(output, "output")  # before reading any run: a wrong path fails fast
    return write_report(load_runs(run_dirs), output, title).output
