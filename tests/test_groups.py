"""Per-group metrics: card groups (columns, length buckets), languages as one group column, worst group and gap."""
from __future__ import annotations


import numpy as np
import pytest

from conftest import cli_error, tiny_recipe, write_card
from nlp_transfer import evaluate, train
from nlp_transfer.data.cards import Group, load_card
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.tasks import classification as cls_task
from nlp_transfer.tasks.base import per_group, row_groups
from nlp_transfer.tasks.ner import entity_metrics, group_entity_metrics


def test_length_buckets():
    group = Group("length", words=(10, 25))
    assert [group.bucket(n) for n in (0, 9, 10, 24, 25, 80)] == ["0-9", "0-9", "10-24", "10-24", "25+", "25+"]


def test_group_metrics_add_up_to_the_overall_counts():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 300)
    predicted = np.where(rng.random(300) < 0.7, gold, rng.integers(0, 3, 300))
    groups = [{"source": rng.choice(["news", "blog", "forum"]), "length": rng.choice(["0-9", "10+"])}
              for _ in range(300)]
    groups[5] = {"length": "0-9"}  # a row without a source: left out of that table only
    names = ["a", "b", "c"]
    result = cls_task.group_metrics("single_label", predicted, gold, names, groups)
    overall = cls_task.metrics_for("single_label", predicted, gold, names)
    length = result["per_group"]["length"]["groups"]
    assert sum(g["rows"] for g in length.values()) == 300
    correct = sum(round(g["accuracy"] * g["rows"]) for g in length.values())
    assert correct == round(overall["accuracy"] * 300)  # per-group correct counts add up to the overall ones
    source = result["per_group"]["source"]
    assert sum(g["rows"] for g in source["groups"].values()) == 299
    accuracies = {name: g["accuracy"] for name, g in source["groups"].items()}
    assert source["worst"] == min(accuracies, key=accuracies.get) and source["best"] == max(accuracies, key=accuracies.get)
    assert source["gap"] == pytest.approx(max(accuracies.values()) - min(accuracies.values()))
    assert "per_language" not in result


def test_languages_are_one_group_column_and_keep_per_language():
    gold = [["B-PER", "O"], ["O", "B-LOC"], ["B-ORG", "O"], ["O", "O"]]
    predicted = [["B-PER", "O"], ["O", "O"], ["B-ORG", "O"], ["B-LOC", "O"]]
    groups = row_groups([{"language": "de"}, {"language": "de"}, {"language": "nl"}, {"language": "nl"}])
    result = group_entity_metrics(gold, predicted, groups)
    table = result["per_group"]["language"]
    assert result["per_language"] == table["groups"]
    assert table["groups"]["de"]["f1"] == pytest.approx(entity_metrics(gold[:2], predicted[:2])["f1"])
    assert table["metric"] == "f1" and table["worst"] in ("de", "nl")
    assert row_groups([{"text": "x"}]) is None


def test_lower_is_better_metric_picks_the_highest_as_worst():
    result = per_group([{"g": "a"}, {"g": "b"}], lambda rows: {"mse": float(rows[0] + 1)}, "mse")
    assert result["g"]["worst"] == "b" and result["g"]["best"] == "a"


def _write_grouped(tmp_path):
    rows = []
    rng = np.random.default_rng(3)
    for i in range(160):
        source = ["news", "blog"][i % 2]
        positive = rng.random() < 0.5
        words = ("great fine lovely" if positive else "awful dull bad") + " film" * int(rng.integers(1, 30))
        rows.append(f"{words},{int(positive)},{source}")
    (tmp_path / "train.csv").write_text("text,label,source\n" + "\n".join(rows) + "\n")
    (tmp_path / "dev.csv").write_text("text,label,source\n" + "\n".join(rows[:60]) + "\n")
    return write_card(tmp_path, "grouped", splits={"train": "train.csv", "validation": "dev.csv"},
                      groups=["source", {"name": "length", "words": [10, 20]}])


def test_a_run_reports_groups_in_metrics_model_card_and_evaluate(tiny_bert, tmp_path):
    card = _write_grouped(tmp_path)
    result = train(tiny_recipe(card, tiny_bert, tmp_path / "run", num_train_epochs=2))
    by_group = result.metrics["eval"]["per_group"]
    assert set(by_group) == {"source", "length"}
    assert set(by_group["source"]["groups"]) == {"news", "blog"}
    assert sum(g["rows"] for g in by_group["length"]["groups"].values()) == 60
    assert list(by_group["length"]["groups"]) == sorted(by_group["length"]["groups"], key=lambda v: int(v.split("-")[0].rstrip("+")))
    readme = (tmp_path / "run" / "README.md").read_text()
    assert "worst group" in readme and "| source |" in readme
    scored = evaluate(tmp_path / "run", card, "validation")
    assert scored["per_group"]["source"]["groups"].keys() == by_group["source"]["groups"].keys()
    for value, row in by_group["source"]["groups"].items():
        assert scored["per_group"]["source"]["groups"][value]["rows"] == row["rows"]
    # compare shows the reliability diagram, the per-group bars, the worst groups and links the error analysis
    from nlp_transfer import compare
    from nlp_transfer.analysis.error_analysis import analyse

    analyse(tmp_path / "run")
    folder = compare([tmp_path / "run"], tmp_path / "report")
    markdown = (folder / "report.md").read_text()
    for expected in ("reliability.png", "groups.png", "## Worst groups", "## Calibration", "../run/errors/errors.md"):
        assert expected in markdown
    assert (folder / "reliability.png").stat().st_size > 1000 and (folder / "groups.png").stat().st_size > 1000
    page = (folder / "report.html").read_text()
    assert "<h2>Worst groups (evaluation split)</h2>" in page and 'href="../run/errors/errors.md"' in page


def test_bad_groups_are_one_line_errors(tmp_path, capsys):
    card = _write_grouped(tmp_path)
    text = card.read_text().replace("- source", "- sourse")
    card.write_text(text)
    from nlp_transfer.data.readers import read_labelled

    with pytest.raises(NLPTransferError, match="sourse"):
        read_labelled(load_card(card), "validation")
    bad = write_card(tmp_path, "bad", splits={"train": "train.csv"}, groups=[{"name": "length", "words": [20, 10]}])
    with pytest.raises(NLPTransferError, match="increasing"):
        load_card(bad)
    ner = write_card(tmp_path, "ner", task="token-classification", splits={"train": "x.conll"}, groups=["source"])
    with pytest.raises(NLPTransferError, match="length buckets only"):
        load_card(ner)
    assert "groups" in cli_error(capsys, ["cards", str(ner)])
    (tmp_path / "gap.csv").write_text("text,label,source\nfine film,1,\n")
    gap = write_card(tmp_path, "gap", splits={"train": "gap.csv"}, groups=["source"])
    with pytest.raises(NLPTransferError, match=r"gap.csv: line 2: empty group value"):
        read_labelled(load_card(gap), "train")
