"""Prediction from a trained output directory: Python API, sliding windows, CLI, evaluate."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SAMPLE_DEV, SAMPLE_TRAIN, sample_rows, tiny_recipe, write_card

from nlp_transfer import evaluate, load_model, train
from nlp_transfer.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("predict")
    for name, source, count in (("train.tsv", SAMPLE_TRAIN, 200), ("dev.tsv", SAMPLE_DEV, 48)):
        rows = sample_rows(source, count, seed=3)
        (folder / name).write_text("sentence\tlabel\n" + "\n".join(f"{s}\t{l}" for s, l in rows) + "\n")
    card = write_card(folder, "sst2-mini", splits={"train": "train.tsv", "validation": "dev.tsv"}, format="tsv",
                      text="sentence", labels=["negative", "positive"])
    out = folder / "run"
    result = train(tiny_recipe(card, tiny_bert, out, num_train_epochs=3, learning_rate=2e-3), max_length=32)
    return out, card, result.metrics


TEXTS = ["a gorgeous , witty , seductive movie .", "bad", "the plot is nothing but boilerplate clichés from start to end",
         "it 's a charming and often affecting journey ."]


def test_predict_returns_label_names_scores_in_input_order(trained):
    out, _, _ = trained
    model = load_model(out)
    batch = model.predict(TEXTS, batch_size=2)
    one_by_one = [model.predict(text) for text in TEXTS]
    assert [p["label"] for p in batch] == [p["label"] for p in one_by_one]
    for got, alone in zip(batch, one_by_one):
        assert got["label"] in ("negative", "positive")
        assert set(got["scores"]) == {"negative", "positive"}
        assert sum(got["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert got["score"] == pytest.approx(max(got["scores"].values()), abs=1e-5)
        assert got["score"] == pytest.approx(alone["score"], abs=1e-5)  # padding does not change results


def test_sliding_windows_average_the_logits_of_each_window(trained):
    out, _, _ = trained
    model = load_model(out)  # max_length 32 from the recipe
    long_text = " ".join(["the film starts slowly and the first hour drags ."] * 4 +
                         ["but the ending is wonderful , moving and beautifully acted ."] * 4)
    windowed = model.logits([long_text, "bad"], window=True, stride=8)
    truncated = model.logits([long_text, "bad"])
    # the windows by hand: 30 content tokens each ([CLS] ... [SEP] around them), the next one starting 8 back
    content = model.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    starts = list(range(0, len(content) - 8, 30 - 8))
    windows = [[model.tokenizer.cls_token_id, *content[s:s + 30], model.tokenizer.sep_token_id] for s in starts]
    assert len(windows) > 2 and windows[-1][-2] == content[-1]
    with torch.inference_mode():
        device = next(model.model.parameters()).device  # CUDA on a GPU machine: load_model's device="auto"
        per_window = [model.model(input_ids=torch.tensor([ids], device=device)).logits[0].cpu().numpy()
                      for ids in windows]
    np.testing.assert_allclose(windowed[0], np.mean(per_window, axis=0), atol=1e-5)
    np.testing.assert_allclose(truncated[0], per_window[0], atol=1e-5)  # without windows only the start counts
    np.testing.assert_allclose(windowed[1], truncated[1], atol=1e-5)  # short texts are one window


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_cli_predict_writes_one_json_line_per_input_text(trained, tmp_path, suffix, capsys):
    out, _, _ = trained
    source = tmp_path / f"texts{suffix}"
    if suffix == ".txt":
        source.write_text("\n".join(TEXTS) + "\n")
    elif suffix == ".csv":
        source.write_text("id,text\n" + "\n".join(f'{i},"{t}"' for i, t in enumerate(TEXTS)) + "\n")
    else:
        source.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS) + "\n")
    target = tmp_path / "preds.jsonl"
    assert main(["predict", str(out), "--input", str(source), "--output", str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    assert all(r["label"] in ("negative", "positive") for r in rows)
    assert f"wrote {len(TEXTS)} predictions" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_evaluate_reproduces_the_training_runs_metrics(trained, capsys):
    out, card, metrics = trained
    result = evaluate(out, card, "validation")
    assert result["rows"] == 48
    assert result["accuracy"] == pytest.approx(metrics["eval"]["accuracy"], abs=1e-9)
    assert result["confusion_matrix"] == metrics["eval"]["confusion_matrix"]
    assert main(["evaluate", str(out), "--data", str(card)]) == 0
    assert "accuracy=" in capsys.readouterr().out


def test_evaluate_maps_a_cards_label_order_onto_the_models_by_name(trained, tmp_path):
    out, card, metrics = trained
    names = {"0": "negative", "1": "positive"}
    lines = (card.parent / "dev.tsv").read_text().splitlines()
    rows = [line.rsplit("\t", 1) for line in lines[1:]]
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(f"{s}\t{names[l]}" for s, l in rows) + "\n")
    reversed_card = write_card(tmp_path, "reversed", splits={"validation": "dev.tsv"}, format="tsv", text="sentence",
                               labels=["positive", "negative"])
    result = evaluate(out, reversed_card, "validation")
    assert result["accuracy"] == pytest.approx(metrics["eval"]["accuracy"], abs=1e-9)
