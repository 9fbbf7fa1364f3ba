"""Reading a labelled split in a given label order (`readers.read_labelled`): labels matched by name, the card's
order mapped onto a model's, multi-hot in the model's order, token tags through a label_map, and the errors.

Real files written into tmp_path; nothing is mocked.
"""
from __future__ import annotations

import dataclasses

import pytest
from conftest import write_card

from nlp_transfer.data.cards import load_card
from nlp_transfer.data.labels import file_order, to_model_order
from nlp_transfer.data.readers import encode_split, load_data, read_labelled
from nlp_transfer.errors import NLPTransferError


def card_with(folder, file_name: str, content: str, **front):
    (folder / file_name).write_text(content, encoding="utf-8")
    front.setdefault("splits", {"test": file_name})
    return load_card(write_card(folder, **front))


def test_single_labels_come_out_in_the_model_order_by_name(tmp_path):
    # the card's order is [neg, neutral, pos]; numbers in the file are ids in that order, names match by name
    card = card_with(tmp_path, "test.csv", "text,label\nawful,0\nfine,neutral\ngreat,2\nbad,neg\n",
                     labels=["neg", "neutral", "pos"])
    split = read_labelled(card, "test", ["pos", "neg", "neutral"])
    assert [row["label"] for row in split.rows] == [1, 2, 0, 1]
    assert [row["text"] for row in split.rows] == ["awful", "fine", "great", "bad"]
    assert [row["line"] for row in split.rows] == [2, 3, 4, 5]
    assert split.label_names == ["pos", "neg", "neutral"]
    assert split.path == str(tmp_path / "test.csv")


def test_multi_label_rows_are_multi_hot_in_the_model_order(tmp_path):
    card = card_with(tmp_path, "test.csv", "text,label\na,sports|politics\nb,weather\nc,politics\n",
                     labels=["sports", "politics", "weather"], problem_type="multi_label")
    split = read_labelled(card, "test", ["weather", "sports", "politics"])
    assert [row["label"] for row in split.rows] == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_without_card_labels_the_model_names_match_by_name_only(tmp_path):
    # no labels: in the card, so a number is a name, never a position
    card = card_with(tmp_path, "test.csv", "text,label\na,pos\nb,neg\n")
    assert [row["label"] for row in read_labelled(card, "test", ["pos", "neg"]).rows] == [0, 1]
    numbers = card_with(tmp_path, "numbers.csv", "text,label\na,1\n", name="numbers", splits={"test": "numbers.csv"})
    with pytest.raises(NLPTransferError, match=r"numbers\.csv: line 2: label '1' is not one of the labels \[pos, neg\]"):
        read_labelled(numbers, "test", ["pos", "neg"])


def test_an_unknown_label_names_the_file_and_line(tmp_path):
    card = card_with(tmp_path, "test.csv", "text,label\na,pos\nb,meh\n")
    with pytest.raises(NLPTransferError) as error:
        read_labelled(card, "test", ["neg", "pos"])
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'test.csv'}: line 3: label 'meh' is not one of the labels [neg, pos]")


def test_a_card_label_the_model_lacks_is_refused_by_name(tmp_path):
    card = card_with(tmp_path, "test.csv", "text,label\na,pos\n", labels=["neg", "neutral", "pos"])
    with pytest.raises(NLPTransferError, match=r"label 'neutral' is not one the model knows \(pos, neg\)"):
        read_labelled(card, "test", ["pos", "neg"])


def test_regression_labels_are_floats(tmp_path):
    card = card_with(tmp_path, "test.tsv", "text\tscore\na\t0.5\nb\t3\n", label="score", problem_type="regression")
    assert [row["label"] for row in read_labelled(card, "test", ["score"]).rows] == [0.5, 3.0]


def test_load_data_and_read_labelled_agree(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,spam\nb,ham\nc,eggs\n", encoding="utf-8")
    (tmp_path / "dev.csv").write_text("text,label\nd,ham\ne,spam\n", encoding="utf-8")
    card = load_card(write_card(tmp_path, splits={"train": "train.csv", "validation": "dev.csv"}))
    data = load_data(card)
    assert data.label_names == ["eggs", "ham", "spam"]
    again = read_labelled(card, "validation", data.label_names)
    assert [row["label"] for row in again.rows] == data.splits["validation"]["label"] == [1, 2]


def test_labels_as_read_then_encoded(tmp_path):
    card = card_with(tmp_path, "test.csv", "text,label\na,y\nb,x\n")
    raw = read_labelled(card, "test")
    assert raw.label_names is None and [row["label"] for row in raw.rows] == ["y", "x"]
    encoded = encode_split(card, raw, ["x", "y"])
    assert [row["label"] for row in encoded.rows] == [1, 0] and encoded.label_names == ["x", "y"]
    with pytest.raises(NLPTransferError, match="already encoded"):
        encode_split(card, encoded, ["x", "y"])


def test_file_order_and_to_model_order(tmp_path):
    card = card_with(tmp_path, "test.csv", "text,label\na,b\n", labels=["b", "a"])
    assert file_order(card, ["a", "b"]) == (["b", "a"], True)
    assert file_order(dataclasses.replace(card, labels=None), ["a", "b"], declared=["x", "y"]) == (["x", "y"], True)
    assert file_order(dataclasses.replace(card, labels=None), ["a", "b"]) == (["a", "b"], False)
    rows = [{"label": 0}, {"label": 1}]
    to_model_order(rows, ["b", "a"], ["a", "b"], "single_label", "card")
    assert rows == [{"label": 1}, {"label": 0}]


CONLL = """EU B-ORG
rejects O
German B-MISC
call O

Peter B-PER
Blackburn I-PER
"""


def test_token_split_with_a_label_map_dropping_a_type(tmp_path):
    card = card_with(tmp_path, "test.conll", CONLL, task="token-classification", scheme="IOB2")
    names = ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    split = read_labelled(card, "test", names, label_map={"MISC": "O"})
    assert [s["tags"] for s in split.rows] == [[1, 0, 0, 0], [3, 4]]
    assert [s["tokens"] for s in split.rows] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert split.types_read == {"ORG", "MISC", "PER"}  # before the label_map
    # without the map, MISC is a tag outside the names: the error names the file and the token's line
    with pytest.raises(NLPTransferError, match=r"test\.conll: line 3: tag 'B-MISC' \(token 'German'\) is not one of"):
        read_labelled(card, "test", names)
    # labels as read: IOB2 strings after the map (as evaluation scores a tagger on shared types)
    strings = read_labelled(card, "test", label_map={"MISC": "O", "PER": "PERSON"})
    assert [s["tags"] for s in strings.rows] == [["B-ORG", "O", "O", "O"], ["B-PERSON", "I-PERSON"]]


def test_token_tags_in_another_scheme_come_out_as_iob2_ids(tmp_path):
    card = card_with(tmp_path, "test.conll", "Peter S-PER\nand O\nMary B-PER\nAnn E-PER\n",
                     task="token-classification", scheme="BIOES")
    split = read_labelled(card, "test", ["O", "B-PER", "I-PER"])
    assert split.rows[0]["tags"] == [1, 0, 1, 2]


def test_a_label_map_on_classification_data_is_refused(tmp_path):
    card = card_with(tmp_path, "test.csv", "text,label\na,x\n")
    with pytest.raises(NLPTransferError, match="label_map maps entity types"):
        read_labelled(card, "test", ["x", "y"], label_map={"MISC": "O"})


def test_a_loaded_card_is_not_changed(tmp_path):
    card = card_with(tmp_path, "test.csv", "text,label\na,x\n", labels=["x", "y"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.labels = ["y", "x"]
    read_labelled(dataclasses.replace(card, problem_type="multi_label"), "test", ["y", "x"])
    assert card.problem_type == "single_label" and card.labels == ["x", "y"]
