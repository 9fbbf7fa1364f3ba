"""Static baselines end to end on toy cards: averaged vectors + LR (plain, TF-IDF, quadratic), the BiLSTM
classifier and the BiLSTM tagger write the same reports as transformer runs, and frozen rows stay frozen."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nlp_transfer import train
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.static import load_vectors, words
from nlp_transfer.tasks.classification import metrics_for
from nlp_transfer.tasks.ner import entity_metrics

METRIC_KEYS = {"task", "problem_type", "model", "data", "strategy", "eval_split", "main_metric", "eval", "train",
               "params", "predict", "history", "coverage", "rows"}
FILES = ("metrics.json", "predictions_validation.jsonl", "recipe.yaml", "coverage.json", "model.safetensors",
         "README.md", "nlp_transfer.json", "vocabulary.json")
POSITIVE = {"good", "great", "fun", "best", "charming", "funny", "beautiful", "enjoyable", "love", "moving"}
NEGATIVE = {"bad", "worst", "dull", "boring", "mess", "stupid", "flat", "tedious", "fails", "lacks"}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))


def write_vectors(path: Path, vocabulary: set[str], dim: int = 8, leave_out: int = 15) -> Path:
    """Seeded random vectors for the vocabulary (minus a few words, so OOV rows are exercised), with one
    dimension that says 'positive' or 'negative' for a handful of sentiment words."""
    rng = np.random.default_rng(0)
    chosen = sorted(vocabulary)[leave_out:]
    lines = []
    for word in chosen:
        vector = rng.normal(0, 0.3, dim)
        vector[0] = 2.0 if word in POSITIVE else -2.0 if word in NEGATIVE else vector[0]
        lines.append(word + " " + " ".join(f"{x:.5f}" for x in vector))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def sst_vectors(sst2_toy, tmp_path):
    texts = [line.split("\t")[0] for name in ("train.tsv", "dev.tsv")
             for line in (sst2_toy.parent / name).read_text(encoding="utf-8").splitlines()[1:]]
    vocabulary = {w for text in texts for w in words(text)} | POSITIVE | NEGATIVE
    return write_vectors(tmp_path / "sst-vectors.txt", vocabulary)


@pytest.fixture()
def conll_vectors(conll_toy, tmp_path):
    vocabulary = {line.split()[0].lower() for name in ("train.txt", "valid.txt", "test.txt")
                  for line in (conll_toy.parent / name).read_text(encoding="utf-8").splitlines() if line.strip()}
    return write_vectors(tmp_path / "conll-vectors.txt", vocabulary, leave_out=40)


def recipe(card: Path, vectors: Path, out: Path, **static) -> dict:
    return {"task": "sequence-classification", "data": str(card), "output_dir": str(out), "seed": 7,
            "static": {"vectors": str(vectors), "hidden": 16, "epochs": 3, "batch_size": 16, **static}}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_classification_run(out: Path, metrics: dict) -> list[dict]:
    for name in FILES:
        assert (out / name).is_file(), name
    assert METRIC_KEYS <= set(metrics)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["model"] == "sst-vectors (static)" and metrics["main_metric"] == "accuracy"
    rows = read_rows(out / "predictions_validation.jsonl")
    assert len(rows) == metrics["rows"]["validation"] == 64
    names = ["negative", "positive"]
    predicted = np.array([names.index(r["predicted"]) for r in rows])
    gold = np.array([names.index(r["label"]) for r in rows])
    recomputed = metrics_for("single_label", predicted, gold, names)
    assert metrics["eval"]["accuracy"] == pytest.approx(recomputed["accuracy"])
    assert metrics["eval"]["f1_macro"] == pytest.approx(recomputed["f1_macro"])
    assert json.loads((out / "coverage.json").read_text()) == metrics["coverage"]
    assert metrics["coverage"]["misses"] > 0 and 0 < metrics["coverage"]["token_coverage"] < 1
    assert metrics["predict"]["samples_per_second"] > 0
    assert 0 < metrics["params"]["trainable"] < metrics["params"]["total"]
    return rows


@pytest.mark.parametrize("options, strategy", [({}, "static-average"), ({"tfidf": True}, "static-average-tfidf"),
                                               ({"quadratic": True}, "static-average-quadratic")])
def test_averaged_vectors_and_logistic_regression(sst2_toy, sst_vectors, tmp_path, options, strategy):
    out = tmp_path / "avg"
    metrics = train(recipe(sst2_toy, sst_vectors, out, baseline="average", **options)).metrics
    assert metrics["strategy"] == strategy
    check_classification_run(out, metrics)
    search = metrics["train"]["search"]
    assert metrics["eval"]["accuracy"] == max(s["accuracy"] for s in search)  # C chosen on validation
    assert metrics["history"] == [{"epoch": 1.0, "step": 0, "eval_accuracy": metrics["eval"]["accuracy"]}]
    dim = 8 + (8 * 9 // 2 if options.get("quadratic") else 0)
    assert metrics["params"]["trainable"] == 2 * dim + 2


def test_bilstm_classifier_keeps_frozen_rows_and_reports_epochs(sst2_toy, sst_vectors, tmp_path):
    from safetensors.numpy import load_file

    out = tmp_path / "bilstm"
    metrics = train(recipe(sst2_toy, sst_vectors, out, oov="learned")).metrics
    assert metrics["strategy"] == "static-bilstm" and metrics["static"]["device"] == "auto"
    check_classification_run(out, metrics)
    epochs = metrics["train"]["epochs"]
    assert [h["epoch"] for h in metrics["history"] if "loss" in h] == [float(e) for e in range(1, epochs + 1)]
    best = max(h["eval_accuracy"] for h in metrics["history"] if "eval_accuracy" in h)
    assert metrics["eval"]["accuracy"] == pytest.approx(best)  # the best epoch's weights were kept
    weights = load_file(str(out / "model.safetensors"))
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    vectors = load_vectors(sst_vectors, progress=False)
    frozen, learned_rows = weights["embedding.frozen"], weights["embedding.learned_rows"]
    known = [row for row, word in enumerate(vocabulary) if word in vectors.key_to_index]
    assert len(known) > 100
    np.testing.assert_array_equal(frozen[known], vectors.vectors[[vectors.key_to_index[vocabulary[r]] for r in known]])
    assert not np.array_equal(weights["embedding.learned"], frozen[learned_rows])  # only OOV rows moved
    assert metrics["params"]["trainable"] == sum(v.size for k, v in weights.items()
                                                 if k not in ("embedding.frozen", "embedding.learned_rows"))


def test_bilstm_tagger_on_conll(conll_toy, conll_vectors, tmp_path):
    out = tmp_path / "tagger"
    values = recipe(conll_toy, conll_vectors, out, epochs=2)
    metrics = train({**values, "task": "token-classification", "test_split": "test"}).metrics
    for name in FILES:
        assert (out / name).is_file(), name
    assert METRIC_KEYS | {"test", "test_split"} <= set(metrics)
    assert metrics["strategy"] == "static-bilstm" and metrics["main_metric"] == "f1"
    assert metrics["test_split"] == "test" and metrics["test"]["rows"] == 60
    rows = read_rows(out / "predictions_validation.jsonl")
    assert len(rows) == 60 and all(len(r["predicted"]) == len(r["tokens"]) for r in rows)
    recomputed = entity_metrics([r["tags"] for r in rows], [r["predicted"] for r in rows])
    assert metrics["eval"]["f1"] == pytest.approx(recomputed["f1"])
    assert metrics["eval"]["accuracy"] == pytest.approx(recomputed["accuracy"])
    assert set(metrics["eval"]["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
    static = json.loads((out / "nlp_transfer.json").read_text())
    assert static["backend"] == "static"
    assert static["label_names"][0] == "O" and static["casing"][1:] == ["lower", "initial_cap", "all_caps", "numeric",
                                                                        "other"]


def test_override_switches_the_baseline(sst2_toy, sst_vectors, tmp_path):
    path = tmp_path / "recipe.yaml"
    import yaml

    path.write_text(yaml.safe_dump(recipe(sst2_toy, sst_vectors, tmp_path / "run")), encoding="utf-8")
    metrics = train(str(path), ["static.baseline=average", "static.tfidf=true"]).metrics
    assert metrics["strategy"] == "static-average-tfidf"


def test_bad_static_key_names_the_closest(sst2_toy, sst_vectors, tmp_path):
    bad_key = r"unknown key 'static\.hiden'; did you mean 'static\.hidden'\?"
    with pytest.raises(NLPTransferError, match=bad_key) as error:
        train(recipe(sst2_toy, sst_vectors, tmp_path / "run", hiden=8))
    assert "\n" not in str(error.value)
    with pytest.raises(NLPTransferError, match=r"static\.baseline 'avg' is not supported"):
        train(recipe(sst2_toy, sst_vectors, tmp_path / "run", baseline="avg"))
    with pytest.raises(NLPTransferError, match=r"static\.vectors is missing"):
        train({**recipe(sst2_toy, sst_vectors, tmp_path / "run"), "static": {"epochs": 1}})


def test_missing_vectors_file_and_non_empty_output_dir(sst2_toy, sst_vectors, tmp_path):
    with pytest.raises(NLPTransferError, match="did you mean .*sst-vectors.txt"):
        train(recipe(sst2_toy, sst_vectors.with_name("sst-vector.txt"), tmp_path / "run"))
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(NLPTransferError, match="holds files that no nlp-transfer run wrote"):
        train(recipe(sst2_toy, sst_vectors, out, baseline="average"))


def test_tagger_rejects_the_average_baseline(conll_toy, conll_vectors, tmp_path):
    values = recipe(conll_toy, conll_vectors, tmp_path / "run", baseline="average")
    with pytest.raises(NLPTransferError, match="baseline average is for classification"):
        train({**values, "task": "token-classification"})


def test_static_device_is_cuda_when_torch_sees_one(monkeypatch):
    """``static.device: auto`` (the default) resolves through runtime.resolve_device: CUDA when present, else the
    CPU; a named device is checked against the machine when the recipe is read."""
    import torch

    from nlp_transfer.static.baselines import parse_static, static_device

    def device(source: str = "recipe", **values) -> str:
        return static_device(parse_static({"vectors": "v.txt", **values}, source))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device() == "cpu" and device(device="cpu") == "cpu"
    with pytest.raises(NLPTransferError, match=r"^x\.yaml: static\.device 'cuda': torch sees no CUDA GPU here; use "
                                               r"static\.device=cpu \(or auto\)$"):
        device("x.yaml", device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device() == "cuda" and device(device="cuda:1") == "cuda:1" and device(device="cpu") == "cpu"
    with pytest.raises(NLPTransferError, match=r"x\.yaml: static\.device 'cuda:2': this machine has 2 CUDA GPU"):
        device("x.yaml", device="cuda:2")
    with pytest.raises(NLPTransferError, match=r"x\.yaml: static\.device 'tpu' is not one of auto, cpu, cuda"):
        device("x.yaml", device="tpu")


def test_bilstm_keep_last_keeps_the_final_epoch_and_needs_no_patience(sst2_toy, sst_vectors, tmp_path):
    # a learning rate this high makes the dev score wander between epochs, so the last epoch is not the best one
    metrics = train(recipe(sst2_toy, sst_vectors, tmp_path / "last", keep="last", patience=None, epochs=5,
                           learning_rate=0.05)).metrics
    scores = [h["eval_accuracy"] for h in metrics["history"] if "eval_accuracy" in h]
    assert len(scores) == 5 and metrics["train"]["kept_epoch"] == 5
    assert max(scores) > scores[-1]  # the case where keeping the best would differ
    assert metrics["eval"]["accuracy"] == pytest.approx(scores[-1])
    with pytest.raises(NLPTransferError, match="static.keep=last .* add static.patience=null"):
        train(recipe(sst2_toy, sst_vectors, tmp_path / "early", keep="last"))


def test_bilstm_linear_schedule_decays_the_rate_to_zero(sst2_toy, sst_vectors, tmp_path, monkeypatch):
    import torch

    seen = []  # the rate of every optimiser step
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    train(recipe(sst2_toy, sst_vectors, tmp_path / "linear", schedule="linear", keep="last", patience=None,
                 epochs=4, learning_rate=0.01))
    assert seen[0] == pytest.approx(0.01) and len(seen) == 4 * 10  # 160 rows / 16 a batch, 4 epochs
    assert all(a > b for a, b in zip(seen, seen[1:])) and seen[-1] == pytest.approx(0.01 / 40)
    with pytest.raises(NLPTransferError, match="schedule"):
        train(recipe(sst2_toy, sst_vectors, tmp_path / "bad", schedule="cosine"))


def test_bilstm_train_vectors_moves_every_row_and_reloads(sst2_toy, sst_vectors, tmp_path):
    from safetensors.numpy import load_file

    from nlp_transfer import load_model

    out = tmp_path / "trained-vectors"
    metrics = train(recipe(sst2_toy, sst_vectors, out, train_vectors=True, epochs=2)).metrics
    weights = load_file(str(out / "model.safetensors"))
    learned = weights["embedding.frozen"]  # every row trains: the table itself, no second copy
    assert "embedding.learned" not in weights
    np.testing.assert_array_equal(weights["embedding.learned_rows"], np.arange(len(learned)))
    vectors = load_vectors(sst_vectors, progress=False)
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    seen = {w for line in (sst2_toy.parent / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
            for w in words(line.split("\t")[0])}
    rows = [row for row, word in enumerate(vocabulary) if word in seen and word in vectors.key_to_index]
    start = vectors.vectors[[vectors.key_to_index[vocabulary[row]] for row in rows]]
    moved = np.abs(learned[rows] - start).max(axis=1) > 0
    assert len(rows) > 100 and moved.mean() > 0.9  # the training words' own vectors trained, not only OOV rows
    assert metrics["params"]["trainable"] == metrics["params"]["total"] > learned.size  # and nothing twice
    assert "word vectors trained with it" in (out / "README.md").read_text(encoding="utf-8")
    texts = [r["text"] for r in read_rows(out / "predictions_validation.jsonl")]
    predicted = [r["predicted"] for r in read_rows(out / "predictions_validation.jsonl")]
    assert [p["label"] for p in load_model(out).predict(texts)] == predicted  # the trained rows were saved
    with pytest.raises(NLPTransferError, match="static.train_vectors .* static.baseline=bilstm"):
        train(recipe(sst2_toy, sst_vectors, tmp_path / "avg", baseline="average", train_vectors=True))
    with pytest.raises(NLPTransferError, match="static.oov learned .* static.oov random or zeros"):
        train(recipe(sst2_toy, sst_vectors, tmp_path / "avg", baseline="average", oov="learned"))
