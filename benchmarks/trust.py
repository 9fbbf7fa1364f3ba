"""Can a trained SST-2 model's scores be trusted, and for whom: calibration and per-group metrics of one run.

    python -m benchmarks.trust runs/sst2-minilm --train-command "nlp-transfer train recipes/sst2_minilm.yaml"

On the run's own evaluation split (SST-2 dev, 872 sentences) it
1. fits the temperature (`nlp-transfer calibrate RUN`: saved in RUN/calibration.json) and measures ECE (15 bins),
   Brier score and NLL with the raw and the calibrated probabilities, plus the ECE when the temperature is fitted on
   one half of the dev sentences and scored on the other (the dev split is both the fitting and the measuring set:
   the half-split figure is the honest one), and the accuracy of both (the temperature cannot change an argmax);
2. scores the run per group of the data card (`groups:`, sentence length buckets for SST-2): accuracy per bucket,
   the worst bucket and the best-worst gap (`nlp-transfer evaluate`);
3. writes the error analysis (`nlp-transfer errors RUN`) and a compare report with the reliability diagram and the
   per-group bars (reports/trust-<data>/).

Figures go to benchmarks/results.json (``calibration/<data>/<name>/...``, ``groups/<data>/<name>/...``) and the
"Calibration and groups" section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.record_run import RESULTS, record, replace_section

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- trust:start -->", "<!-- trust:end -->"


def measure(run: Path, name: str, train_command: str) -> dict:
    import numpy as np

    from nlp_transfer import compare, load_model
    from nlp_transfer.config import load_recipe, resolve_path
    from nlp_transfer.data.cards import load_cards
    from nlp_transfer.data.readers import read_labelled
    from nlp_transfer.analysis.error_analysis import analyse
    from nlp_transfer.evaluation import calibrate, evaluate

    recipe = load_recipe(run / "recipe.yaml")
    card = load_cards(str(resolve_path(recipe.data, recipe)))
    report = calibrate(run, card, recipe.eval_split, recipe.calibration)
    model = load_model(run)
    rows = read_labelled(card, recipe.eval_split, model.label_names).rows
    texts = [r["text"] for r in rows]
    gold = np.asarray([r["label"] for r in rows])
    raw = model.probabilities(texts, calibrated=False)
    calibrated = model.probabilities(texts)
    accuracy_raw = float(np.mean(raw.argmax(1) == gold))
    accuracy_calibrated = float(np.mean(model.calibration.decide(calibrated, model.problem_type) == gold))
    scored = evaluate(run, card, recipe.eval_split)
    analysis = analyse(run)
    report_dir = compare([run], f"reports/trust-{card.name}", f"{card.name}: calibration, groups and errors of {name}")
    return {"calibration": report, "accuracy_raw": accuracy_raw, "accuracy_calibrated": accuracy_calibrated,
            "groups": scored.get("per_group") or {}, "mistakes": analysis.summary["mistakes"],
            "confusions": analysis.summary["confusions"], "errors_md": str(analysis.folder / "errors.md"),
            "report": str(report_dir / "report.md"), "data": card.name, "split": recipe.eval_split,
            "train_command": train_command}


def entries(result: dict, key: str) -> dict[str, float]:
    c = result["calibration"]
    out = {f"calibration/{key}/temperature": round(c["temperature"], 4),
           f"calibration/{key}/dev_ece_raw": round(c["before"]["ece"], 4),
           f"calibration/{key}/dev_ece_calibrated": round(c["after"]["ece"], 4),
           f"calibration/{key}/dev_ece_crossfit": round(c["crossfit"]["ece"], 4),
           f"calibration/{key}/dev_ece_drop": round(1 - c["after"]["ece"] / c["before"]["ece"], 4),
           f"calibration/{key}/dev_ece_drop_crossfit": round(1 - c["crossfit"]["ece"] / c["before"]["ece"], 4),
           f"calibration/{key}/dev_brier_raw": round(c["before"]["brier"], 4),
           f"calibration/{key}/dev_brier_calibrated": round(c["after"]["brier"], 4),
           f"calibration/{key}/dev_nll_raw": round(c["before"]["nll"], 4),
           f"calibration/{key}/dev_nll_calibrated": round(c["after"]["nll"], 4),
           f"calibration/{key}/dev_accuracy_raw": round(result["accuracy_raw"], 4),
           f"calibration/{key}/dev_accuracy_calibrated": round(result["accuracy_calibrated"], 4)}
    for column, block in result["groups"].items():
        metric = block["metric"]
        for value, scores in block["groups"].items():
            out[f"groups/{key}/{column}/{value}/dev_{metric}"] = round(scores[metric], 4)
            out[f"groups/{key}/{column}/{value}/rows"] = scores["rows"]
        out[f"groups/{key}/{column}/worst_gap"] = round(block["gap"], 4)
    return out


def section(result: dict, name: str, command: str) -> str:
    c = result["calibration"]
    before, after, cross = c["before"], c["after"], c["crossfit"]
    lines = [START, "## Calibration, groups and errors", "",
             f"`{command}` on `{name}` (trained with `{result['train_command']}`), {result['data']} "
             f"{result['split']} split ({c['rows']} sentences). The temperature is fitted on the same dev sentences it "
             f"is measured on; the *half-split* row fits it on one half and scores the other (both ways), the figure "
             f"to expect on new data.", "",
             "| probabilities | ECE (15 bins) | Brier | NLL | accuracy |", "|---|---|---|---|---|",
             f"| raw softmax | {before['ece']:.4f} | {before['brier']:.4f} | {before['nll']:.4f} | "
             f"{result['accuracy_raw']:.4f} |",
             f"| temperature {c['temperature']:.3f} (fitted on dev) | {after['ece']:.4f} | {after['brier']:.4f} | "
             f"{after['nll']:.4f} | {result['accuracy_calibrated']:.4f} |",
             f"| temperature fitted on the other half (half-split) | {cross['ece']:.4f} | {cross['brier']:.4f} | "
             f"{cross['nll']:.4f} | {result['accuracy_raw']:.4f} |", "",
             f"ECE falls by {1 - after['ece'] / before['ece']:.0%} ({1 - cross['ece'] / before['ece']:.0%} half-split); "
             f"accuracy is unchanged (dividing logits by one positive number keeps the argmax).", ""]
    for column, block in result["groups"].items():
        metric = block["metric"]
        lines += [f"Per {column} bucket ({metric}; the card's `groups:`):", "", f"| {column} | rows | {metric} |",
                  "|---|---|---|", *(f"| {v} | {s['rows']} | {s[metric]:.4f} |" for v, s in block["groups"].items()),
                  "", f"Worst group: `{block['worst']}`; best: `{block['best']}`; gap {block['gap']:.4f}.", ""]
    top = result["confusions"][:2]
    lines += [f"Error analysis: {result['mistakes']} mistakes ("
              + ", ".join(f"{c['gold']} read as {c['predicted']}: {c['count']}" for c in top)
              + f"); the most confident ones are listed in `{result['errors_md']}` (not committed: runs/ is "
              f"ignored). Report with the reliability diagram and per-group bars: `{result['report']}`; copies in "
              f"benchmarks/figures/trust-*.png.", "", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", default=Path("runs/sst2-minilm"))
    parser.add_argument("--name", default="minilm-l6/full", help="key part naming the run, e.g. minilm-l6/full")
    parser.add_argument("--train-command", default="nlp-transfer train recipes/sst2_minilm.yaml")
    args = parser.parse_args()
    command = f"python -m benchmarks.trust {args.run} --name {args.name}"
    result = measure(args.run, args.name, args.train_command)
    figures = entries(result, f"{result['data']}/{args.name}")
    record(figures, command, RESULTS)
    import shutil

    report = Path(result["report"]).parent
    for plot in ("reliability.png", "groups.png"):
        if (report / plot).is_file():
            shutil.copy(report / plot, Path(__file__).resolve().parent / "figures" / f"trust-{result['data']}-{plot}")
    replace_section(RESULTS_MD, START, END, section(result, args.name, command))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
