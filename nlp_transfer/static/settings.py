"""The ``static:`` settings of a recipe and the names of a static run's files, shared by training
(`nlp_transfer.static.baselines`) and loading (`nlp_transfer.static.predictors`).

    config = parse_static({"vectors": "glove.txt.gz", "baseline": "average"}, "recipes/x.yaml")
    static_device(config)   # 'cuda' when torch sees a GPU, else 'cpu' (config.device: auto by default)
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..errors import NLPTransferError, did_you_mean
from .matrix import OOV_OPTIONS

BASELINES = ("average", "bilstm")
POOLINGS = ("max", "last")
AVERAGE_POOLINGS = ("mean", "mean-max-min")  # average: the mean, or with each dimension's max and min over the words
WEIGHTINGS = ("none", "tfidf", "sif")  # average: how each word counts in its text's vector
SIF_FREQUENCIES = ("train", "zipf")  # where SIF's p(w) comes from
SELECT_ON = ("eval", "train-cv")  # average: how C is chosen
SCHEDULES = ("constant", "linear")  # bilstm: the learning rate over the epochs
KEEP = ("best", "last")  # bilstm: which epoch's weights a run keeps
WEIGHTS_FILE = "model.safetensors"  # the weights (safetensors; the embedding rows included)
VOCABULARY_FILE = "vocabulary.json"  # the word of each embedding row


@dataclass
class StaticConfig:
    """The ``static:`` mapping of a recipe; every key has a default except ``vectors``."""

    vectors: str | None = None  # GloVe / word2vec / fastText file (relative to the working dir or the recipe)
    format: str = "auto"  # auto | glove | word2vec | word2vec-bin | fasttext | fasttext-bin
    limit: int | None = None  # keep the first N words of the vectors file
    unicode_errors: str = "strict"  # strict | replace | ignore: undecodable bytes in words
    baseline: str = "bilstm"  # average | bilstm (classification); the tagger is always a BiLSTM
    tfidf: bool = False  # average: weight words by their inverse document frequency (= weighting: tfidf)
    weighting: str = "none"  # average: none | tfidf | sif (Arora, Liang & Ma 2017: a / (a + p(w)), then the
    #                          first principal component of the training sentence vectors is removed)
    sif_a: float = 1e-3  # SIF's a
    sif_frequencies: str = "train"  # p(w): train (the training texts; unseen words: Zipf from the vectors' rank)
    #                                 | zipf (Zipf from the vectors' rank for every word the vectors hold)
    remove_components: int | None = None  # average: principal components removed (None: 1 with sif, else 0)
    select_on: str = "eval"  # average: C chosen on the evaluation split (eval) or by k-fold CV on train (train-cv)
    cv_folds: int = 5  # folds of select_on: train-cv
    min_words: int = 1  # average: training rows with fewer words are left out (SST-2 trains on every sub-phrase)
    quadratic: bool = False  # average: also average each word's pairwise products v_i*v_j (second-order pooling)
    average_pooling: str = "mean"  # average: mean | mean-max-min (the mean, then each dimension's max and min over
    #                                the text's word vectors as GloVe gives them: before SIF weights / removal)
    lowercase: bool = True  # lower-case words before lookup (GloVe 6B is uncased)
    oov: str = "random"  # random | zeros | learned: rows of words missing from the vectors
    min_count: int = 1  # a missing word gets its own row from this many training occurrences
    all_vectors: bool = True  # embed every word of the vectors, not only training words
    train_vectors: bool = False  # BiLSTMs: every embedding row trains with the model (Kim 2014's "non-static";
    #                              more to overfit on small data), not only the OOV rows of oov: learned
    hidden: int = 128  # BiLSTM units per direction
    layers: int = 1
    dropout: float = 0.3
    pooling: str = "max"  # classifier: max over time | last (final states of both directions)
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    schedule: str = "constant"  # constant | linear: the rate decays linearly to 0 over the epochs (a steadier last
    #                             epoch, for keep: last)
    weight_decay: float = 0.0
    patience: int | None = 3  # stop after this many epochs without a better evaluation score (None: never)
    keep: str = "best"  # best: the epoch with the best evaluation score is restored at the end | last: the final
    #                     epoch's weights (with patience: null, nothing is chosen on the evaluation split)
    casing_features: bool = True  # tagger: a trainable embedding of the word's shape
    casing_dim: int = 16
    max_length: int = 256  # words per text (classifier) / per training sentence (tagger)
    threads: int | None = 1  # torch threads while training (None: leave torch's setting)
    device: str = "auto"  # auto (CUDA when present, else the CPU) | cpu | cuda | cuda:N | mps


FLOATS = ("sif_a", "learning_rate", "weight_decay", "dropout")  # YAML 1.1 reads 1e-3 as a string: read as numbers


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def static_device(config: StaticConfig) -> str:
    """The device the BiLSTMs train on (`nlp_transfer.runtime.resolve_device` of ``config.device``)."""
    from ..runtime import resolve_device

    return resolve_device(config.device)


def parse_static(values: Any, source: str = "recipe") -> StaticConfig:
    """Validate a recipe's ``static:`` mapping; unknown keys are named with the closest valid one."""
    from ..config import check_keys

    if not isinstance(values, dict):
        raise NLPTransferError(f"{source}: 'static' must be a mapping, e.g. static: {{vectors: glove.txt.gz}}")
    check_keys(values, {f.name for f in fields(StaticConfig)}, "static.", source)
    values = {key: _number(value) if key in FLOATS else value for key, value in values.items()}
    config = StaticConfig(**values)

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise NLPTransferError(f"{source}: static.{key} must be {what}, got {getattr(config, key)!r}")

    def choice(key: str, allowed: tuple[str, ...]) -> None:
        value = getattr(config, key)
        if value not in allowed:
            raise NLPTransferError(f"{source}: static.{key} '{value}' is not supported{did_you_mean(value, allowed)} "
                                   f"(choose from {', '.join(allowed)})")

    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not config.vectors or not isinstance(config.vectors, str):
        raise NLPTransferError(f"{source}: static.vectors is missing; give the path of a GloVe / word2vec / fastText "
                               f"file, e.g. static.vectors=../shared/data/glove/glove.6B.50d.100k.txt.gz")
    choice("baseline", BASELINES)
    choice("pooling", POOLINGS)
    choice("average_pooling", AVERAGE_POOLINGS)
    choice("oov", OOV_OPTIONS)
    choice("weighting", WEIGHTINGS)
    choice("sif_frequencies", SIF_FREQUENCIES)
    choice("select_on", SELECT_ON)
    for key in ("tfidf", "quadratic", "lowercase", "all_vectors", "casing_features", "train_vectors"):
        need(isinstance(getattr(config, key), bool), key, "true or false")
    for key in ("hidden", "layers", "epochs", "batch_size", "min_count", "max_length", "casing_dim", "min_words"):
        need(integer(getattr(config, key)) and getattr(config, key) >= 1, key, "a positive integer")
    need(integer(config.cv_folds) and config.cv_folds >= 2, "cv_folds", "an integer >= 2")
    need(config.remove_components is None or (integer(config.remove_components) and config.remove_components >= 0),
         "remove_components", "an integer >= 0 or null")
    need(isinstance(config.sif_a, (int, float)) and not isinstance(config.sif_a, bool) and config.sif_a > 0, "sif_a",
         "a positive number")
    if config.tfidf and config.weighting == "sif":
        raise NLPTransferError(f"{source}: static.tfidf and static.weighting=sif are exclusive (two ways of weighting "
                               f"words); keep one")
    if config.weighting == "tfidf" or config.tfidf:  # tfidf: true is the older spelling of weighting: tfidf
        config.tfidf, config.weighting = True, "tfidf"
    need(config.limit is None or (integer(config.limit) and config.limit >= 1), "limit", "a positive integer or null")
    need(config.threads is None or (integer(config.threads) and config.threads >= 1), "threads",
         "a positive integer or null")
    need(config.patience is None or (integer(config.patience) and config.patience >= 1), "patience",
         "a positive integer or null")
    choice("keep", KEEP)
    choice("schedule", SCHEDULES)
    if config.keep == "last" and config.patience is not None:
        raise NLPTransferError(f"{source}: static.keep=last trains every epoch, but static.patience={config.patience} "
                               f"stops early on the evaluation split; add static.patience=null")
    need(isinstance(config.dropout, (int, float)) and 0 <= config.dropout < 1, "dropout", "a number in [0, 1)")
    need(isinstance(config.learning_rate, (int, float)) and config.learning_rate > 0, "learning_rate",
         "a positive number")
    need(isinstance(config.weight_decay, (int, float)) and config.weight_decay >= 0, "weight_decay",
         "a number >= 0")
    need(isinstance(config.device, str), "device", "one of auto, cpu, cuda, cuda:N, mps")
    try:
        static_device(config)
    except NLPTransferError as exc:
        message = str(exc).replace("--device ", "static.device=")  # the recipe key, not the CLI's option
        raise NLPTransferError(f"{source}: static.{message}") from None
    return config


def removed_components(config: StaticConfig) -> int:
    """Principal components the average baseline removes: ``remove_components``, else 1 with SIF and 0 otherwise."""
    if config.remove_components is not None:
        return config.remove_components
    return 1 if config.weighting == "sif" else 0
