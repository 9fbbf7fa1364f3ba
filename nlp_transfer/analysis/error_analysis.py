"""Where a trained model fails: its most confident mistakes, the labels it confuses, NER entity errors by kind,
and (optionally) training rows whose label is likely wrong.

    from nlp_transfer.analysis.error_analysis import analyse
    analyse("runs/sst2-demo")                        # the run's evaluation split -> runs/sst2-demo/errors/
    analyse("runs/conll03-minilm", split="test")     # entity errors by kind
    analyse("runs/sst2-demo", label_issues=True, train_rows=5000)

or ``nlp-transfer errors RUN_DIR [--split S] [--data CARD] [--label-issues]``. Writes ``errors.md`` (for people) and
JSONL files (for tools) into ``RUN_DIR/errors/`` (or ``out``), each atomically:

- ``mistakes.jsonl``: wrong predictions, most confident first (text, gold, predicted, score: the calibrated
  probability of the predicted label);
- ``confusions.jsonl``: (gold, predicted) label pairs by count (classification) or entity types (NER);
- ``entity_errors.jsonl`` (NER): every entity error with its kind: ``wrong type`` (same words, other type),
  ``wrong boundary`` (same type, overlapping words), ``wrong type and boundary``, ``missed`` (a gold entity no
  prediction overlaps), ``spurious`` (a predicted entity no gold one overlaps);
- ``label_issues.jsonl`` (``label_issues=True``, single-label classification): training rows ranked by how likely
  their label is wrong (`nlp_transfer.analysis.label_issues`: confident learning on cross-validated frozen-feature probes).
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import NLPTransferError

ERRORS_DIR = "errors"
KINDS = ("wrong type", "wrong boundary", "wrong type and boundary", "missed", "spurious")


# ------------------------------------------------------------------------------------------------- NER spans

def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities of an IOB2 tag sequence as (type, start, end) word spans, end exclusive."""
    out, current = [], None
    for index, tag in enumerate(list(tags) + ["O"]):
        if current is not None and not (tag.startswith("I-") and tag[2:] == current[0]):
            out.append((current[0], current[1], index))
            current = None
        if tag.startswith("B-") or (tag.startswith("I-") and current is None):
            current = (tag[2:], index)
    return out


def entity_errors(gold: list[str], predicted: list[str]) -> list[dict[str, Any]]:
    """The entity errors of one sentence, each ``{"kind", "gold": [type, start, end] | None, "predicted": ...}``.

    A gold entity predicted exactly is correct; one whose words a prediction of another type covers exactly is a
    wrong type; one overlapped by a prediction of its type with other boundaries a wrong boundary (of another type:
    wrong type and boundary); one nothing overlaps is missed. A predicted entity that overlaps no gold entity is
    spurious. Each prediction explains at most one gold entity (the first it overlaps, exact matches first)."""
    gold_spans, predicted_spans = spans(gold), spans(predicted)
    used: set[int] = set()
    errors = []

    def overlaps(a, b) -> bool:
        return a[1] < b[2] and b[1] < a[2]

    exact = {}
    for g_index, g in enumerate(gold_spans):  # exact matches (any type) are claimed first
        for p_index, p in enumerate(predicted_spans):
            if p_index not in used and (p[1], p[2]) == (g[1], g[2]):
                exact[g_index] = p_index
                used.add(p_index)
                break
    for g_index, g in enumerate(gold_spans):
        if g_index in exact:
            p = predicted_spans[exact[g_index]]
            if p[0] != g[0]:
                errors.append({"kind": "wrong type", "gold": list(g), "predicted": list(p)})
            continue
        partner = next((i for i, p in enumerate(predicted_spans) if i not in used and overlaps(g, p)), None)
        if partner is None:
            errors.append({"kind": "missed", "gold": list(g), "predicted": None})
            continue
        used.add(partner)
        p = predicted_spans[partner]
        kind = "wrong boundary" if p[0] == g[0] else "wrong type and boundary"
        errors.append({"kind": kind, "gold": list(g), "predicted": list(p)})
    for p_index, p in enumerate(predicted_spans):
        if p_index not in used and not any(overlaps(p, g) for g in gold_spans):
            errors.append({"kind": "spurious", "gold": None, "predicted": list(p)})
        elif p_index not in used:  # a second prediction inside an already explained gold entity
            errors.append({"kind": "wrong boundary" if any(g[0] == p[0] and overlaps(p, g) for g in gold_spans)
                           else "wrong type and boundary", "gold": None, "predicted": list(p)})
    return errors


# ------------------------------------------------------------------------------------------------- analysis

@dataclasses.dataclass
class Analysis:
    """What `analyse` wrote, and its summary counts."""

    folder: Path
    files: list[Path]
    summary: dict[str, Any]


def analyse(run_dir: str | Path, data: Any = None, split: str | None = None, out: str | Path | None = None,
            top: int = 50, label_issues: bool = False, train_rows: int | None = None, folds: int = 5,
            batch_size: int = 64, device: str | None = "auto") -> Analysis:
    """Error analysis of the run in ``run_dir`` on ``split`` of ``data`` (default: the run's card and eval split),
    written into ``out`` (default ``RUN_DIR/errors``)."""
    from ..evaluation import run_evaluation_data
    from ..inference import load_model
    from ..io import check_folder_target
    from ..tasks import get_task

    run_dir = Path(run_dir)
    recipe, data, split = run_evaluation_data(run_dir, data, split)
    folder = Path(out) if out else run_dir / ERRORS_DIR
    check_folder_target(folder, "--out")
    model = load_model(run_dir, device)
    from ..data.cards import DataCard, load_cards

    card = data if isinstance(data, DataCard) else load_cards(data)
    if get_task(model.task).words_input:
        if label_issues:
            raise NLPTransferError("--label-issues ranks the training rows of single-label text classifiers; this run "
                                   "is a tagger")
        label_map = recipe.label_map if recipe else None
        summary, files = _tagger_errors(model, card, split, folder, top, batch_size, label_map)
    else:
        summary, files = _classifier_errors(model, card, split, folder, top, batch_size)
        if label_issues:
            issues_summary, issue_files = _label_issues(model, recipe, card, folder, top, train_rows, folds, device)
            summary["label_issues"] = issues_summary
            files += issue_files
    summary.update({"run": str(run_dir), "data": card.name, "split": split})
    files.append(_write_markdown(folder, summary))
    return Analysis(folder, files, summary)


def _classifier_errors(model, card, split: str, folder: Path, top: int, batch_size: int):
    from ..data.readers import read_labelled
    from ..tasks.classification import model_inputs
    from ..tasks.problems import problem_type
    from ..io import write_jsonl_atomic

    kind = problem_type(model.problem_type)
    if not kind.labelled:
        raise NLPTransferError("error analysis lists wrong labels; this is a regression model (its errors are the "
                               "residuals in predictions_*.jsonl)")
    card = dataclasses.replace(card, problem_type=model.problem_type)
    rows = read_labelled(card, split, model.label_names).rows
    texts = model_inputs(rows)
    probs = model.probabilities(texts, batch_size=batch_size, progress=len(texts) > 2000)
    decided = model.calibration.decide(probs, model.problem_type, model.threshold)
    names = model.label_names
    mistakes, pairs = [], Counter()
    for row, p, decision in zip(rows, probs, decided):
        if kind.multi_hot:
            gold = {names[i] for i, on in enumerate(row["label"]) if on}
            chosen = {names[i] for i, on in enumerate(decision) if on}
            if gold == chosen:
                continue
            for name in sorted(chosen - gold):
                pairs[("(not " + name + ")", name)] += 1
            for name in sorted(gold - chosen):
                pairs[(name, "(missed)")] += 1
            wrong = (chosen - gold) | (gold - chosen)
            score = max(float(p[names.index(n)]) if n in chosen else 1 - float(p[names.index(n)]) for n in wrong)
            mistakes.append({"line": row["line"], "text": row["text"], "gold": sorted(gold), "predicted": sorted(chosen),
                             "score": round(score, 6)})
            continue
        gold, chosen = int(row["label"]), int(decision)
        if gold == chosen:
            continue
        pairs[(names[gold], names[chosen])] += 1
        mistakes.append({"line": row["line"], "text": row["text"], **({"text_pair": row["text_pair"]}
                                                                       if "text_pair" in row else {}),
                         "gold": names[gold], "predicted": names[chosen], "score": round(float(p[chosen]), 6),
                         "gold_score": round(float(p[gold]), 6)})
    mistakes.sort(key=lambda m: -m["score"])
    confusions = [{"gold": g, "predicted": p, "count": n} for (g, p), n in pairs.most_common()]
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(folder / "mistakes.jsonl", mistakes)
    write_jsonl_atomic(folder / "confusions.jsonl", confusions)
    summary = {"kind": "classification", "rows": len(rows), "mistakes": len(mistakes),
               "error_rate": len(mistakes) / max(len(rows), 1), "top_mistakes": mistakes[:top],
               "confusions": confusions[:top], "calibrated": model.calibration.fitted}
    return summary, [folder / "mistakes.jsonl", folder / "confusions.jsonl"]


def _tagger_errors(tagger, card, split: str, folder: Path, top: int, batch_size: int, label_map):
    from ..data.readers import read_labelled
    from ..io import write_jsonl_atomic

    sentences = read_labelled(card, split, label_map=label_map).rows
    tagged = tagger.tag_words([s["tokens"] for s in sentences], batch_size=batch_size, progress=len(sentences) > 500)
    found, kinds, types = [], Counter(), Counter()
    gold_entities = 0
    for sentence, (predicted, _scores) in zip(sentences, tagged):
        gold = sentence["tags"]
        gold_entities += len(spans(gold))
        for error in entity_errors(gold, predicted):
            kinds[error["kind"]] += 1
            g, p = error["gold"], error["predicted"]
            types[(g[0] if g else "(none)", p[0] if p else "(none)")] += 1
            words = sentence["tokens"]
            found.append({"line": sentence["line"], **error,
                          "gold_text": " ".join(words[g[1]:g[2]]) if g else None,
                          "predicted_text": " ".join(words[p[1]:p[2]]) if p else None,
                          "sentence": " ".join(words)})
    confusions = [{"gold": g, "predicted": p, "count": n} for (g, p), n in types.most_common()]
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(folder / "entity_errors.jsonl", found)
    write_jsonl_atomic(folder / "confusions.jsonl", confusions)
    summary = {"kind": "ner", "rows": len(sentences), "gold_entities": gold_entities, "errors": len(found),
               "by_kind": {kind: kinds.get(kind, 0) for kind in KINDS}, "confusions": confusions[:top],
               "examples": {kind: [e for e in found if e["kind"] == kind][:5] for kind in KINDS}}
    return summary, [folder / "entity_errors.jsonl", folder / "confusions.jsonl"]


def _label_issues(model, recipe, card, folder: Path, top: int, train_rows: int | None, folds: int, device):
    import numpy as np

    from ..data.readers import read_labelled
    from ..sidecar import read_sidecar
    from ..io import write_jsonl_atomic
    from .label_issues import find_label_issues
    from ..tasks.problems import problem_type

    if not problem_type(model.problem_type).exclusive:
        raise NLPTransferError("--label-issues ranks rows of single-label data; this model is "
                               f"{model.problem_type}")
    train_split = recipe.train_split if recipe else "train"
    card = dataclasses.replace(card, problem_type="single_label")
    rows = read_labelled(card, train_split, model.label_names).rows
    if any("text_pair" in r for r in rows):
        raise NLPTransferError("--label-issues reads single texts; this data has sentence pairs")
    if train_rows is not None and train_rows < len(rows):
        chosen = np.sort(np.random.default_rng(0).choice(len(rows), train_rows, replace=False))
        rows = [rows[i] for i in chosen]
    sidecar = read_sidecar(folder.parent)
    encoder = (recipe.model if recipe and recipe.backend != "static" else None) or sidecar.get("base_model") or "minilm-l6"
    ranking, stats = find_label_issues(encoder, [r["text"] for r in rows], [int(r["label"]) for r in rows],
                                       folds=folds, device=device)
    names = model.label_names
    ranked = [{"line": rows[r["row"]]["line"], "text": rows[r["row"]]["text"], "given": names[r["given"]],
               "suggested": names[r["suggested"]], "quality": round(float(r["quality"]), 6),
               "flagged": bool(r["flagged"])} for r in ranking]
    write_jsonl_atomic(folder / "label_issues.jsonl", ranked)
    summary = {"encoder": encoder, "train_split": train_split, **stats, "top": ranked[:top]}
    return summary, [folder / "label_issues.jsonl"]


def _write_markdown(folder: Path, summary: dict[str, Any]) -> Path:
    from ..io import write_text_atomic

    lines = [f"# Error analysis: {summary['run']}", "",
             f"Data `{summary['data']}`, split `{summary['split']}` ({summary['rows']} rows)."]
    if summary["kind"] == "classification":
        lines += [f" {summary['mistakes']} mistakes (error rate {summary['error_rate']:.2%}); scores are "
                  + ("calibrated probabilities (the run's temperature)" if summary["calibrated"] else
                     "raw probabilities (the run has no calibration.json)") + ".", "",
                  "## Most confident mistakes", "", "| line | text | gold | predicted | score |", "|---|---|---|---|---|"]
        for m in summary["top_mistakes"]:
            lines.append(f"| {m['line']} | {_cell(m['text'])} | {_cell(m['gold'])} | {_cell(m['predicted'])} | "
                         f"{m['score']:.3f} |")
        lines += ["", "## Confusion pairs", "", "| gold | predicted | count |", "|---|---|---|"]
        lines += [f"| {c['gold']} | {c['predicted']} | {c['count']} |" for c in summary["confusions"]]
    else:
        lines += [f" {summary['gold_entities']} gold entities, {summary['errors']} entity errors.", "",
                  "## Entity errors by kind", "", "| kind | count |", "|---|---|"]
        lines += [f"| {kind} | {n} |" for kind, n in summary["by_kind"].items()]
        lines += ["", "## Types confused (gold -> predicted; (none): missed or spurious)", "",
                  "| gold | predicted | count |", "|---|---|---|"]
        lines += [f"| {c['gold']} | {c['predicted']} | {c['count']} |" for c in summary["confusions"]]
        for kind, examples in summary["examples"].items():
            if examples:
                lines += ["", f"### {kind}", ""]
                lines += [f"- line {e['line']}: gold `{e['gold_text']}` {e['gold'][0] if e['gold'] else ''} / "
                          f"predicted `{e['predicted_text']}` {e['predicted'][0] if e['predicted'] else ''}"
                          for e in examples]
    issues = summary.get("label_issues")
    if issues:
        lines += ["", "## Likely mislabelled training rows", "",
                  f"Out-of-fold probabilities of {issues['folds']}-fold logistic-regression probes on frozen "
                  f"`{issues['encoder']}` features of {issues['rows']} `{issues['train_split']}` rows (out-of-fold "
                  f"accuracy {issues['out_of_fold_accuracy']:.3f}); ranked by cleanlab's label quality, lowest first; "
                  f"{issues['flagged']} flagged by confident learning. Full ranking: `label_issues.jsonl`.", "",
                  "| line | text | given | suggested | quality |", "|---|---|---|---|---|"]
        lines += [f"| {r['line']} | {_cell(r['text'])} | {r['given']} | {r['suggested']} | {r['quality']:.3f} |"
                  for r in issues["top"]]
    lines.append("")
    path = folder / "errors.md"
    write_text_atomic(path, "\n".join(lines))
    return path


def _cell(value: Any) -> str:
    text = ", ".join(value) if isinstance(value, list) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."
