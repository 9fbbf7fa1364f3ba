"""Frozen static-embedding baselines with the same data cards, metrics.json and reports as transformer runs.

A recipe with a ``static:`` mapping trains one of these instead of a transformer (``model`` is ignored):

    task: sequence-classification
    data: data_cards/sst2.md
    output_dir: runs/sst2-glove
    static: {vectors: ../shared/data/glove/glove.6B.50d.100k.txt.gz, baseline: bilstm}

- ``baseline: average`` (classification): the mean of the text's word vectors (``tfidf: true`` weights
  each word by its inverse document frequency in the training split; ``weighting: sif`` by a / (a + p(w))
  with the first principal component of the training sentence vectors removed, Arora, Liang & Ma 2017;
  ``average_pooling: mean-max-min`` adds each dimension's max and min over the words) and
  LogisticRegression (Ridge for regression, one-vs-rest for multi-label) with C chosen on the evaluation
  split, as the probe does, or with ``select_on: train-cv`` by k-fold cross-validation on the training split
  (the evaluation split is then scored once, by the chosen model).
- ``baseline: bilstm`` (classification): a BiLSTM over the frozen vectors, max- or last-state pooled,
  then a linear layer; AdamW, early stopping on the evaluation split's main metric, best epoch kept.
- token classification: a BiLSTM tagger over the frozen vectors of the card's tokens (lower-cased for
  lookup when ``lowercase``) plus a small trainable embedding of each token's shape (lower, initial cap,
  all caps, numeric, other: GloVe is uncased, and capitals are the strongest NER cue), softmax per token,
  scored with seqeval like the transformer taggers.

Only the OOV rows can train, and only with ``oov: learned``; every other embedding row is bit-identical
after training, unless ``train_vectors: true`` lets every row of the BiLSTMs' table train.
Text goes through `nlp_transfer.static.words` (one tokenizer for every baseline).
Outputs, staged then moved into ``output_dir``: ``metrics.json``, ``predictions_<eval split>.jsonl``,
``coverage.json``, ``recipe.yaml``, ``model.safetensors`` (weights, no pickles), ``nlp_transfer.json``
(settings, labels), ``vocabulary.json`` (the word of each embedding row) and a short ``README.md``.
The models and their inputs are defined once in `nlp_transfer.static.models`, the ``static:`` keys in
`nlp_transfer.static.settings`; `load_model` reopens a run through `nlp_transfer.static.predictors`. The BiLSTMs
train on ``static.device`` (``auto``: CUDA when present, else the CPU).
"""
from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import NLPTransferError
from ..jobs import Fitted, Job
from ..sidecar import SIDECAR
from ..linear import StrengthSearch, search_strength
from ..linear import logits as linear_logits
from ..tasks import classification as cls_task
from ..tasks import get_task
from ..tasks.base import row_groups
from ..tasks.problems import problem_type as get_problem_type
from .matrix import EmbeddingMatrix, embedding_matrix
from .models import (CASING, PREDICT_BATCH, BiLSTMClassifier, BiLSTMTagger, StaticEmbedding, TextEncoder,
                     average_features, classifier_forward, classifier_logits, length_batches, pad, tagger_forward,
                     tagger_inputs, tagger_logits, text_features, word_shape)
from .settings import (BASELINES, POOLINGS, VOCABULARY_FILE, WEIGHTS_FILE, StaticConfig, parse_static,
                       removed_components, static_device)
from .vectors import check_vectors_path, load_vectors, vectors_name
from .words import words

__all__ = ["BASELINES", "CASING", "POOLINGS", "VOCABULARY_FILE", "WEIGHTS_FILE", "BiLSTMClassifier",
           "BiLSTMTagger", "StaticConfig", "StaticEmbedding", "check_static", "parse_static", "static_device",
           "train_static", "word_shape"]

IGNORE = -100


# ---------------------------------------------------------------- configuration

def _check_combination(config: StaticConfig, task_name: str, source: str) -> None:
    task = get_task(task_name)
    if task.auto_model is None:  # nothing a classifier or tagger predicts (masked-LM)
        raise NLPTransferError(f"{source}: static baselines train classifiers and taggers, not {task}")
    tagger = task.words_input
    if tagger and config.baseline == "average":
        raise NLPTransferError(f"{source}: static.baseline average is for classification; the tagger is a BiLSTM "
                               f"(static.baseline=bilstm)")
    if config.tfidf and (config.baseline != "average" or tagger):
        raise NLPTransferError(f"{source}: static.tfidf weights the averaged vectors; use it with "
                               f"static.baseline=average")
    if config.quadratic and (config.baseline != "average" or tagger):
        raise NLPTransferError(f"{source}: static.quadratic expands the averaged vectors; use it with "
                               f"static.baseline=average")
    average = config.baseline == "average" and not tagger
    if not average:
        for key, value, default in (("weighting", config.weighting, "none"),
                                    ("remove_components", config.remove_components, None),
                                    ("select_on", config.select_on, "eval"), ("min_words", config.min_words, 1),
                                    ("average_pooling", config.average_pooling, "mean")):
            if value != default:
                raise NLPTransferError(f"{source}: static.{key} applies to the averaged vectors; use it with "
                                       f"static.baseline=average")
    if config.quadratic and (config.weighting == "sif" or removed_components(config)):
        raise NLPTransferError(f"{source}: static.quadratic does not combine with static.weighting=sif or "
                               f"static.remove_components (they act on the averaged vectors themselves); keep one")
    # what trains inside the BiLSTM means nothing to the averaged vectors, which stay as they are
    for key, active, fix in (("train_vectors", config.train_vectors, "drop it or use static.baseline=bilstm"),
                             ("oov learned", config.oov == "learned", "use static.oov random or zeros")):
        if active and average:
            raise NLPTransferError(f"{source}: static.{key} trains vectors inside the BiLSTM; with "
                                   f"static.baseline=average they stay as they are: {fix}")


# ---------------------------------------------------------------- the run

@dataclass
class Outcome:
    """What a baseline hands to the writer: scores, learning curve, weights and predictions."""

    strategy: str
    eval: dict[str, Any]
    train: dict[str, Any]
    params: dict[str, int]
    predict_rate: float | None
    history: list[dict[str, Any]]
    tensors: dict[str, np.ndarray]
    vocabulary: list[str]
    prediction_rows: list[dict[str, Any]]
    sidecar: dict[str, Any] = field(default_factory=dict)


@dataclass
class StaticRun:
    recipe: Any
    card: Any
    data: Any  # nlp_transfer.data.readers.LoadedData
    config: StaticConfig
    vectors: Any  # gensim KeyedVectors
    model_name: str
    out: Path  # the folder this run writes (nlp_transfer.rundir)
    device: str = "cpu"  # where the BiLSTMs train and score (`static_device`)

    @property
    def main(self) -> str:
        return get_task(self.recipe.task).implementation().main_metric(self.data.problem_type)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_static(recipe) -> StaticConfig:
    """The recipe's ``static:`` settings, checked before any data is read or anything is written."""
    source = recipe.source or "recipe"
    config = parse_static(recipe.static, source)
    _check_combination(config, recipe.task, source)
    if recipe.strategy.distils and config.baseline != "bilstm":  # the task is checked with the recipe (fits)
        raise NLPTransferError(f"{source}: strategy distill trains a static student with static.baseline: bilstm; "
                               f"the averaged-vectors baseline fits its probe on the gold labels only")
    from ..config import resolve_path

    try:
        check_vectors_path(resolve_path(config.vectors, recipe))
    except NLPTransferError as exc:
        raise NLPTransferError(f"{source}: static.vectors: {exc}") from None
    return config


def train_static(job: Job, config: StaticConfig) -> Fitted:
    """Train the recipe's static baseline on ``job.data`` and stage it in the run folder `nlp_transfer.rundir` chose
    (``job.run.work``); returns the run record for `nlp_transfer.outputs.finish` (which scores the test split and
    eval sets and writes everything). ``job.runtime`` (``train --device``) overrides ``static.device``."""
    from ..config import resolve_path

    recipe = job.recipe
    job.start()
    seed_everything(recipe.seed)
    path = resolve_path(config.vectors, recipe)
    started = time.perf_counter()
    vectors = load_vectors(path, config.format, config.limit, unicode_errors=config.unicode_errors)
    vectors_seconds = time.perf_counter() - started
    device = job.runtime.device if job.runtime is not None else static_device(config)
    run = StaticRun(recipe, job.card, job.data, config, vectors, f"{vectors_name(path)} (static)", job.run.work, device)
    # Small recurrent models gain nothing from intra-op threads, and spin-waiting threads make them many times
    # slower when the cores are shared with other work (measured: 2-3 s per demo epoch on 1 thread, minutes on 2
    # threads beside another job). One thread by default; `threads: null` keeps torch's setting.
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        if get_task(recipe.task).words_input:
            outcome, coverage = _train_tagger(run)
        elif config.baseline == "average":
            outcome, coverage = _train_average(run)
        else:
            outcome, coverage = _train_classifier(run)
    finally:
        torch.set_num_threads(threads)
    outcome.train["vectors_seconds"] = round(vectors_seconds, 2)
    return _stage(run, outcome, coverage, _metrics(run, outcome, coverage))


def _announce(run: StaticRun, strategy: str, coverage, detail: str) -> None:
    recipe, data = run.recipe, run.data
    print(f"nlp-transfer: {strategy} with {run.model_name} on {run.card.name} "
          f"({len(data.splits[recipe.train_split])} train rows, {len(data.splits[recipe.eval_split])} "
          f"{recipe.eval_split} rows, {detail}) -> {recipe.output_dir}", flush=True)
    missing = ", ".join(f"{w} ({c})" for w, c in coverage.top_missing[:8])
    print(f"nlp-transfer: {coverage}" + (f"; most frequent missing: {missing}" if missing else ""), flush=True)


def _metrics(run: StaticRun, outcome: Outcome, coverage) -> dict[str, Any]:
    from ..record import run_record

    recipe = run.recipe
    metrics = run_record(
        recipe, run.card, backend="static", problem_type=run.data.problem_type, main_metric=run.main,
        model=run.model_name, strategy=outcome.strategy, eval_scores=outcome.eval, eval_split=recipe.eval_split,
        train=outcome.train, params=outcome.params, predict_rate=outcome.predict_rate, history=outcome.history,
        rows={split: len(rows) for split, rows in run.data.splits.items()},
        coverage=coverage.to_dict(), static=asdict(run.config))
    if any(getattr(run.data, "repairs", {}).values()):
        metrics["repaired_tags"] = run.data.repairs
    if getattr(run.data, "teacher", None):
        metrics["teacher"] = run.data.teacher  # strategy distill
    return metrics


def _stage(run: StaticRun, outcome: Outcome, coverage, metrics: dict[str, Any]) -> Fitted:
    """Stage the weights, vocabulary and sidecar; `outputs.finish` scores and writes the rest, then moves them into
    output_dir (as for the probe and Trainer runs)."""
    from safetensors.numpy import save_file

    from ..io import write_json_atomic
    from ..record import staging_folder
    from ..runtime import Runtime
    from ..sidecar import write_sidecar

    recipe = run.recipe
    staging = staging_folder(run.out)
    tensors = {name: np.ascontiguousarray(value) for name, value in outcome.tensors.items()}
    save_file(tensors, str(staging / WEIGHTS_FILE))
    write_sidecar(staging, "static", {
        "task": recipe.task, "strategy": outcome.strategy, "problem_type": run.data.problem_type,
        "label_names": run.data.label_names, "threshold": recipe.threshold, "vectors": run.model_name,
        "static": asdict(run.config), **outcome.sidecar,
        **({"label_map": recipe.label_map} if recipe.label_map else {})})
    write_json_atomic(staging / VOCABULARY_FILE, outcome.vocabulary)
    write_json_atomic(staging / "coverage.json", coverage.to_dict())
    return Fitted(metrics, lambda final: _readme(run, final), Runtime(run.device), predictions=outcome.prediction_rows,
                  calibration_rows=(cls_task.texts_and_labels(run.data.splits[recipe.eval_split])
                                    if get_task(recipe.task).calibrated else None))


def _readme(run: StaticRun, metrics: dict[str, Any]) -> str:
    from ..reports import calibration_lines, results_lines

    train, params = metrics["train"], metrics["params"]
    lines = [f"# {run.card.name}: {metrics['strategy']} on {metrics['model']}", "",
             (f"A static-embedding baseline trained with nlp_transfer (`{run.recipe.task}`): "
             f"{_describe(metrics['strategy'], run.config)}. {params['trainable']:,} of {params['total']:,} "
             f"parameters trained in {train['runtime_s']:.0f} s; {metrics['coverage']['summary']}."), ""]
    lines += results_lines(metrics["eval_split"], metrics["eval"])
    if metrics.get("test"):
        lines += results_lines(metrics["test_split"] + " (held out: scored once by the final model)", metrics["test"])
    for name, scores in (metrics.get("eval_sets") or {}).items():
        lines += results_lines(name, scores, f"## Results on `{name}` (`{scores.get('data')}`, split "
                                             f"`{scores.get('split')}`; extra evaluation set)")
    lines += calibration_lines(metrics.get("calibration"), pipeline=False)
    lines += ["## Files", "",
              (f"`{WEIGHTS_FILE}` (weights, safetensors), `{VOCABULARY_FILE}` (the word of each embedding row), "
              f"`{SIDECAR}` (settings and labels), `metrics.json`, `coverage.json`, "
              f"`predictions_{metrics['eval_split']}.jsonl`, `recipe.yaml` (rerun with "
              f"`nlp-transfer train recipe.yaml`)."), ""]
    if run.card.description:
        lines += ["## Training data", "", run.card.description.strip(), ""]
    return "\n".join(lines)


def _describe(strategy: str, config: StaticConfig) -> str:
    if strategy.startswith("static-average"):
        weighting = ("TF-IDF weighted" if config.tfidf else f"SIF-weighted (a={config.sif_a:g})"
                     if config.weighting == "sif" else "averaged")
        expansion = " (with their pairwise products: second-order pooling)" if config.quadratic else ""
        removed = removed_components(config)
        removal = f", {removed} principal component(s) removed" if removed else ""
        selection = (f", C chosen by {config.cv_folds}-fold cross-validation on the training split"
                     if config.select_on == "train-cv" else ", C chosen on the evaluation split")
        pooled = (", with each dimension's max and min over the words" if config.average_pooling == "mean-max-min"
                  else "")
        return f"{weighting} word vectors{expansion}{removal}{pooled} and logistic regression{selection}"
    vectors = "word vectors trained with it" if config.train_vectors else "frozen word vectors"
    return f"a {config.layers}-layer BiLSTM ({config.hidden} units per direction) over {vectors}, OOV rows {config.oov}"


# ---------------------------------------------------------------- shared pieces

def _texts(dataset) -> tuple[list[str], list[str] | None]:
    pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else None
    return list(dataset["text"]), pairs


def vocabulary_of(embedding: EmbeddingMatrix) -> list[str]:
    vocabulary = [""] * len(embedding.matrix)
    for word, row in embedding.word_to_index.items():
        vocabulary[row] = word
    return vocabulary


def _word_counts(texts: list[str], config: StaticConfig) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        counts.update(words(text, config.lowercase)[: config.max_length])
    return counts


def _build_embedding(run: StaticRun, counts: Counter) -> EmbeddingMatrix:
    config = run.config
    return embedding_matrix(counts, run.vectors, oov=config.oov, seed=run.recipe.seed, min_count=config.min_count,
                            lowercase_fallback=True, all_vectors=config.all_vectors)


def _classification_rows(dataset, metrics_fn) -> list[dict[str, Any]]:
    rows = []
    pairs = dataset["text_pair"] if "text_pair" in dataset.column_names else None
    for i, (line, text, decision) in enumerate(zip(dataset["line"], dataset["text"], metrics_fn.decision_rows())):
        rows.append({"line": line, "text": text, **({"text_pair": pairs[i]} if pairs else {}), **decision})
    return rows


def _decisions(run: StaticRun, logits: np.ndarray, gold: np.ndarray, groups: bool = True):
    """(metrics, StreamingMetrics holding the decisions for the predictions file); ``groups``: with the per-group
    scores of the evaluation split (off while searching C)."""
    problem_type, label_names = run.data.problem_type, run.data.label_names
    scores = cls_task.scores_from_logits(torch.from_numpy(np.asarray(logits, dtype=np.float32)), problem_type).numpy()
    predicted = cls_task.decide(scores, problem_type, run.recipe.threshold)
    result = cls_task.metrics_for(problem_type, predicted, gold, label_names)
    if groups:
        result.update(cls_task.group_metrics(problem_type, predicted, gold, label_names,
                                             row_groups(run.data.splits[run.recipe.eval_split])))
    holder = cls_task.StreamingMetrics(problem_type, label_names, run.recipe.threshold)
    holder.decisions = {"predicted": predicted, "gold": gold,
                        "score": get_problem_type(problem_type).confidence(scores)}
    return result, holder


# ---------------------------------------------------------------- averaged vectors + logistic regression

def _idf(id_lists: list[list[int]], rows: int) -> np.ndarray:
    """Smoothed inverse document frequency over the training texts (scikit-learn's formula); rows never
    seen in training get the highest weight."""
    df = np.zeros(rows, dtype=np.float64)
    for ids in id_lists:
        df[np.unique(ids)] += 1
    return np.log((1 + len(id_lists)) / (1 + df)) + 1


def zipf_probabilities(ranks: np.ndarray, size: int) -> np.ndarray:
    """Zipf's law for a frequency-ordered vocabulary of ``size`` words: p(rank r, from 0) = 1 / ((r + 1) H_size)."""
    harmonic = float(np.sum(1.0 / np.arange(1, size + 1, dtype=np.float64)))
    return 1.0 / ((np.asarray(ranks, dtype=np.float64) + 1.0) * harmonic)


def sif_weights(row_counts: np.ndarray, ranks: np.ndarray, vocabulary_size: int, a: float,
                frequencies: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(weight a / (a + p(w)) per embedding row, p(w) per row), Arora, Liang & Ma (2017).

    ``row_counts``: each row's token count in the training texts; ``ranks``: each row's position in the vectors
    file (frequency order), -1 for rows the vectors do not hold (missing words, the unknown word, padding).
    ``frequencies="train"``: p(w) = count / total training tokens; a row never seen in training gets Zipf's p of
    its rank among the ``vocabulary_size`` vectors. ``"zipf"``: Zipf's p of the rank for every row the vectors
    hold; the training frequency for the other rows. A row with neither (never seen, not in the vectors) has
    p = 0, weight 1."""
    counts = np.asarray(row_counts, dtype=np.float64)
    ranks = np.asarray(ranks)
    train_p = counts / max(counts.sum(), 1.0)
    zipf_p = np.where(ranks >= 0, zipf_probabilities(np.maximum(ranks, 0), vocabulary_size), 0.0)
    if frequencies == "train":
        p = np.where(counts > 0, train_p, zipf_p)
    else:
        p = np.where(ranks >= 0, zipf_p, train_p)
    return a / (a + p), p


def principal_components(x: np.ndarray, count: int) -> np.ndarray:
    """[count, dim]: the top right-singular vectors of ``x`` (uncentered, as SIF's TruncatedSVD), each signed so that
    its largest entry is positive (deterministic)."""
    x = np.asarray(x, dtype=np.float64)
    values, vectors = np.linalg.eigh(x.T @ x)
    top = vectors[:, np.argsort(values)[::-1][:count]].T
    signs = np.sign(top[np.arange(len(top)), np.abs(top).argmax(axis=1)])
    return top * signs[:, None]


def _row_ranks(vocabulary: list[str], vectors) -> np.ndarray:
    """Each embedding row's index in the vectors file (lower-cased fallback as in `embedding_matrix`), else -1."""
    index = vectors.key_to_index
    ranks = np.full(len(vocabulary), -1, dtype=np.int64)
    for row, word in enumerate(vocabulary):
        rank = index.get(word)
        if rank is None and word:
            rank = index.get(word.lower())
        if rank is not None:
            ranks[row] = rank
    return ranks


def average_rows(config: StaticConfig, matrix: np.ndarray, vocabulary: list[str], vectors,
                 train_ids: list[list[int]], idf: np.ndarray | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """The embedding rows the averaged-vectors baseline averages: (rows, extra tensors to save, sidecar notes).

    SIF's weights and the component removal are linear in each word's row, so they are applied to the rows
    themselves: the rows become a / (a + p(w)) * v_w with the principal components of the training sentence
    vectors projected out, and the plain (or IDF-weighted) average of those rows, in training and in `load_model`
    from the run folder, is the SIF sentence vector with its components removed. ``train_ids``: the row ids of
    every training text (both sides of text pairs); ``vectors``: the KeyedVectors the rows came from (for ranks)."""
    tensors: dict[str, np.ndarray] = {}
    sidecar: dict[str, Any] = {}
    if config.weighting == "sif":
        counts = np.bincount(np.fromiter((i for ids in train_ids for i in ids), dtype=np.int64), minlength=len(matrix))
        weights, _ = sif_weights(counts, _row_ranks(vocabulary, vectors), len(vectors.index_to_key), config.sif_a,
                                 config.sif_frequencies)
        matrix = (matrix * weights[:, None]).astype(np.float32)
        tensors["sif_weight"] = weights.astype(np.float32)
        sidecar["sif"] = {"a": config.sif_a, "frequencies": config.sif_frequencies, "train_tokens": int(counts.sum())}
    components = removed_components(config)
    if components:
        found = principal_components(average_features(train_ids, matrix, idf), components)
        matrix = (matrix - (matrix.astype(np.float64) @ found.T) @ found).astype(np.float32)
        tensors["removed_components"] = found.astype(np.float32)
        sidecar["removed_components"] = components
    return matrix, tensors, sidecar


def _train_average(run: StaticRun) -> tuple[Outcome, Any]:
    """Averaged word vectors + a linear model: keep the training rows, build the embedding and the standardized
    features, choose C (`_choose_strength`), then score the chosen model on the evaluation split from raw text."""
    recipe, data, config = run.recipe, run.data, run.config
    train_texts, train_pairs, train_y, dropped = _kept_training_rows(run)
    embedding = _build_embedding(run, _word_counts(train_texts + (train_pairs or []), config))
    strategy = _average_strategy(config)
    _announce(run, strategy, embedding.coverage, f"{len(embedding.matrix):,} embedding rows")
    started = time.perf_counter()
    vocabulary = vocabulary_of(embedding)
    features, train_x, tensors, sidecar = _average_features(run, embedding, vocabulary, train_texts, train_pairs)
    if dropped:
        sidecar["min_words"] = {"kept_rows": len(train_texts), "dropped_rows": dropped}
    chosen = _choose_strength(run, features, train_x, train_y)
    train_seconds = time.perf_counter() - started

    eval_rows = data.splits[recipe.eval_split]
    eval_texts, eval_pairs = _texts(eval_rows)
    timer = time.perf_counter()  # throughput from raw text: tokenize, look up, average, standardize, decide
    result, holder = _decisions(run, features.logits(eval_texts, eval_pairs, chosen.weight, chosen.bias),
                                np.asarray(eval_rows["label"]))
    rate = len(eval_texts) / max(time.perf_counter() - timer, 1e-9)
    tensors.update(features.tensors(chosen.weight, chosen.bias))
    outcome = Outcome(
        strategy=strategy, eval=result,
        train=_average_training_record(run, chosen, train_seconds, len(train_y), dropped),
        params={"trainable": int(chosen.weight.size + chosen.bias.size),
                "total": int(chosen.weight.size + chosen.bias.size + embedding.matrix.size)},
        predict_rate=round(rate, 1), history=[{"epoch": 1.0, "step": 0, f"eval_{run.main}": result[run.main]}],
        tensors=tensors, vocabulary=vocabulary, prediction_rows=_classification_rows(eval_rows, holder),
        sidecar=sidecar)
    return outcome, embedding.coverage


def _kept_training_rows(run: StaticRun) -> tuple[list[str], list[str] | None, np.ndarray, int]:
    """(texts, pairs, labels, rows dropped) of the training split without the rows shorter than ``min_words``: left
    out of everything the fit sees (vocabulary counts, SIF's p(w), components, C)."""
    recipe, config = run.recipe, run.config
    train_texts, train_pairs = _texts(run.data.splits[recipe.train_split])
    train_y = np.asarray(run.data.splits[recipe.train_split]["label"])
    if config.min_words <= 1:
        return train_texts, train_pairs, train_y, 0

    def length(i: int) -> int:  # a text pair: its shorter side
        sides = [train_texts[i]] + ([train_pairs[i]] if train_pairs else [])
        return min(len(words(side, config.lowercase)) for side in sides)

    keep = [i for i in range(len(train_texts)) if length(i) >= config.min_words]
    if not keep:
        raise NLPTransferError(f"{recipe.source or 'recipe'}: static.min_words {config.min_words} leaves no "
                               f"training row; lower it")
    return ([train_texts[i] for i in keep], [train_pairs[i] for i in keep] if train_pairs else None, train_y[keep],
            len(train_texts) - len(keep))


def _average_strategy(config: StaticConfig) -> str:
    """The run's strategy name: static-average with a suffix per option (tfidf, sif, quadratic, mean-max-min)."""
    return ("static-average" + ("-tfidf" if config.tfidf else "") + ("-sif" if config.weighting == "sif" else "")
            + ("-quadratic" if config.quadratic else "")
            + ("-mean-max-min" if config.average_pooling == "mean-max-min" else ""))


@dataclass
class _AverageFeatures:
    """Texts -> the standardized features the averaged-vectors baseline's linear model reads; the mean and scale
    come from the training features (`standardized_training`), so C means the same for any vectors."""

    encode: TextEncoder
    matrix: np.ndarray  # the averaged rows (SIF-weighted, components removed, when set)
    idf: np.ndarray | None
    plain: np.ndarray | None  # the rows max and min read (mean-max-min), else None
    quadratic: bool
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def raw(self, ids: list[list[int]], pair_ids: list[list[int]] | None) -> np.ndarray:
        return text_features(ids, pair_ids, self.matrix, self.idf, self.quadratic, self.plain)

    def standardized_training(self, ids: list[list[int]], pair_ids: list[list[int]] | None) -> np.ndarray:
        x = self.raw(ids, pair_ids)
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        x -= self.mean
        x /= self.scale
        return x

    def __call__(self, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        return (self.raw(self.encode(texts), self.encode(pairs) if pairs else None) - self.mean) / self.scale

    def logits(self, texts: list[str], pairs: list[str] | None, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return linear_logits(self(texts, pairs), weight, bias)

    def tensors(self, weight: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
        """What the run folder keeps besides `average_rows`' tensors, for `load_model` to compute the same logits."""
        tensors = {"embedding": self.matrix, "weight": weight.astype(np.float32), "bias": bias.astype(np.float32),
                   "feature_mean": self.mean.astype(np.float32), "feature_scale": self.scale.astype(np.float32)}
        if self.idf is not None:
            tensors["idf"] = self.idf.astype(np.float32)
        return tensors


def _average_features(run: StaticRun, embedding: EmbeddingMatrix, vocabulary: list[str], train_texts: list[str],
                      train_pairs: list[str] | None
                      ) -> tuple[_AverageFeatures, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """(features, standardized training features, tensors to save, sidecar notes): IDF over the training texts,
    the averaged rows (`average_rows`: SIF weights, components removed) and the feature scaling."""
    config = run.config
    encode = TextEncoder(embedding.word_to_index, config)
    train_ids = encode(train_texts)
    train_pair_ids = encode(train_pairs) if train_pairs else []
    idf = _idf(train_ids + train_pair_ids, len(embedding.matrix)) if config.tfidf else None
    matrix, tensors, sidecar = average_rows(config, embedding.matrix, vocabulary, run.vectors,
                                            train_ids + train_pair_ids, idf)
    sidecar["pairs"] = train_pairs is not None
    plain = embedding.matrix if config.average_pooling == "mean-max-min" else None  # what max and min read
    if plain is not None and plain is not matrix:  # SIF / removal changed the averaged rows: keep GloVe's too
        tensors["pool_embedding"] = plain
    features = _AverageFeatures(encode, matrix, idf, plain, config.quadratic)
    train_x = features.standardized_training(train_ids, train_pair_ids or None)
    return features, train_x, tensors, sidecar


def _choose_strength(run: StaticRun, features: _AverageFeatures, train_x: np.ndarray,
                     train_y: np.ndarray) -> StrengthSearch:
    """`linear.search_strength` (no class weights) on the evaluation split, or with ``select_on: train-cv`` by k-fold
    cross-validation on the training rows: the evaluation split is then not looked at until the chosen model
    scores it."""
    recipe, data, config, main = run.recipe, run.data, run.config, run.main

    def score(logits: np.ndarray, gold: np.ndarray) -> float:
        return _decisions(run, logits, gold, groups=False)[0][main]

    if config.select_on == "train-cv":
        if config.cv_folds > len(train_y):
            raise NLPTransferError(f"{recipe.source or 'recipe'}: static.cv_folds {config.cv_folds} is more than the "
                                   f"{len(train_y)} training rows; lower it")
        selection: dict[str, Any] = {"folds": config.cv_folds}
        progress = f"{config.cv_folds}-fold cross-validated {main} on {recipe.train_split}"
    else:
        eval_rows = data.splits[recipe.eval_split]
        selection = {"held_out": (features(*_texts(eval_rows)), np.asarray(eval_rows["label"]))}
        progress = f"{recipe.eval_split} {main}"

    def report(strength: float, value: float) -> None:
        print(f"  C={strength:g}: {progress} {value:.4f}", flush=True)

    return search_strength(data.problem_type, len(data.label_names), (train_x, train_y), score, metric=main,
                           seed=recipe.seed, report=report, **selection)


def _average_training_record(run: StaticRun, chosen: StrengthSearch, seconds: float, rows_used: int,
                             dropped: int) -> dict[str, Any]:
    """metrics.json's ``train`` of an averaged-vectors run: the chosen C, how it was chosen and the per-C table."""
    config, main = run.config, run.main
    selection: dict[str, Any] = {"select_on": config.select_on}
    if dropped:
        selection.update({"min_words": config.min_words, "train_rows_used": rows_used, "train_rows_dropped": dropped})
    if config.select_on == "train-cv":
        selection.update({"cv_folds": config.cv_folds, f"cv_{main}": chosen.score})
    return {"runtime_s": round(seconds, 2), "epochs": 1, "global_step": 0,
            "classifier": get_problem_type(run.data.problem_type).linear_model,
            "C": chosen.strength, **selection, "search": chosen.table}


def _count(model: nn.Module) -> dict[str, int]:
    return {"trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "total": int(sum(p.numel() for p in model.parameters()))}


# The static BiLSTMs keep this loop rather than transformers.Trainer (issue 28 asks for one or the other, with the
# reason): their inputs are word ids from the package's own word tokenizer and a frozen embedding matrix, not a
# tokenizer's batches, so Trainer would need a PreTrainedModel wrapper, a word collator and a checkpoint format of
# its own; the static backend runs in one process (no accelerate launch to gain); and the loop is one screen:
# AdamW, an evaluation per epoch, early stopping, the best epoch restored. Not measured against Trainer here.
def _fit(model: nn.Module, run: StaticRun, train_lengths: np.ndarray, batch_loss: Callable[[np.ndarray], torch.Tensor],
         evaluate: Callable[[], dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """AdamW over the trainable parameters (a constant rate, or ``schedule: linear``: decayed to 0 by the last
    epoch), one evaluation per epoch, early stopping on the main metric; the best epoch's weights are restored at the
    end (``keep: last``: the final epoch's are kept). Returns (history, train info)."""
    from tqdm.auto import tqdm

    config, main, split = run.config, run.main, run.recipe.eval_split
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(train_lengths) / config.batch_size)  # length_batches: ceil(n / size) an epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: max(0.0, 1 - done / steps)
                                                  if config.schedule == "linear" else 1.0)
    rng = np.random.default_rng(run.recipe.seed)
    history: list[dict[str, Any]] = []
    best, best_state, best_epoch, waited, step, epoch, loss_mean = None, None, 0, 0, 0, 0, math.nan
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, count = 0.0, 0
        progress = tqdm(length_batches(train_lengths, config.batch_size, rng), desc=f"epoch {epoch}/{config.epochs}",
                        leave=False, mininterval=1.0)
        for batch in progress:
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(batch)
            loss.backward()
            nn.utils.clip_grad_norm_(trainable.values(), 5.0)
            optimizer.step()
            scheduler.step()
            step, count, total = step + 1, count + 1, total + float(loss.detach())
            if count % 50 == 0:
                progress.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        loss_mean = total / max(count, 1)
        history.append({"epoch": float(epoch), "step": step, "loss": round(loss_mean, 6)})
        scores = evaluate()
        history.append({"epoch": float(epoch), "step": step, f"eval_{main}": scores[main],
                        "eval_loss": scores.get("loss")})
        improved = best is None or scores[main] > best
        print(f"  epoch {epoch}: train loss {loss_mean:.4f}, {split} {main} {scores[main]:.4f}"
              + (" (best)" if improved else ""), flush=True)
        if improved:
            best, best_epoch, waited = scores[main], epoch, 0
            best_state = {name: p.detach().clone() for name, p in trainable.items()}
        else:
            waited += 1
            if config.patience is not None and waited >= config.patience:
                break
    if best_state is not None and config.keep == "best":
        with torch.no_grad():
            for name, value in best_state.items():
                trainable[name].copy_(value)
    return history, {"epochs": epoch, "best_epoch": best_epoch, "kept_epoch": best_epoch if config.keep == "best"
                     else epoch, "global_step": step, "loss": round(loss_mean, 6), "best_" + main: best}


def _state_tensors(model: nn.Module) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


# ---------------------------------------------------------------- BiLSTM classifier

def _train_classifier(run: StaticRun) -> tuple[Outcome, Any]:
    recipe, data, config = run.recipe, run.data, run.config
    problem_type = data.problem_type
    train_texts, train_pairs = _texts(data.splits[recipe.train_split])
    eval_texts, eval_pairs = _texts(data.splits[recipe.eval_split])
    embedding = _build_embedding(run, _word_counts(train_texts + (train_pairs or []), config))
    _announce(run, "static-bilstm", embedding.coverage,
              f"{len(embedding.matrix):,} embedding rows, OOV {config.oov}, on {run.device}")
    encode = TextEncoder(embedding.word_to_index, config)
    kind = get_problem_type(problem_type)
    outputs = len(data.label_names) if kind.labelled else 1
    torch.manual_seed(recipe.seed)
    model = BiLSTMClassifier(StaticEmbedding.from_matrix(embedding, config.train_vectors), config, outputs,
                             pairs=train_pairs is not None)
    model.to(run.device)
    train_labels = data.splits[recipe.train_split]["label"]
    weights = cls_task.class_weight_tensor(recipe.class_weights, train_labels, problem_type, len(data.label_names))

    def loss_fn(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        if weights is not None and kind.labelled:
            return cls_task.weighted_loss(logits, gold, weights, problem_type)
        if not kind.labelled:
            return nn.functional.mse_loss(logits.squeeze(-1), gold.float())
        if kind.multi_hot:
            return nn.functional.binary_cross_entropy_with_logits(logits, gold.float())
        return nn.functional.cross_entropy(logits, gold)

    def predict(ids: list[list[int]], pair_ids: list[list[int]] | None) -> np.ndarray:
        return classifier_logits(model, ids, pair_ids, outputs, run.device)

    started = time.perf_counter()
    train_ids, train_pair_ids = encode(train_texts), (encode(train_pairs) if train_pairs else None)
    eval_ids, eval_pair_ids = encode(eval_texts), (encode(eval_pairs) if eval_pairs else None)
    train_y = torch.as_tensor(np.asarray(train_labels)).to(run.device)
    eval_y = np.asarray(data.splits[recipe.eval_split]["label"])
    if "soft_labels" in data.splits[recipe.train_split].column_names:  # strategy distill: the teacher's targets
        soft = torch.as_tensor(np.asarray(data.splits[recipe.train_split]["soft_labels"], dtype=np.float32))
        soft, soft_loss = soft.to(run.device), recipe.strategy.soft_loss()

        def train_loss(logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
            return soft_loss(logits, train_y[rows], soft[rows])
    else:
        def train_loss(logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
            return loss_fn(logits, train_y[rows])

    def evaluate() -> dict[str, Any]:
        logits = predict(eval_ids, eval_pair_ids)
        result, _ = _decisions(run, logits, eval_y, groups=False)
        result["loss"] = float(loss_fn(torch.from_numpy(logits), torch.as_tensor(eval_y)))
        return result

    lengths = np.asarray([len(s) for s in train_ids])
    history, info = _fit(model, run, lengths,
                         lambda batch: train_loss(classifier_forward(model, train_ids, train_pair_ids, batch,
                                                                     run.device), batch), evaluate)
    train_seconds = time.perf_counter() - started

    timer = time.perf_counter()  # throughput from raw text: tokenize, look up, run the BiLSTM, decide
    logits = predict(encode(eval_texts), encode(eval_pairs) if eval_pairs else None)
    result, holder = _decisions(run, logits, eval_y)
    rate = len(eval_texts) / max(time.perf_counter() - timer, 1e-9)
    result["loss"] = float(loss_fn(torch.from_numpy(logits), torch.as_tensor(eval_y)))
    outcome = Outcome(
        strategy="static-bilstm", eval=result,
        train={"runtime_s": round(train_seconds, 2), **info, "samples_per_second": None},
        params=_count(model), predict_rate=round(rate, 1), history=history, tensors=_state_tensors(model),
        vocabulary=vocabulary_of(embedding),
        prediction_rows=_classification_rows(data.splits[recipe.eval_split], holder),
        sidecar={"pairs": train_pairs is not None, "outputs": outputs})
    steps = info["epochs"] * len(train_ids)
    outcome.train["samples_per_second"] = round(steps / max(train_seconds, 1e-9), 1)
    return outcome, embedding.coverage


# ---------------------------------------------------------------- BiLSTM tagger

def _train_tagger(run: StaticRun) -> tuple[Outcome, Any]:
    from ..tasks.ner import entity_metrics

    recipe, data, config = run.recipe, run.data, run.config
    labels = data.label_names
    train_split, eval_split = data.splits[recipe.train_split], data.splits[recipe.eval_split]
    key = (lambda token: token.lower()) if config.lowercase else (lambda token: token)
    counts = Counter(key(t) for tokens in train_split["tokens"] for t in tokens[: config.max_length])
    embedding = _build_embedding(run, counts)
    types = sorted({name[2:] for name in labels if name[:2] in ("B-", "I-")})
    _announce(run, "static-bilstm", embedding.coverage,
              f"{len(types)} entity types ({', '.join(types)}), casing features {config.casing_features}, "
              f"on {run.device}")
    torch.manual_seed(recipe.seed)
    embedding_layer = StaticEmbedding.from_matrix(embedding, config.train_vectors)
    model = BiLSTMTagger(embedding_layer, config, len(labels)).to(run.device)

    def encode(sentences: list[list[str]], limit: int | None = None):
        return tagger_inputs(sentences, embedding.word_to_index, config.lowercase, limit)

    def predict(sentences: list[list[str]]) -> list[list[str]]:
        """The tag of every word (sentences are never truncated here)."""
        ids, shapes = encode(sentences)
        return [[labels[j] for j in logits.argmax(-1)] for logits in tagger_logits(model, ids, shapes, run.device)]

    def loss_on(ids, shapes, tags, batch: np.ndarray) -> torch.Tensor:
        logits = tagger_forward(model, ids, shapes, batch, run.device)
        gold, _ = pad([tags[i] for i in batch], IGNORE)
        gold = gold.to(logits.device)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1),
                                           ignore_index=IGNORE)

    started = time.perf_counter()
    keep = [i for i, tokens in enumerate(train_split["tokens"]) if tokens]
    train_ids, train_shapes = encode([train_split["tokens"][i] for i in keep], config.max_length)
    train_tags = [train_split["tags"][i][: config.max_length] for i in keep]
    eval_tokens = list(eval_split["tokens"])
    eval_gold = [[labels[t] for t in tags] for tags in eval_split["tags"]]
    eval_ids, eval_shapes = encode(eval_tokens)
    eval_tags = [list(tags) for tags in eval_split["tags"]]
    eval_lengths = np.asarray([len(tokens) for tokens in eval_tokens])
    nonempty = np.flatnonzero(eval_lengths > 0)

    def evaluate() -> dict[str, Any]:
        result = entity_metrics(eval_gold, predict(eval_tokens), recipe.strict)
        total = 0.0
        with torch.inference_mode():
            for batch in length_batches(eval_lengths[nonempty], PREDICT_BATCH):
                rows = nonempty[batch]
                total += float(loss_on(eval_ids, eval_shapes, eval_tags, rows)) * int(eval_lengths[rows].sum())
        result["loss"] = total / max(int(eval_lengths.sum()), 1)  # mean over tokens
        return result

    lengths = np.asarray([len(s) for s in train_ids])
    history, info = _fit(model, run, lengths, lambda batch: loss_on(train_ids, train_shapes, train_tags, batch),
                         evaluate)
    train_seconds = time.perf_counter() - started

    timer = time.perf_counter()
    predicted = predict(eval_tokens)
    rate = len(eval_tokens) / max(time.perf_counter() - timer, 1e-9)
    result = evaluate()
    rows = [{"line": line, "tokens": tokens, "tags": gold, "predicted": tags}
            for line, tokens, gold, tags in zip(eval_split["line"], eval_tokens, eval_gold, predicted)]
    outcome = Outcome(
        strategy="static-bilstm", eval=result, train={"runtime_s": round(train_seconds, 2), **info},
        params=_count(model), predict_rate=round(rate, 1), history=history, tensors=_state_tensors(model),
        vocabulary=vocabulary_of(embedding), prediction_rows=rows,
        sidecar={"casing": list(CASING), "strict": recipe.strict})
    return outcome, embedding.coverage
