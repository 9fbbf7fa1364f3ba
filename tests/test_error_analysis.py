"""Error analysis: NER error kinds on hand-made spans, confident mistakes and confusions of a trained classifier."""
from __future__ import annotations

import json

import pytest

from conftest import cli_error, tiny_recipe
from nlp_transfer import train
from nlp_transfer.analysis.error_analysis import analyse, entity_errors, spans


def kinds(gold, predicted):
    return sorted(e["kind"] for e in entity_errors(gold.split(), predicted.split()))


def test_spans_of_iob2_tags():
    assert spans("B-PER I-PER O B-LOC I-ORG O".split()) == [("PER", 0, 2), ("LOC", 3, 4), ("ORG", 4, 5)]
    assert spans("I-PER I-PER".split()) == [("PER", 0, 2)]  # an I- that starts an entity
    assert spans([]) == []


@pytest.mark.parametrize("gold, predicted, expected", [
    ("B-PER I-PER O", "B-PER I-PER O", []),  # correct
    ("B-PER I-PER O", "B-ORG I-ORG O", ["wrong type"]),  # same words, other type
    ("B-PER I-PER O", "B-PER O O", ["wrong boundary"]),  # same type, overlapping words
    ("B-PER I-PER O", "O B-PER I-PER", ["wrong boundary"]),
    ("B-PER I-PER O", "B-ORG O O", ["wrong type and boundary"]),
    ("B-PER I-PER O", "O O O", ["missed"]),
    ("O O B-LOC", "B-MISC O B-LOC", ["spurious"]),
    ("B-PER O B-LOC", "O O O", ["missed", "missed"]),
    ("B-ORG I-ORG I-ORG", "B-ORG I-ORG B-ORG", ["wrong boundary", "wrong boundary"]),  # split in two fragments
    ("B-PER O B-LOC O", "B-PER O B-ORG B-MISC", ["spurious", "wrong type"]),
])
def test_entity_error_kinds_on_hand_made_spans(gold, predicted, expected):
    assert kinds(gold, predicted) == sorted(expected)


def test_a_classifier_s_mistakes_and_confusions(tiny_bert, sst2_toy, tmp_path, capsys):
    from nlp_transfer.cli import main

    train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=1, learning_rate=1e-4))
    assert main(["errors", str(tmp_path / "run")]) == 0
    assert "mistakes in 64 rows" in capsys.readouterr().out
    folder = tmp_path / "run" / "errors"
    mistakes = [json.loads(line) for line in (folder / "mistakes.jsonl").read_text().splitlines()]
    assert mistakes, "an under-trained tiny model makes mistakes on 64 rows"
    assert all(m["gold"] != m["predicted"] for m in mistakes)
    scores = [m["score"] for m in mistakes]
    assert scores == sorted(scores, reverse=True)  # most confident first
    assert all(m["score"] >= 0.5 - 1e-6 for m in mistakes)  # the predicted label's probability (argmax of two)
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions_validation.jsonl").read_text().splitlines()]
    wrong = [p for p in predictions if p["label"] != p["predicted"]]
    assert len(mistakes) == len(wrong)  # the same decisions as the run's own evaluation
    confusions = [json.loads(line) for line in (folder / "confusions.jsonl").read_text().splitlines()]
    assert sum(c["count"] for c in confusions) == len(mistakes)
    report = (folder / "errors.md").read_text()
    assert "Most confident mistakes" in report and mistakes[0]["text"][:40] in report


def test_ner_entity_errors_of_a_trained_tagger(tiny_bert, conll_toy, tmp_path):
    recipe = tiny_recipe(conll_toy, tiny_bert, tmp_path / "run", num_train_epochs=1)
    train({**recipe, "task": "token-classification", "test_split": "test"})
    result = analyse(tmp_path / "run", split="test", out=tmp_path / "errs")
    by_kind = result.summary["by_kind"]
    assert set(by_kind) == {"wrong type", "wrong boundary", "wrong type and boundary", "missed", "spurious"}
    lines = [json.loads(line) for line in (tmp_path / "errs" / "entity_errors.jsonl").read_text().splitlines()]
    assert sum(by_kind.values()) == len(lines) == result.summary["errors"]
    assert result.summary["gold_entities"] > 0
    missed = [e for e in lines if e["kind"] == "missed"]
    assert all(e["predicted"] is None and e["gold_text"] for e in missed)
    assert "Entity errors by kind" in (tmp_path / "errs" / "errors.md").read_text()


def test_errors_command_bad_input(tmp_path, capsys):
    assert "recipe.yaml" in cli_error(capsys, ["errors", tmp_path])
    assert "--top 0" in cli_error(capsys, ["errors", tmp_path, "--top", "0"])


def test_label_issues_rank_the_training_rows(tiny_bert, sst2_toy, tmp_path, feature_cache, capsys):
    from nlp_transfer.cli import main

    train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=1))
    assert main(["errors", str(tmp_path / "run"), "--label-issues", "--train-rows", "120", "--folds", "3"]) == 0
    assert "flagged as likely mislabelled" in capsys.readouterr().out
    ranked = [json.loads(line) for line in (tmp_path / "run" / "errors" / "label_issues.jsonl").read_text().splitlines()]
    assert len(ranked) == 120 and len({r["line"] for r in ranked}) == 120  # a seeded sample of training rows
    qualities = [r["quality"] for r in ranked]
    assert qualities == sorted(qualities)  # most suspect first
    assert {r["given"] for r in ranked} <= {"negative", "positive"}
    assert "Likely mislabelled training rows" in (tmp_path / "run" / "errors" / "errors.md").read_text()
