"""Calibration: temperature scaling, ECE / Brier, thresholds tuned on validation only, calibrated predict."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import cli_error, tiny_recipe, topic_rows, write_card
from nlp_transfer import load_model, train
from nlp_transfer.calibration import (CALIBRATION_FILE, Calibration, best_threshold, brier_score,
                                      expected_calibration_error, fit, fit_temperature, negative_log_likelihood,
                                      parse_target, reliability)
from nlp_transfer.config import CalibrationConfig
from nlp_transfer.errors import NLPTransferError


def overconfident(rows: int = 600, seed: int = 0):
    """Logits of a 3-class model that is right ~70% of the time but ~99% sure: scaled-up honest logits."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, rows)
    honest = rng.normal(0, 1, (rows, 3))
    honest[np.arange(rows), gold] += 1.5
    return honest * 6.0, gold


def test_temperature_lowers_nll_and_ece_and_keeps_the_ranking():
    logits, gold = overconfident()
    t = fit_temperature(logits, gold, "single_label")
    assert t > 2.0  # the logits were inflated six-fold
    assert negative_log_likelihood(logits, gold, "single_label", t) < negative_log_likelihood(logits, gold, "single_label")
    calibration, report = fit(logits, gold, "single_label", CalibrationConfig(), "validation")
    assert report.after["ece"] < 0.5 * report.before["ece"]
    assert report.after["nll"] < report.before["nll"] and report.after["brier"] < report.before["brier"]
    assert report.crossfit["ece"] < report.before["ece"]  # fitted on one half, scored on the other
    raw = Calibration().probabilities(logits, "single_label")
    scaled = calibration.probabilities(logits, "single_label")
    assert (np.argsort(raw, axis=1) == np.argsort(scaled, axis=1)).all()
    assert (calibration.decide(scaled, "single_label") == raw.argmax(1)).all()


def test_ece_and_brier_on_hand_made_probabilities():
    # two bins: 0.9-confident rows right 9 of 10 times (calibrated), 0.6-confident rows always right (gap 0.4)
    probs = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 10)
    gold = np.array([0] * 9 + [1] + [0] * 10)
    assert expected_calibration_error(probs, gold, "single_label") == pytest.approx(0.5 * 0.0 + 0.5 * 0.4)
    table = reliability(probs, gold, "single_label")
    assert [b["rows"] for b in table] == [10, 10] and sum(b["rows"] for b in table) == len(gold)
    assert brier_score(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 1]), "single_label") == pytest.approx(0.25)
    multi = np.array([[0.8, 0.1], [0.3, 0.9]])
    assert brier_score(multi, np.array([[1, 0], [0, 1]]), "multi_label") == pytest.approx((0.04 + 0.01 + 0.09 + 0.01) / 4)


def test_best_threshold_meets_its_target_on_the_rows_it_saw():
    rng = np.random.default_rng(1)
    positive = rng.random(400) < 0.4
    scores = np.clip(positive * 0.3 + rng.random(400) * 0.7, 0, 1)
    threshold, at = best_threshold(scores, positive, ("precision", 0.9))
    chosen = scores >= threshold
    assert (positive[chosen].mean()) >= 0.9 and at["precision"] >= 0.9
    assert at["recall"] == pytest.approx(positive[chosen].sum() / positive.sum())
    f1_threshold, f1_at = best_threshold(scores, positive, ("f1", None))
    for other in np.linspace(0.05, 0.95, 19):  # no other cut beats the chosen F1
        picked = scores >= other
        tp = (picked & positive).sum()
        f1 = 2 * tp / (picked.sum() + positive.sum())
        assert f1 <= f1_at["f1"] + 1e-9
    assert best_threshold(scores, np.zeros(400, bool)) is None


def test_parse_target_and_one_line_errors(tmp_path, capsys):
    assert parse_target("f1") == ("f1", None)
    assert parse_target("precision>=0.9") == ("precision", 0.9)
    assert parse_target("recall >= .75") == ("recall", 0.75)
    with pytest.raises(NLPTransferError, match="precision>=0.9"):
        parse_target("precison>=0.9")
    card = write_card(tmp_path, splits={"train": "t.csv", "validation": "d.csv"})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {card}\ncalibration: {{binary_target: 'precision>0.9'}}\n")
    error = cli_error(capsys, ["train", recipe])
    assert str(recipe) in error and "binary_target" in error
    recipe.write_text(f"data: {card}\ntest_split: validation\n")
    assert "test_split and eval_split" in cli_error(capsys, ["train", recipe])
    recipe.write_text(f"data: {card}\ncalibration: {{temprature: false}}\n")
    assert "did you mean 'calibration.temperature'" in cli_error(capsys, ["train", recipe])


def test_calibration_file_round_trip_and_corrupt_file(tmp_path):
    assert Calibration.read(tmp_path) == Calibration()  # none: the identity
    Calibration(temperature=1.7, thresholds=[0.3, 0.6], split="validation", rows=40).save(tmp_path)
    assert Calibration.read(tmp_path).thresholds == [0.3, 0.6]
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(NLPTransferError, match="calibration.json"):
        Calibration.read(tmp_path)


def test_a_trained_classifier_is_calibrated_on_validation_and_predict_keeps_its_ranking(tiny_bert, sst2_toy, tmp_path):
    result = train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=3))
    report = result.metrics["calibration"]
    assert report["split"] == "validation" and report["rows"] == 64
    assert report["after"]["nll"] <= report["before"]["nll"] + 1e-12  # the temperature lowers the validation NLL
    saved = json.loads((tmp_path / "run" / CALIBRATION_FILE).read_text())
    assert saved["temperature"] == pytest.approx(report["temperature"])
    readme = (tmp_path / "run" / "README.md").read_text()
    assert "temperature" in readme and "pipeline" in readme
    model = load_model(tmp_path / "run")
    texts = ["a gorgeous , witty film", "dull and lifeless", "it is a movie", "the best film of the year", "bad"]
    calibrated = model.predict(texts)
    raw = model.predict(texts, calibrated=False)
    for c, r in zip(calibrated, raw):
        assert c["label"] == r["label"]  # same ranking of the labels
        assert max(c["scores"], key=c["scores"].get) == max(r["scores"], key=r["scores"].get)
    order = np.argsort([c["scores"]["positive"] for c in calibrated])
    assert (order == np.argsort([r["scores"]["positive"] for r in raw])).all()  # and of the texts
    if abs(report["temperature"] - 1.0) > 1e-3:
        assert calibrated[0]["scores"] != raw[0]["scores"]


def test_evaluate_measures_ece_with_the_bins_the_run_was_calibrated_with(sst2_toy, tmp_path, monkeypatch):
    from pathlib import Path

    from nlp_transfer import evaluate
    from nlp_transfer.calibration import expected_calibration_error, probabilities

    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    glove = Path(__file__).resolve().parent.parent / "samples" / "glove" / "glove.6B.50d.sst2-sample.txt.gz"
    # averaged GloVe + logistic regression: a real classifier whose confidences spread over many bins
    train({"task": "sequence-classification", "data": str(sst2_toy), "output_dir": str(tmp_path / "run"),
           "static": {"vectors": str(glove), "baseline": "average"}, "calibration": {"bins": 4}})
    assert json.loads((tmp_path / "run" / CALIBRATION_FILE).read_text())["bins"] == 4
    model = load_model(tmp_path / "run")
    scores = evaluate(tmp_path / "run", sst2_toy, "validation")
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions_validation.jsonl").read_text().splitlines()]
    raw = probabilities(model.logits([r["text"] for r in rows]), "single_label")
    gold = np.array([model.label_names.index(r["label"]) for r in rows])
    four = expected_calibration_error(raw, gold, "single_label", 4)
    assert four != pytest.approx(expected_calibration_error(raw, gold, "single_label", 15))  # the bins matter here
    assert scores["calibration"]["raw"]["ece"] == pytest.approx(four)


def test_multi_label_thresholds_come_from_validation_never_from_test(tiny_bert, tmp_path):
    """Two runs differing only in their test split's labels save the same thresholds; the test split is scored with
    them (its scores differ), and they are the thresholds best_threshold finds on the validation rows."""
    rows = topic_rows(160, 0, noise=True)
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev.jsonl").write_text("\n".join(topic_rows(48, 1, noise=True)) + "\n")
    test_rows = topic_rows(48, 2, noise=True)
    (tmp_path / "test_a.jsonl").write_text("\n".join(test_rows) + "\n")
    flipped = [json.dumps({**json.loads(r), "tags": ["sports"]}) for r in test_rows]
    (tmp_path / "test_b.jsonl").write_text("\n".join(flipped) + "\n")
    saved = []
    for name in ("a", "b"):
        card = write_card(tmp_path, f"topics-{name}", splits={"train": "train.jsonl", "validation": "dev.jsonl",
                                                              "test": f"test_{name}.jsonl"},
                          label="tags", problem_type="multi_label")
        recipe = tiny_recipe(card, tiny_bert, tmp_path / f"run-{name}", num_train_epochs=4, learning_rate=3e-3)
        result = train({**recipe, "test_split": "test"})
        saved.append((json.loads((tmp_path / f"run-{name}" / CALIBRATION_FILE).read_text()), result.metrics))
    (cal_a, metrics_a), (cal_b, metrics_b) = saved
    assert cal_a["split"] == "validation" and len(cal_a["thresholds"]) == 3
    assert cal_a["thresholds"] == cal_b["thresholds"] and cal_a["temperature"] == cal_b["temperature"]
    assert metrics_a["test"]["f1_micro"] != metrics_b["test"]["f1_micro"]
    # recompute from the validation rows alone
    model = load_model(tmp_path / "run-a")
    dev = [json.loads(line) for line in (tmp_path / "dev.jsonl").read_text().splitlines()]
    probs = model.probabilities([d["text"] for d in dev])
    for k, name in enumerate(model.label_names):
        found = best_threshold(probs[:, k], np.array([name in d["tags"] for d in dev]))
        assert cal_a["thresholds"][k] == pytest.approx(found[0] if found else 0.5, abs=1e-6)
    # predict uses them: a label is chosen exactly when its calibrated probability reaches its threshold
    for text, prediction in zip([d["text"] for d in dev], model.predict([d["text"] for d in dev])):
        expected = [n for k, n in enumerate(model.label_names) if prediction["scores"][n] >= cal_a["thresholds"][k] - 1e-6]
        assert set(prediction["label"]) <= set(expected)


def test_binary_target_threshold_is_tuned_on_validation_and_used(tiny_bert, sst2_toy, tmp_path):
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=3)
    result = train({**recipe, "calibration": {"binary_target": "recall>=0.9"}})
    binary = result.metrics["calibration"]["thresholds"]["binary"]
    saved = Calibration.read(tmp_path / "run")
    if "threshold" in binary:
        assert binary["recall"] >= 0.9 and saved.positive_threshold == pytest.approx(binary["threshold"])
        model = load_model(tmp_path / "run")
        for p in model.predict(["a film", "a gorgeous film", "dull", "it moved me"]):
            assert p["label"] == ("positive" if p["scores"]["positive"] >= saved.positive_threshold else "negative")
    else:
        assert saved.positive_threshold is None and "note" in binary


def test_calibrate_command_fits_an_existing_run(tiny_bert, sst2_toy, tmp_path, capsys):
    from nlp_transfer.cli import main

    train({**tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run"), "calibration": {"temperature": False,
                                                                                   "thresholds": False}})
    assert not (tmp_path / CALIBRATION_FILE).exists() and not (tmp_path / "run" / CALIBRATION_FILE).exists()
    assert main(["calibrate", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "temperature" in out and "ECE" in out
    assert Calibration.read(tmp_path / "run").split == "validation"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["calibration"]["split"] == "validation"
