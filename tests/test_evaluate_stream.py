"""`evaluate` reads a classification split chunk by chunk (`readers.iter_labelled`): the same rows and labels as
reading it whole, the same scores, and a bad row late in the file is still one line naming the file and line."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_recipe, write_card

from nlp_transfer import NLPTransferError, load_model, train
from nlp_transfer.data.cards import load_cards
from nlp_transfer.data.readers import iter_labelled, read_labelled
from nlp_transfer.evaluation import evaluate


def test_chunks_hold_the_rows_read_labelled_reads(sst2_toy):
    card = load_cards(str(sst2_toy))
    whole = read_labelled(card, "validation", ["positive", "negative"]).rows  # another order than the card's
    chunks = list(iter_labelled(card, "validation", ["positive", "negative"], size=5))
    assert [len(c) for c in chunks][:-1] == [5] * (len(chunks) - 1) and sum(map(len, chunks)) == len(whole) == 64
    assert [row for chunk in chunks for row in chunk] == whole
    assert {row["label"] for row in whole} == {0, 1}


def test_evaluate_scores_every_row_as_predict_does(sst2_toy, tiny_bert, tmp_path):
    out = tmp_path / "run"
    train(tiny_recipe(sst2_toy, tiny_bert, out, max_steps=6))
    scores = evaluate(out, str(sst2_toy), "validation", batch_size=7)
    rows = read_labelled(load_cards(str(sst2_toy)), "validation", ["negative", "positive"]).rows
    predicted = [p["label"] for p in load_model(out).predict([r["text"] for r in rows])]
    expected = np.mean([p == ["negative", "positive"][r["label"]] for p, r in zip(predicted, rows)])
    assert scores["rows"] == 64 and scores["accuracy"] == pytest.approx(expected)
    assert sum(sum(line) for line in scores["confusion_matrix"]["matrix"]) == 64


def test_a_bad_label_late_in_the_split_names_its_line(tmp_path, tiny_bert):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = ["sentence\tlabel"] + [f"a film number {i}\t{i % 2}" for i in range(9000)] + ["the last one\tmaybe"]
    (folder / "dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    card = write_card(folder, "late", splits={"validation": "dev.tsv"}, format="tsv", text="sentence", label="label",
                      labels=["negative", "positive"])
    chunks = iter_labelled(load_cards(str(card)), "validation", ["negative", "positive"], size=4096)
    assert len(next(chunks)) == 4096 and len(next(chunks)) == 4096  # read and encoded before the bad line
    with pytest.raises(NLPTransferError) as error:
        next(chunks)
    assert "dev.tsv" in str(error.value) and "9002" in str(error.value) and "\n" not in str(error.value)
