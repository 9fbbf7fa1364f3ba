"""Feature extraction + probe: frozen features, C chosen on validation, same outputs as fine-tuning."""
from __future__ import annotations

import json

import pytest
from conftest import tiny_recipe, write_card

from nlp_transfer import evaluate, load_model, train


pytestmark = pytest.mark.usefixtures("feature_cache")  # conftest: the features cache in tmp_path


def probe_recipe(card, model, out, **extra):
    recipe = tiny_recipe(card, model, out)
    recipe.pop("training")  # the probe has no TrainingArguments (setting them is an error)
    recipe.update(strategy={"name": "feature-extraction", "normalize": True}, **extra)
    return recipe


def test_probe_writes_the_same_reports_as_fine_tuning_and_reloads(sst2_toy, tiny_bert, tmp_path, feature_cache):
    out = tmp_path / "probe"
    metrics = train(probe_recipe(sst2_toy, tiny_bert, out)).metrics
    assert metrics["strategy"] == "feature-extraction"
    assert metrics["train"]["C"] in [s["C"] for s in metrics["train"]["search"]]
    best = max(s["accuracy"] for s in metrics["train"]["search"])
    assert metrics["eval"]["accuracy"] == best  # the chosen C is the best one on validation
    assert metrics["params"]["trainable"] == 2 * 32 + 2  # a linear layer on 32-dim features, 2 labels
    for name in ("probe.safetensors", "metrics.json", "nlp_transfer.json", "README.md", "predictions_validation.jsonl"):
        assert (out / name).is_file()
    rows = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    model = load_model(out)
    again = model.predict([r["text"] for r in rows])
    assert [a["label"] for a in again] == [r["predicted"] for r in rows]
    assert evaluate(out, sst2_toy)["accuracy"] == pytest.approx(metrics["eval"]["accuracy"])
    assert len(list(feature_cache.glob("*.npy"))) == 2  # train and validation features cached


def test_cached_features_are_reused(sst2_toy, tiny_bert, tmp_path, feature_cache):
    first = train(probe_recipe(sst2_toy, tiny_bert, tmp_path / "a")).metrics
    cached = {p.name: p.stat().st_mtime_ns for p in feature_cache.glob("*.npy")}
    second = train(probe_recipe(sst2_toy, tiny_bert, tmp_path / "b")).metrics
    assert {p.name: p.stat().st_mtime_ns for p in feature_cache.glob("*.npy")} == cached  # read, not rewritten
    assert second["eval"] == first["eval"]


def test_regression_probe_fits_ridge(tiny_bert, tmp_path):
    texts = ["good " * k + "film" for k in range(1, 9)] * 10
    (tmp_path / "train.csv").write_text("text,score\n" + "\n".join(f"{t},{t.count('good') / 8:.3f}" for t in texts) + "\n")
    card = write_card(tmp_path, "scores", splits={"train": "train.csv", "validation": "train.csv"}, label="score",
                      problem_type="regression")
    metrics = train(probe_recipe(card, tiny_bert, tmp_path / "run")).metrics
    assert metrics["train"]["probe"] == "ridge"
    assert metrics["eval"]["pearson"] > 0.9
    value = load_model(tmp_path / "run").predict("good good good film")["label"]
    assert isinstance(value, float)


def test_probe_needs_a_validation_split(sst2_toy, tiny_bert, tmp_path):
    from nlp_transfer import NLPTransferError

    recipe = probe_recipe(sst2_toy, tiny_bert, tmp_path / "run", eval_split="dev")
    with pytest.raises(NLPTransferError, match="chooses its regularisation on 'dev'"):
        train(recipe)


def test_features_of_a_retrained_model_folder_are_not_reused(sst2_toy, tiny_bert, tmp_path, feature_cache):
    """The cache key holds the weights' identity (file sizes and times), not only the folder's name."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "encoder"
    shutil.copytree(tiny_bert, model)
    train(probe_recipe(sst2_toy, model, tmp_path / "a"))
    assert len(list(feature_cache.glob("*.npy"))) == 2
    weights = load_file(str(model / "model.safetensors"))
    save_file({k: v + 0.05 * torch.randn_like(v) for k, v in weights.items()}, str(model / "model.safetensors"))
    train(probe_recipe(sst2_toy, model, tmp_path / "b"))
    assert len(list(feature_cache.glob("*.npy"))) == 4  # two new feature files for the changed weights


def test_the_probe_scores_the_test_split_and_weighs_classes(tmp_path, tiny_bert, feature_cache):
    """test_split is scored once by the chosen probe; class_weights: balanced changes the fit on skewed data."""
    from conftest import SAMPLE_TRAIN, sample_rows

    rows = sample_rows(SAMPLE_TRAIN, 400)
    skewed = [r for r in rows if r[1] == "1"][:150] + [r for r in rows if r[1] == "0"][:30]
    for name, part in (("train.tsv", skewed), ("dev.tsv", rows[-80:-40]), ("test.tsv", rows[-40:])):
        (tmp_path / name).write_text("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in part))
    card = write_card(tmp_path, "skewed", splits={"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"},
                      text="sentence", labels=["negative", "positive"])
    plain = train(probe_recipe(card, tiny_bert, tmp_path / "plain", test_split="test")).metrics
    assert plain["test_split"] == "test" and 0 <= plain["test"]["accuracy"] <= 1
    assert set(plain["test"]) >= {"accuracy", "f1_macro", "confusion_matrix"}
    balanced = train(probe_recipe(card, tiny_bert, tmp_path / "balanced", test_split="test",
                                  class_weights="balanced")).metrics
    predicted_negative = [m["test"]["confusion_matrix"]["matrix"][0][0] + m["test"]["confusion_matrix"]["matrix"][1][0]
                          for m in (plain, balanced)]
    assert predicted_negative[1] > predicted_negative[0]  # the rare class is predicted more often once weighted
