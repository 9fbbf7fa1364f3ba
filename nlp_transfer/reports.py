"""Human-readable outputs: the model card (README.md) written beside every trained model."""
from __future__ import annotations

from typing import Any

import yaml

from .models import ALIASES


def _metric_rows(scores: dict[str, Any]) -> list[str]:
    return [f"| {name} | {value:.4f} |" for name, value in scores.items() if isinstance(value, float)]


def _per_class_rows(scores: dict[str, Any]) -> list[str]:
    per_class = scores.get("per_class") or scores.get("per_type") or {}
    return [f"| {name} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |"
            for name, v in per_class.items()]


def _per_group_rows(scores: dict[str, Any]) -> list[str]:
    """One table per group column (the card's groups, languages), then its worst group and the best-worst gap."""
    by_group = scores.get("per_group") or {}
    if not by_group and scores.get("per_language"):  # records from before groups existed
        by_group = {"language": {"groups": scores["per_language"]}}
    lines = []
    for column, block in by_group.items():
        table = block["groups"]
        names = [k for k in next(iter(table.values()), {}) if k != "rows"]
        if not names:
            continue
        lines += [f"| {column} | rows | {' | '.join(names)} |", "|---|---|" + "---|" * len(names),
                  *(f"| {value} | {v['rows']} | " + " | ".join(f"{v[n]:.4f}" for n in names) + " |"
                    for value, v in table.items()), ""]
        if "worst" in block:
            metric = block["metric"]
            lines += [f"By {column}, the worst group is `{block['worst']}` ({metric} {table[block['worst']][metric]:.4f}); "
                      f"the gap to the best (`{block['best']}`) is {block['gap']:.4f}.", ""]
    return lines


def results_lines(title: str, scores: dict[str, Any], heading: str | None = None) -> list[str]:
    lines = [heading or f"## Results on `{title}`", "", "| metric | value |", "|---|---|", *_metric_rows(scores), ""]
    per_class = _per_class_rows(scores)
    if per_class:
        lines += ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|", *per_class, ""]
    lines += _per_group_rows(scores)
    types = scores.get("types")
    if types:  # NER across datasets: what was left out of the scores
        left_out = [f"{k} ({n} gold entities)" for k, n in types["data_only"].items()]
        left_out += [f"{k} ({n} predicted entities)" for k, n in types["model_only"].items()]
        lines += [f"Scored on the entity types shared by model and data ({', '.join(types['scored'])}); "
                  f"left out: {', '.join(left_out)}.", ""]
    return lines


def calibration_lines(report: dict[str, Any] | None, pipeline: bool = True) -> list[str]:
    """The model card's calibration section: the temperature, ECE / Brier before and after, tuned thresholds."""
    if not report:
        return []
    before, after = report["before"], report["after"]
    lines = ["## Calibration", "",
             f"Fitted on `{report['split']}` ({report['rows']} rows) after training and saved in `calibration.json`: "
             f"temperature {report['temperature']:.3f} (logits are divided by it before softmax / sigmoid; the "
             f"ranking of labels does not change).", "",
             f"| | ECE ({report.get('bins', 15)} bins) | Brier | NLL |", "|---|---|---|---|",
             f"| raw scores | {before['ece']:.4f} | {before['brier']:.4f} | {before['nll']:.4f} |",
             f"| calibrated | {after['ece']:.4f} | {after['brier']:.4f} | {after['nll']:.4f} |"]
    rejected = report.get("rejected")
    if rejected:
        lines.append(f"| not applied: T = {rejected['temperature']:.3f} | {rejected['ece']:.4f} | "
                     f"{rejected['brier']:.4f} | {rejected['nll']:.4f} |")
        lines.insert(3, f"The fitted temperature {rejected['temperature']:.3f} lowered the NLL but raised the ECE on "
                        f"the rows it was fitted on, so it is not applied: the scores stay raw (T = 1).")
        lines.insert(4, "")
    if report.get("crossfit"):
        cross = report["crossfit"]
        lines.append(f"| calibrated, fitted on the other half | {cross['ece']:.4f} | {cross['brier']:.4f} | "
                     f"{cross['nll']:.4f} |")
    lines.append("")
    thresholds = report.get("thresholds") or {}
    if thresholds.get("per_label"):
        lines += ["Per-label decision thresholds (each maximising the label's F1 on the same split): "
                  + ", ".join(f"{name} {v['threshold']:.3f}" for name, v in thresholds["per_label"].items()) + ".", ""]
    binary = thresholds.get("binary")
    if binary:
        lines += [f"Decision threshold for `{binary['label']}` tuned for {binary['target']}: "
                  + (f"{binary['threshold']:.3f} (precision {binary['precision']:.3f}, recall {binary['recall']:.3f} "
                     f"on `{report['split']}`)." if "threshold" in binary else binary["note"] + "."), ""]
    if pipeline:
        lines += ["`nlp_transfer.load_model(...).predict` applies all of this (`calibrated=False` for the raw scores). "
                  "A plain transformers `pipeline` reads only the weights: it ignores the temperature and any tuned "
                  "threshold, and gives the raw scores.", ""]
    else:
        lines += ["`nlp_transfer.load_model(...).predict` applies it (`calibrated=False` for the raw scores).", ""]
    return lines


USAGE = {
    "text-classification": ['classifier = pipeline("text-classification", model="PATH/TO/THIS/FOLDER")',
                            'classifier("a charming and often affecting journey")'],
    "token-classification": ['tagger = pipeline("token-classification", model="PATH/TO/THIS/FOLDER", '
                             'aggregation_strategy="simple")',
                             'tagger("Angela Merkel visited Paris.")'],
}


def _license_fields(text: str | None) -> dict[str, str]:
    """Hub metadata wants an identifier (``mit``, ``cc-by-4.0``); free text goes under ``license_name``."""
    if not text:
        return {"license": "unknown"}
    if " " not in text.strip():
        return {"license": text.strip().lower()}
    return {"license": "other", "license_name": text.strip()}


def model_card(recipe, card, metrics: dict[str, Any], label_names: list[str],
               pipeline_tag: str = "text-classification") -> str:
    """A Hugging Face style model card: YAML metadata, results, labels, usage, data notes."""
    base = ALIASES[recipe.model].description if recipe.model in ALIASES else recipe.model
    header = {
        "library_name": "transformers",
        "pipeline_tag": pipeline_tag,
        "tags": ["nlp_transfer", recipe.task, recipe.strategy.name],
        **_license_fields(card.license),
        "language": card.language,
        "datasets": [card.name],
    }
    header = {k: v for k, v in header.items() if v is not None}
    split = metrics.get("eval_split")
    train = metrics["train"]
    probe = metrics.get("backend") == "probe"
    if probe:  # a linear probe on pooled features: nlp_transfer loads it, a transformers pipeline cannot
        header["library_name"] = "nlp_transfer"
        pairs = train.get("contrastive")
        how = (f"the encoder trained on {pairs['pairs']:,} sentence pairs of the labelled rows ({pairs['steps']} steps, "
               f"sentence-transformers, saved in `encoder/`), then a linear probe fitted on its pooled features"
               if pairs else "a linear probe fitted on the frozen encoder's pooled features")
        done = (f"{how} (C={train.get('C')}, chosen on `{split}`) in {train['runtime_s']:.0f} s; "
                f"{metrics['params']['trainable']:,} of {metrics['params']['total']:,} parameters trained.")
    else:
        done = (f"{train['global_step']} steps in {train['runtime_s']:.0f} s on {metrics['world_size']} process(es); "
                f"{metrics['params']['trainable']:,} of {metrics['params']['total']:,} parameters trained.")
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(), "---", "",
        f"# {card.name} classifier ({recipe.task}, {metrics['problem_type']})", "",
        f"Trained with nlp_transfer from **{base}** on the `{card.name}` data card, strategy `{recipe.strategy.name}`: "
        + done, "",
    ]
    if getattr(recipe, "label_map", None):
        lines += ["Entity types mapped as every split was read (`label_map`): "
                  + ", ".join(f"{k} → {v}" for k, v in recipe.label_map.items()) + ".", ""]
    if split:
        lines += results_lines(split, metrics.get("eval", {}))
    if metrics.get("test"):
        lines += results_lines(metrics["test_split"] + " (held out: not used for training or checkpoint selection)",
                          metrics["test"])
    for name, scores in (metrics.get("eval_sets") or {}).items():
        lines += results_lines(name, scores, f"## Results on `{name}` (`{scores.get('data')}`, split `{scores.get('split')}`; "
                                        f"extra evaluation set, scored once by the final model)")
    lines += calibration_lines(metrics.get("calibration"), pipeline=not probe)
    lines += [
        "## Labels", "", ", ".join(f"`{i}`: {name}" for i, name in enumerate(label_names)), "",
        "## Use", "", "```python",
        *(["from nlp_transfer import load_model", "load_model(\"PATH/TO/THIS/FOLDER\").predict([...])",
           "# the probe's weights are probe.safetensors: a transformers pipeline does not read them"] if probe else
          ["from transformers import pipeline", *USAGE.get(pipeline_tag, []),
           "# or: from nlp_transfer import load_model; load_model(\"PATH\").predict([...])"]),
        "```", "",
        "The training recipe is in `recipe.yaml`; metrics in `metrics.json`; predictions on the evaluation split in "
        "`predictions_*.jsonl`; TensorBoard logs in `logs/`.", "",
    ]
    if card.description:
        lines += ["## Training data", "", card.description.strip(), ""]
    return "\n".join(lines)
