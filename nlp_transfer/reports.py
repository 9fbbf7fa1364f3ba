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


def _per_language_rows(scores: dict[str, Any]) -> list[str]:
    per_language = scores.get("per_language") or {}
    names = [k for k in next(iter(per_language.values()), {}) if k != "rows"]
    if not names:
        return []
    return [f"| language | rows | {' | '.join(names)} |", "|---|---|" + "---|" * len(names),
            *(f"| {language} | {v['rows']} | " + " | ".join(f"{v[n]:.4f}" for n in names) + " |"
              for language, v in per_language.items()), ""]


def results_lines(title: str, scores: dict[str, Any], heading: str | None = None) -> list[str]:
    lines = [heading or f"## Results on `{title}`", "", "| metric | value |", "|---|---|", *_metric_rows(scores), ""]
    per_class = _per_class_rows(scores)
    if per_class:
        lines += ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|", *per_class, ""]
    lines += _per_language_rows(scores)
    types = scores.get("types")
    if types:  # NER across datasets: what was left out of the scores
        left_out = [f"{k} ({n} gold entities)" for k, n in types["data_only"].items()]
        left_out += [f"{k} ({n} predicted entities)" for k, n in types["model_only"].items()]
        lines += [f"Scored on the entity types shared by model and data ({', '.join(types['scored'])}); "
                  f"left out: {', '.join(left_out)}.", ""]
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
