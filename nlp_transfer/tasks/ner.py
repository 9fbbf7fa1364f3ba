"""Token classification (NER): subword label alignment, windows, merging, seqeval metrics, entity spans.

Words are the unit everywhere: labels are given per word (IOB2 inside the package), the model sees
subwords, and every word gets exactly one predicted tag back.

- Alignment: the first subword of a word carries its label and the others are ignored (-100), or with
  ``label_all_subwords`` every subword carries it (continuations of ``B-X`` become ``I-X``).
- Sentences longer than max_length become overlapping windows (``stride`` subwords shared); a word seen
  in several windows takes its prediction from the window where it has the most context on both sides.
- Metrics: entity-level precision/recall/F1 (seqeval; ``strict`` matches the scheme exactly) overall and
  per type, plus word-level accuracy; per group too (the card's `groups`, the sentences' languages).
- Cross-dataset scoring: when the data and the model do not have the same entity types (a CoNLL model with
  MISC on WikiANN, which has none), `score_on_shared_types` scores only the types both have: the other types
  become ``O`` in the gold tags and in the predictions alike, and one warning says which and how many.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IGNORE = -100
MAIN_METRIC = "f1"
METRIC_NAMES = ("f1", "precision", "recall", "accuracy", "loss")
SUBWORD_MERGES = ("first", "average", "max")  # how a word's subword scores make its tag (predict --strategy)

# A word for raw-text prediction: a CJK character alone (those scripts write no spaces), a run of letters,
# digits and combining marks, or any other single visible character (punctuation, symbols).
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[\w\u0300-\u036f\u0610-\u061a\u064b-\u065f])+|[^\s]")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words of raw text with character offsets: ``[(word, start, end), ...]``."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def tokenize_words(tokenizer, words_batch: list[list[str]], max_length: int, stride: int):
    """Tokenize pre-split words into windows of at most max_length subwords, ``stride`` shared (capped at half the
    room); a `data.windows.WordWindows` (rows, owning sentence and word index per position)."""
    from ..data.windows import word_windows

    return word_windows(tokenizer, words_batch, max_length, stride)


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], label_names: Sequence[str],
                 label_all_subwords: bool = False) -> list[int]:
    """Labels per subword position: the word's label id on its first subword, -100 elsewhere (or on
    every subword, with ``B-X`` continuations turned into ``I-X``)."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE)
        elif word != previous:
            labels.append(word_labels[word])
        elif label_all_subwords:
            name = label_names[word_labels[word]]
            inside = "I-" + name[2:] if name.startswith("B-") else name
            labels.append(label_names.index(inside) if inside in label_names else word_labels[word])
        else:
            labels.append(IGNORE)
        previous = word
    return labels


def encode_dataset(dataset, tokenizer, max_length: int, stride: int, label_names: Sequence[str],
                   label_all_subwords: bool = False, desc: str = "tokenizing"):
    """Sentences (columns tokens, tags[, line]) -> one row per window with input ids, aligned ``labels``,
    ``length``, the ``sentence`` it came from and its ``word_ids`` (-1 for special tokens)."""

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        encoded = tokenize_words(tokenizer, batch["tokens"], max_length, stride)
        out: dict[str, list] = {k: encoded.column(k) for k in ("input_ids", "attention_mask", "token_type_ids")
                                if encoded.rows and k in encoded.rows[0]}
        out["length"] = [len(row["input_ids"]) for row in encoded.rows]
        owners = encoded.owners
        out["sentence"] = [indices[o] for o in owners]
        out["word_ids"], out["labels"] = [], []
        for window, owner in enumerate(owners):
            word_ids = encoded.word_ids[window]
            out["word_ids"].append([-1 if w is None else w for w in word_ids])
            if "tags" in batch:
                out["labels"].append(align_labels(word_ids, batch["tags"][owner], label_names, label_all_subwords))
        if not out["labels"]:
            del out["labels"]
        return out

    return dataset.map(encode, batched=True, with_indices=True, remove_columns=dataset.column_names, desc=desc)


class WindowMerger:
    """Collects per-subword predictions of windows and keeps, for every word, the one from the window
    where the word has the most context (distance to the nearer window edge)."""

    def __init__(self, word_counts: Sequence[int], strategy: str = "first"):
        self.word_counts = list(word_counts)
        self.strategy = strategy
        self.best: list[dict[int, tuple[int, np.ndarray]]] = [dict() for _ in word_counts]

    def add(self, sentence: int, word_ids: Sequence[int], scores: np.ndarray) -> None:
        """``scores``: [positions, labels] probabilities of one window."""
        positions = [p for p, w in enumerate(word_ids) if w is not None and w >= 0]
        if not positions:
            return
        first, last = positions[0], positions[-1]
        pieces: dict[int, list[int]] = {}
        for p in positions:
            pieces.setdefault(word_ids[p], []).append(p)
        for word, where in pieces.items():
            context = min(where[0] - first, last - where[-1])
            if word in self.best[sentence] and self.best[sentence][word][0] >= context:
                continue
            if self.strategy == "average":
                word_scores = scores[where].mean(axis=0)
            elif self.strategy == "max":
                word_scores = scores[where].max(axis=0)
            else:
                word_scores = scores[where[0]]
            self.best[sentence][word] = (context, word_scores)

    def word_scores(self, sentence: int, num_labels: int, outside: int = 0) -> np.ndarray:
        """[words, labels]; a word no window covered (zero subwords) is scored as certain ``O``."""
        out = np.zeros((self.word_counts[sentence], num_labels), dtype=np.float32)
        out[:, outside] = 1.0
        for word, (_, scores) in self.best[sentence].items():
            out[word] = scores
        return out


def entity_metrics(gold: list[list[str]], predicted: list[list[str]], strict: bool = False) -> dict[str, Any]:
    """seqeval entity-level scores, overall and per type, plus word accuracy."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import IOB2

    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    report = classification_report(gold, predicted, output_dict=True, zero_division=0, **kwargs)
    per_type = {name: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                       "support": int(v["support"])}
                for name, v in report.items() if not name.endswith(" avg")}
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return {
        "f1": float(micro["f1-score"]), "precision": float(micro["precision"]), "recall": float(micro["recall"]),
        "accuracy": float(accuracy_score(gold, predicted)),
        "per_type": per_type,
    }


class EntityTypeMismatchWarning(UserWarning):
    """The data and the model have different entity types; only the shared ones were scored."""


def _keep_types(sequences: list[list[str]], keep: set[str]) -> list[list[str]]:
    return [[t if t[:2] not in ("B-", "I-") or t[2:] in keep else "O" for t in tags] for tags in sequences]


def _count_entities(sequences: list[list[str]], kinds: set[str]) -> dict[str, int]:
    counts = dict.fromkeys(sorted(kinds), 0)
    for tags in sequences:
        for tag in tags:
            if tag.startswith("B-") and tag[2:] in counts:
                counts[tag[2:]] += 1
    return counts


def score_on_shared_types(gold: list[list[str]], predicted: list[list[str]], data_types: set[str],
                          label_names: Sequence[str], where: str):
    """Gold and predicted tags restricted to the entity types both the data and the model have.

    A data-only type (the model cannot predict it) and a model-only type (the data never has it) both become
    ``O`` on both sides, so neither counts as a miss nor as a false alarm; one `EntityTypeMismatchWarning` says
    which types were left out and how many entities that concerned. Returns (gold, predicted, types), with
    ``types`` None when the types match and else ``{scored, data_only, model_only}`` (entity counts)."""
    model_types = {name[2:] for name in label_names if name[:2] in ("B-", "I-")}
    data_only, model_only = data_types - model_types, model_types - data_types
    if not data_only and not model_only:
        return gold, predicted, None
    shared = data_types & model_types
    types = {"scored": sorted(shared), "data_only": _count_entities(gold, data_only),
             "model_only": _count_entities(predicted, model_only)}
    notes = []
    if data_only:
        notes.append("gold " + ", ".join(f"{k} ({n})" for k, n in types["data_only"].items())
                     + " entities count as O (the model has no such type)")
    if model_only:
        notes.append("predicted " + ", ".join(f"{k} ({n})" for k, n in types["model_only"].items())
                     + " entities are ignored (the data has no such type)")
    warnings.warn(f"{where}: entity types differ (model: {', '.join(sorted(model_types))}; data: "
                  f"{', '.join(sorted(data_types)) or 'none'}); scoring the shared types "
                  f"{', '.join(sorted(shared)) or '(none)'} only: {'; '.join(notes)}; map types with label_map "
                  f"(e.g. {{MISC: O}}) to make this explicit", EntityTypeMismatchWarning, stacklevel=3)
    return _keep_types(gold, shared), _keep_types(predicted, shared), types


def group_entity_metrics(gold: list[list[str]], predicted: list[list[str]],
                         groups: list[dict[str, str]] | None, strict: bool = False) -> dict[str, Any]:
    """``per_group`` (and ``per_language``) blocks: entity F1, precision, recall, word accuracy and the sentence count
    per value of each group column, with the worst group and the best-worst F1 gap."""
    from .base import group_blocks, per_group

    if groups is None or len(groups) != len(gold):
        return {}
    return group_blocks(per_group(groups, lambda rows: entity_metrics([gold[i] for i in rows],
                                                                      [predicted[i] for i in rows], strict), "f1"))


def preprocess_logits(logits, labels):
    """Keep, per subword, only the predicted id and its probability (not all label logits)."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    probs = torch.softmax(logits.float(), dim=-1)
    score, predicted = probs.max(dim=-1)
    return torch.stack([predicted.float(), score], dim=-1)


class StreamingNERMetrics:
    """`compute_metrics` for ``batch_eval_metrics``: reads predicted ids window by window (the evaluation
    set in its fixed order), merges windows per sentence and scores whole sentences with seqeval."""

    def __init__(self, label_names: list[str], gold_tags: list[list[str]], sentences: list[int],
                 word_ids: list[list[int]], strict: bool = False, groups: list[dict[str, str]] | None = None):
        self.label_names = label_names
        self.groups = groups  # per sentence: per-group scores (`tasks.base.row_groups`: card groups, languages)
        self.gold_tags = gold_tags
        self.sentences = sentences  # per evaluation row: the sentence it came from
        self.word_ids = word_ids  # per evaluation row: word index of each position (-1: special token)
        self.strict = strict
        self.details: dict[str, Any] = {}
        self.predicted_tags: list[list[str]] = []
        self._reset()

    def _reset(self) -> None:
        self._row = 0
        self._merger = WindowMerger([len(tags) for tags in self.gold_tags])

    def __call__(self, eval_pred, compute_result: bool = True) -> dict[str, float]:
        decided = torch.as_tensor(eval_pred.predictions).detach().cpu().numpy()
        num_labels = len(self.label_names)
        for row in decided:
            word_ids = self.word_ids[self._row]
            ids = row[: len(word_ids), 0].astype(int)
            onehot = np.zeros((len(word_ids), num_labels), dtype=np.float32)
            valid = ids >= 0
            onehot[np.flatnonzero(valid), ids[valid]] = 1.0
            self._merger.add(self.sentences[self._row], word_ids, onehot)
            self._row += 1
        if not compute_result:
            return {}
        outside = self.label_names.index("O") if "O" in self.label_names else 0
        self.predicted_tags = [
            [self.label_names[i] for i in self._merger.word_scores(s, num_labels, outside).argmax(-1)]
            for s in range(len(self.gold_tags))
        ]
        self._reset()
        self.details = entity_metrics(self.gold_tags, self.predicted_tags, self.strict)
        self.details.update(group_entity_metrics(self.gold_tags, self.predicted_tags, self.groups, self.strict))
        return {k: v for k, v in self.details.items() if isinstance(v, float)}


def entities(words: Sequence[str], tags: Sequence[str], scores: Sequence[float],
             offsets: Sequence[tuple[int, int]] | None = None, text: str | None = None) -> list[dict[str, Any]]:
    """Entity spans from IOB2 word tags: type, words [start, end), text, character offsets, mean score."""
    spans, current = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        continues = current is not None and tag.startswith("I-") and kind == current["type"]
        if current is not None and not continues:
            spans.append(current)
            current = None
        if kind is not None and not continues:
            current = {"type": kind, "start_word": i, "end_word": i + 1}
        elif continues:
            current["end_word"] = i + 1
    out = []
    for span in spans:
        first, last = span["start_word"], span["end_word"]
        entity = {"type": span["type"], "score": float(np.mean(scores[first:last])), "words": [first, last]}
        if offsets is not None and text is not None:
            start, end = offsets[first][0], offsets[last - 1][1]
            entity.update(text=text[start:end], start=start, end=end)
        else:
            entity["text"] = " ".join(words[first:last])
        out.append(entity)
    return out


def main_metric(problem_type: str = "token") -> str:
    return MAIN_METRIC


def derived_metrics(scores: dict[str, Any]) -> dict[str, Any]:
    """Nothing is derived from this task's scores (masked-LM derives perplexity)."""
    return {}


def metric_names(problem_type: str = "token") -> tuple[str, ...]:
    return METRIC_NAMES


def prepare(recipe, data, tokenizer, has_eval: bool):
    """Window and align the splits, load the model with a token-classification head, set up seqeval."""
    from ..models import load_for_token_classification
    from .base import Prepared, row_groups

    labels = data.label_names

    def encode(split: str, desc: str):
        return encode_dataset(data.splits[split], tokenizer, recipe.max_length, recipe.stride, labels,
                              recipe.label_all_subwords, desc)

    train_set = encode(recipe.train_split, "tokenizing train")
    eval_set, metrics = None, None
    if has_eval:
        eval_set = encode(recipe.eval_split, "tokenizing eval").sort("length", reverse=True)
        source = data.splits[recipe.eval_split]
        gold = [[labels[i] for i in tags] for tags in source["tags"]]
        metrics = StreamingNERMetrics(labels, gold, eval_set["sentence"], eval_set["word_ids"], recipe.strict,
                                      row_groups(source))
    model = load_for_token_classification(recipe.model, labels, recipe.trust_remote_code)

    def prediction_rows():
        source = data.splits[recipe.eval_split]
        languages = list(source["language"]) if "language" in source.column_names else None
        for i, (line, tokens, tags) in enumerate(zip(source["line"], source["tokens"], source["tags"])):
            yield {"line": line, **({"language": languages[i]} if languages else {}), "tokens": tokens,
                   "tags": [labels[t] for t in tags], "predicted": metrics.predicted_tags[i]}

    types = sorted({name[2:] for name in labels if name[:2] in ("B-", "I-")})
    return Prepared(
        train_set=train_set, eval_set=eval_set, model=model, metrics=metrics, main_metric=MAIN_METRIC,
        token_labels=True, summary=f"{len(types)} entity types ({', '.join(types)}), {len(train_set)} windows",
        pipeline_tag="token-classification",
        sidecar={"stride": recipe.stride, "label_all_subwords": recipe.label_all_subwords, "strict": recipe.strict,
                 "label_map": recipe.label_map},  # `evaluate` maps other data's entity types the same way
        preprocess_logits=preprocess_logits, prediction_rows=prediction_rows if has_eval else None,
    )


class WordTagger:
    """What every tagger predicts from its `tag_words` (words in, one IOB2 tag and its probability per word out):
    tags and entities for pre-split sentences, and entity spans with character offsets for raw text. Shared by the
    fine-tuned `inference.TokenTagger` and the static BiLSTM's `static.predictors.StaticTagger`."""

    def tag_words(self, sentences: Sequence[Sequence[str]], strategy: str = "first", batch_size: int = 32,
                  progress: bool = False) -> list[tuple[list[str], list[float]]]:
        raise NotImplementedError

    def predict_tokens(self, sentences: Sequence[Sequence[str]], strategy: str = "first", batch_size: int = 32,
                       progress: bool = False) -> list[dict[str, Any]]:
        """Pre-tokenized input: per sentence its tokens, tags, tag scores and entities (word spans)."""
        out = []
        for words, (tags, scores) in zip(sentences, self.tag_words(sentences, strategy, batch_size, progress)):
            out.append({"tokens": list(words), "tags": tags, "scores": [round(s, 6) for s in scores],
                        "entities": entities(words, tags, scores)})
        return out

    def predict(self, texts: str | Sequence[str], strategy: str = "first", batch_size: int = 32,
                progress: bool = False) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Entities of raw text: type, text, character start/end (``text[start:end]`` is the entity), score.
        Raw text is split into words by `split_words`."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        split = [split_words(text) for text in texts]
        tagged = self.tag_words([[w for w, _, _ in words] for words in split], strategy, batch_size, progress)
        results = []
        for text, words, (tags, scores) in zip(texts, split, tagged):
            offsets = [(start, end) for _, start, end in words]
            results.append(entities([w for w, _, _ in words], tags, scores, offsets, text))
        return results[0] if single else results
