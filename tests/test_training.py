"""End-to-end training on tiny real models and real SST-2 rows."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_recipe, topic_card, write_card

from nlp_transfer import NLPTransferError, load_model, train


def test_output_dir_holds_model_labels_metrics_predictions_and_card(sst2_toy, tiny_bert, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_recipe(sst2_toy, tiny_bert, out))
    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "recipe.yaml", "README.md",
                 "predictions_validation.jsonl", "nlp_transfer.json"):
        assert (out / name).is_file(), name
    assert not (out / "training_args.bin").exists()  # no pickles in what we hand to users
    assert not list(out.glob("checkpoint-*"))
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval"]["accuracy"] == result.metrics["eval"]["accuracy"]
    assert set(metrics["eval"]["per_class"]) == {"negative", "positive"}
    assert sum(map(sum, metrics["eval"]["confusion_matrix"]["matrix"])) == 64
    assert metrics["params"]["trainable"] == metrics["params"]["total"] > 0
    predictions = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(predictions) == 64
    correct = np.mean([p["label"] == p["predicted"] for p in predictions])
    assert correct == pytest.approx(metrics["eval"]["accuracy"])
    # each prediction sits beside its own row: text and gold label match the file at that line
    lines = (sst2_toy.parent / "dev.tsv").read_text().splitlines()
    for p in predictions:
        text, label = lines[p["line"] - 1].rsplit("\t", 1)
        assert p["text"] == text.strip() and p["label"] == ["negative", "positive"][int(label)]
    # and the predicted label is what the saved model predicts for that text
    model = load_model(out)
    again = model.predict([p["text"] for p in predictions])
    assert [a["label"] for a in again] == [p["predicted"] for p in predictions]
    assert "| accuracy |" in (out / "README.md").read_text()


def test_saved_model_loads_in_plain_transformers_pipeline_with_label_names(sst2_toy, tiny_bert, tmp_path):
    from transformers import pipeline

    out = tmp_path / "run"
    train(tiny_recipe(sst2_toy, tiny_bert, out, num_train_epochs=1))
    classifier = pipeline("text-classification", model=str(out))
    results = classifier(["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés"])
    assert {r["label"] for r in results} <= {"negative", "positive"}


def test_same_seed_gives_same_metrics(sst2_toy, tiny_bert, tmp_path):
    first = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "a", num_train_epochs=1)).metrics
    second = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "b", num_train_epochs=1)).metrics
    assert first["eval"]["loss"] == second["eval"]["loss"]
    assert first["train"]["loss"] == second["train"]["loss"]
    third = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "c", num_train_epochs=1), seed=8).metrics
    assert third["train"]["loss"] != first["train"]["loss"]


def test_early_stopping_restores_the_best_checkpoint(sst2_toy, tiny_bert, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(sst2_toy, tiny_bert, out, num_train_epochs=30, learning_rate=3e-3,
                         eval_strategy="steps", eval_steps=5, metric_for_best_model="loss")
    recipe["early_stopping"] = {"patience": 2, "metric": "loss"}
    result = train(recipe)
    evals = [e for e in result.metrics["history"] if "eval_loss" in e]
    assert result.metrics["train"]["global_step"] < 30 * 10  # stopped early
    best = min(e["eval_loss"] for e in evals)
    assert result.metrics["eval"]["loss"] == pytest.approx(best, abs=1e-6)
    # evals[-1] is the final evaluation after training; evals[-2] the last one during training
    assert evals[-2]["eval_loss"] > best  # training ended on worse weights, yet the best ones were restored


def test_class_weights_balanced_change_training(sst2_toy, tiny_bert, tmp_path):
    plain = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "a", num_train_epochs=1)).metrics
    weighted = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "b", num_train_epochs=1), class_weights="balanced").metrics
    assert weighted["train"]["loss"] != plain["train"]["loss"]


def test_class_weights_count_must_match_labels(sst2_toy, tiny_bert, tmp_path):
    with pytest.raises(NLPTransferError, match="class_weights has 3 numbers but there are 2 labels"):
        train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "a"), class_weights=[1, 2, 3])


def test_refuses_to_overwrite_an_earlier_run(sst2_toy, tiny_bert, tmp_path):
    out = tmp_path / "run"
    train(tiny_recipe(sst2_toy, tiny_bert, out, num_train_epochs=1))
    with pytest.raises(NLPTransferError, match="already holds a run; pass resume=true"):
        train(tiny_recipe(sst2_toy, tiny_bert, out, num_train_epochs=1))
    train(tiny_recipe(sst2_toy, tiny_bert, out, num_train_epochs=1), overwrite=True)


def _write_rows(path, header, rows):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def test_multi_label_training_reports_micro_f1_and_subset_accuracy(tiny_bert, tmp_path):
    card = topic_card(tmp_path)
    result = train(tiny_recipe(card, tiny_bert, tmp_path / "run", num_train_epochs=8, learning_rate=3e-3))
    assert result.metrics["problem_type"] == "multi_label"
    assert result.metrics["eval"]["f1_micro"] > 0.8
    assert 0.0 <= result.metrics["eval"]["subset_accuracy"] <= 1.0
    prediction = load_model(tmp_path / "run").predict("vote election minister")
    assert "politics" in prediction["label"]


def test_regression_training_reports_correlations(tiny_bert, tmp_path):
    texts = ["good " * k + "film" for k in range(1, 9)] * 12
    rows = [f"{t},{t.count('good') / 8:.3f}" for t in texts]
    _write_rows(tmp_path / "train.csv", "text,score", rows)
    card = write_card(tmp_path, "scores", splits={"train": "train.csv", "validation": "train.csv"}, label="score",
                      problem_type="regression")
    result = train(tiny_recipe(card, tiny_bert, tmp_path / "run", num_train_epochs=6, learning_rate=3e-3))
    assert result.metrics["main_metric"] == "pearson"
    assert result.metrics["eval"]["pearson"] > 0.5
    assert result.metrics["eval"]["mse"] >= 0.0


def test_sentence_pairs_train_with_the_xlmr_style_model(tiny_xlmr, tmp_path):
    pairs = [("the cat sat on the mat", "a cat is sitting", "entailment"),
             ("the cat sat on the mat", "dogs fly over the sea", "contradiction")] * 40
    _write_rows(tmp_path / "pairs.tsv", "premise\thypothesis\tlabel", [f"{a}\t{b}\t{c}" for a, b, c in pairs])
    card = write_card(tmp_path, "pairs", splits={"train": "pairs.tsv", "validation": "pairs.tsv"},
                      text=["premise", "hypothesis"], label="label")
    result = train(tiny_recipe(card, tiny_xlmr, tmp_path / "run", num_train_epochs=4, learning_rate=3e-3))
    assert result.metrics["eval"]["accuracy"] == 1.0
    model = load_model(tmp_path / "run")
    assert model.predict([("the cat sat on the mat", "dogs fly over the sea")])[0]["label"] == "contradiction"


def test_train_rows_takes_the_same_seeded_subset(sst2_toy, tiny_bert, tmp_path):
    first = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "a", max_steps=2), train_rows=50).metrics
    assert first["rows"] == {"train": 50, "validation": 64}
    again = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "b", max_steps=2), train_rows=50).metrics
    assert first["train"]["loss"] == again["train"]["loss"]
    other = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "c", max_steps=2), train_rows=50, seed=3).metrics
    assert other["train"]["loss"] != first["train"]["loss"]
    with pytest.raises(NLPTransferError, match="train_rows must be >= 1, got 0"):
        train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "d"), train_rows=0)


def test_the_new_head_is_announced_once_in_our_words_not_as_a_load_problem(sst2_toy, tiny_bert, tmp_path, capfd):
    """transformers' load report lists a fresh head as MISSING; users see one plain line instead."""
    train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=1))
    captured = capfd.readouterr()
    assert "LOAD REPORT" not in captured.out + captured.err and "MISSING" not in captured.out + captured.err
    lines = [line for line in captured.out.splitlines() if "starts from random weights" in line]
    assert lines == [f"nlp-transfer: BertForSequenceClassification: a new 2-label head (classifier.bias, "
                     f"classifier.weight) starts from random weights on {tiny_bert}'s encoder"]
