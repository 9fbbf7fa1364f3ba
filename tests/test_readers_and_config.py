"""Data cards -> splits (CSV, TSV, JSONL, saved `datasets`), label maps, and recipes.

Everything reads real files written into tmp_path; nothing is mocked.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import REPO, write_card

from nlp_transfer.data.readers import read_texts
from nlp_transfer.config import Recipe, load_recipe, resolve_path
from nlp_transfer.data.cards import load_card
from nlp_transfer.data.readers import load_data
from nlp_transfer.errors import NLPTransferError


def make_card(folder, files: dict[str, str | bytes], name: str = "toy", **front):
    """Write the data files (name -> content) and a card whose splits default to one file per split."""
    for file_name, content in files.items():
        target = folder / file_name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    front.setdefault("splits", {"train": next(iter(files))})
    return write_card(folder, name, **front)


def jsonl(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# ---------------------------------------------------------------- formats

def test_tsv_card_gives_text_label_line_columns_with_stripped_text(sst2_toy):
    data = load_data(sst2_toy)
    train = data.splits["train"]
    assert set(train.column_names) == {"text", "label", "line"}
    assert len(train) == 160 and len(data.splits["validation"]) == 64
    assert data.label_names == ["negative", "positive"]
    assert all(t == t.strip() and t for t in train["text"])  # SST-2 rows end with " \t"
    assert set(train["label"]) == {0, 1}
    assert sorted(train["line"]) == list(range(2, 162))  # line 1 is the header


def test_tsv_trailing_space_before_tab_is_stripped(tmp_path):
    card = make_card(tmp_path, {"train.tsv": "sentence\tlabel\nthe horrors \t0\na gem . \t1\n"},
                     format="tsv", text="sentence")
    train = load_data(card).splits["train"]
    assert train["text"] == ["the horrors", "a gem ."]
    assert train["line"] == [2, 3]


def test_tsv_quotes_are_plain_characters(tmp_path):
    card = make_card(tmp_path, {"train.tsv": 'text\tlabel\n"quoted" word \t1\nit\'s a "half quote \t0\n'})
    assert load_data(card).splits["train"]["text"] == ['"quoted" word', 'it\'s a "half quote']


def test_csv_quoted_field_with_commas_and_doubled_quotes(tmp_path):
    content = 'text,label\n"well, well, well",1\n"he said ""no"", twice",0\nplain,1\n'
    card = make_card(tmp_path, {"train.csv": content})
    train = load_data(card).splits["train"]
    assert train["text"] == ["well, well, well", 'he said "no", twice', "plain"]
    assert train["label"] == [1, 0, 1]
    assert train["line"] == [2, 3, 4]


def test_format_is_inferred_from_the_file_suffix(tmp_path):
    card = make_card(tmp_path, {"train.csv": "text,label\na,x\nb,y\n"})  # no format: key
    assert load_card(card).format is None
    assert load_data(card).splits["train"]["text"] == ["a", "b"]


def test_jsonl_card_with_line_numbers_skipping_blank_lines(tmp_path):
    content = jsonl({"text": " first ", "label": "pos"}) + "\n" + jsonl({"text": "second", "label": "neg"})
    card = make_card(tmp_path, {"train.jsonl": content})
    train = load_data(card).splits["train"]
    assert set(train.column_names) == {"text", "label", "line"}
    assert train["text"] == ["first", "second"]
    assert train["line"] == [1, 3]
    assert train["label"] == [1, 0]  # inferred names: ['neg', 'pos']


def test_sentence_pairs_give_a_text_pair_column(tmp_path):
    content = "premise,hypothesis,label\nA man sleeps.,Nobody sleeps.,contradiction\nIt rains.,It is wet.,entailment\n"
    card = make_card(tmp_path, {"train.csv": content}, text=["premise", "hypothesis"])
    train = load_data(card).splits["train"]
    assert set(train.column_names) == {"text", "text_pair", "label", "line"}
    assert train["text"] == ["A man sleeps.", "It rains."]
    assert train["text_pair"] == ["Nobody sleeps.", "It is wet."]


def test_sentence_pairs_from_jsonl(tmp_path):
    card = make_card(tmp_path, {"train.jsonl": jsonl({"q": "why?", "a": "because", "label": 1},
                                                     {"q": "who?", "a": "me", "label": 0})}, text=["q", "a"])
    train = load_data(card).splits["train"]
    assert train["text_pair"] == ["because", "me"]


def test_split_paths_are_relative_to_the_card(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\na,0\nb,1\n", encoding="utf-8")
    cards = tmp_path / "cards"
    cards.mkdir()
    card = write_card(cards, "rel", splits={"train": "../data/train.csv"})
    monkeypatch.chdir(REPO)
    assert load_data(card).files["train"] == str(cards / "../data/train.csv")


# ---------------------------------------------------------------- labels

def test_label_names_and_ids_map_to_the_same_ids(tmp_path):
    content = "text,label\na,positive\nb,1\nc,negative\nd,0\n"
    card = make_card(tmp_path, {"train.csv": content}, labels=["negative", "positive"])
    data = load_data(card)
    assert data.label_names == ["negative", "positive"]
    assert data.splits["train"]["label"] == [1, 1, 0, 0]


def test_jsonl_integer_ids_map_onto_card_labels(tmp_path):
    card = make_card(tmp_path, {"train.jsonl": jsonl({"text": "a", "label": 2}, {"text": "b", "label": "sad"})},
                     labels=["happy", "neutral", "sad"])
    assert load_data(card).splits["train"]["label"] == [2, 2]


def test_inferred_numeric_labels_are_sorted_numerically(tmp_path):
    card = make_card(tmp_path, {"train.csv": "text,label\na,10\nb,2\nc,10\n"})
    data = load_data(card)
    assert data.label_names == ["2", "10"]
    assert data.splits["train"]["label"] == [1, 0, 1]


def test_inferred_string_labels_are_sorted(tmp_path):
    card = make_card(tmp_path, {"train.csv": "text,label\na,spam\nb,ham\nc,eggs\n"})
    data = load_data(card)
    assert data.label_names == ["eggs", "ham", "spam"]
    assert data.splits["train"]["label"] == [2, 1, 0]


def test_inferred_label_map_comes_from_the_train_split(tmp_path):
    files = {"train.csv": "text,label\na,b_label\nb,a_label\n", "dev.csv": "text,label\nc,b_label\n"}
    card = make_card(tmp_path, files, splits={"validation": "dev.csv", "train": "train.csv"})
    data = load_data(card)
    assert data.label_names == ["a_label", "b_label"]
    assert data.splits["validation"]["label"] == [1]


def test_label_unseen_in_train_is_rejected_in_validation(tmp_path):
    files = {"train.csv": "text,label\na,x\nb,y\n", "dev.csv": "text,label\nc,x\nd,z\n"}
    card = make_card(tmp_path, files, splits={"train": "train.csv", "validation": "dev.csv"})
    with pytest.raises(NLPTransferError, match=r"dev\.csv: line 3: label 'z' is not one of the labels \[x, y\]"):
        load_data(card)


def test_multi_label_csv_cells_give_multi_hot_floats(tmp_path):
    content = "text,label\nvote on the match,sports|politics\nthe final,sports\nthe budget, politics \n"
    card = make_card(tmp_path, {"train.csv": content}, problem_type="multi_label")
    data = load_data(card)
    assert data.problem_type == "multi_label"
    assert data.label_names == ["politics", "sports"]
    assert data.splits["train"]["label"] == [[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]


def test_multi_label_jsonl_lists_with_card_labels(tmp_path):
    content = jsonl({"text": "a", "label": ["sports", "politics"]}, {"text": "b", "label": []},
                    {"text": "c", "label": ["weather"]})
    card = make_card(tmp_path, {"train.jsonl": content}, problem_type="multi_label",
                     labels=["sports", "politics", "weather"], allow_empty_labels=True)
    labels = load_data(card).splits["train"]["label"]
    assert labels == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert all(isinstance(v, float) for row in labels for v in row)


def test_multi_label_custom_separator(tmp_path):
    card = make_card(tmp_path, {"train.tsv": "text\tlabel\na\tx;y\nb\ty\n"}, problem_type="multi_label",
                     label_separator=";")
    assert load_data(card).splits["train"]["label"] == [[1.0, 1.0], [0.0, 1.0]]


def test_regression_labels_are_floats(tmp_path):
    card = make_card(tmp_path, {"train.csv": "text,score\na,0.5\nb,3\nc,-1.25\n"}, problem_type="regression",
                     label="score")
    data = load_data(card)
    assert data.problem_type == "regression"
    assert data.label_names == ["score"]
    labels = data.splits["train"]["label"]
    assert labels == [0.5, 3.0, -1.25] and all(isinstance(v, float) for v in labels)


# ---------------------------------------------------------------- saved datasets

def _classlabel_splits():
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    train = datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features)
    dev = datasets.Dataset.from_dict({"sentence": ["meh"], "label": [0]}, features=features)
    return train, dev


def test_datasets_card_with_a_dataset_dict_dir_takes_classlabel_names(tmp_path):
    import datasets

    train, dev = _classlabel_splits()
    datasets.DatasetDict({"train": train, "validation": dev}).save_to_disk(str(tmp_path / "saved"))
    card = write_card(tmp_path, "saved", format="datasets", text="sentence",
                      splits={"train": "saved", "validation": "saved"})
    data = load_data(card)
    assert data.label_names == ["neg", "pos"]
    assert data.splits["train"]["text"] == ["good", "bad", "fine"]
    assert data.splits["train"]["label"] == [1, 0, 1]
    assert data.splits["train"]["line"] == [1, 2, 3]  # rows, counted from 1
    assert data.splits["validation"]["label"] == [0]


def test_datasets_card_with_one_dataset_dir_per_split(tmp_path):
    train, dev = _classlabel_splits()
    train.save_to_disk(str(tmp_path / "train_ds"))
    dev.save_to_disk(str(tmp_path / "dev_ds"))
    card = write_card(tmp_path, "per-split", format="datasets", text="sentence",
                      splits={"train": "train_ds", "validation": "dev_ds"})
    data = load_data(card)
    assert data.label_names == ["neg", "pos"]
    assert data.splits["validation"]["text"] == ["meh"]


# ---------------------------------------------------------------- predict input

def test_predict_input_tsv_keeps_quotes_like_the_card_reader(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text('text\tid\n"quoted" word\t1\nit\'s a "half quote\t2\n', encoding="utf-8")
    assert read_texts(str(path)) == ['"quoted" word', 'it\'s a "half quote']


def test_predict_input_csv_jsonl_and_txt(tmp_path):
    (tmp_path / "in.csv").write_text('id,body\n1,"a, b"\n2,c\n', encoding="utf-8")
    (tmp_path / "in.jsonl").write_text(jsonl({"text": "x"}, {"text": "y"}), encoding="utf-8")
    (tmp_path / "in.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    assert read_texts(str(tmp_path / "in.csv"), "body") == ["a, b", "c"]
    assert read_texts(str(tmp_path / "in.jsonl")) == ["x", "y"]
    assert read_texts(str(tmp_path / "in.txt")) == ["one", "two"]


# ---------------------------------------------------------------- recipes

def test_load_recipe_from_yaml():
    recipe = load_recipe(REPO / "recipes" / "sst2_demo.yaml")
    assert recipe.model == "minilm-l6"
    assert recipe.data == "data_cards/sst2_sample.md"
    assert recipe.max_length == 64
    assert recipe.strategy.name == "full"
    assert recipe.training["learning_rate"] == 5e-5
    assert recipe.source == str(REPO / "recipes" / "sst2_demo.yaml")


def test_dotted_overrides_are_typed():
    recipe = load_recipe(REPO / "recipes" / "sst2_demo.yaml",
                         ["training.learning_rate=3e-5", "max_length=64", "strategy.name=full", "seed=7",
                          "overwrite=false", "early_stopping.patience=2"])
    assert recipe.training["learning_rate"] == 3e-05 and isinstance(recipe.training["learning_rate"], float)
    assert recipe.max_length == 64 and isinstance(recipe.max_length, int)
    assert recipe.strategy.name == "full"
    assert recipe.seed == 7 and recipe.overwrite is False
    assert recipe.early_stopping.patience == 2
    assert recipe.training["num_train_epochs"] == 3  # untouched keys stay


def test_override_into_a_missing_section_and_string_values():
    recipe = load_recipe({"data": "card.md"}, ["training.lr_scheduler_type=cosine", "model=./my-model"])
    assert recipe.training == {"lr_scheduler_type": "cosine"}
    assert recipe.model == "./my-model"


def test_keyword_overrides_merge_into_sections():
    recipe = load_recipe(REPO / "recipes" / "sst2_demo.yaml", training={"num_train_epochs": 1}, max_length=32,
                         output_dir="runs/x")
    assert recipe.training["num_train_epochs"] == 1
    assert recipe.training["learning_rate"] == 5e-5  # merged, not replaced
    assert recipe.max_length == 32 and recipe.output_dir == "runs/x"


def test_strategy_may_be_written_as_a_plain_name(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: card.md\nstrategy: full\n", encoding="utf-8")
    assert load_recipe(path).strategy.name == "full"


def test_training_keys_are_transformers_training_arguments(tmp_path):
    from transformers import TrainingArguments

    training = {"learning_rate": 2e-5, "gradient_accumulation_steps": 2, "lr_scheduler_type": "cosine",
                "per_device_train_batch_size": 8, "report_to": "none"}
    recipe = load_recipe({"data": "card.md", "training": training})
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(recipe.training) <= names
    args = TrainingArguments(output_dir=str(tmp_path / "out"), **recipe.training)
    assert args.learning_rate == 2e-5 and args.gradient_accumulation_steps == 2
    assert args.per_device_train_batch_size == 8
    assert not (tmp_path / "out").exists()  # building the arguments writes nothing


def test_defaults_when_keys_are_missing():
    recipe = load_recipe({"data": "card.md"})
    defaults = Recipe()
    assert recipe.model == "minilm-l6" == defaults.model
    assert recipe.task == "sequence-classification"
    assert (recipe.max_length, recipe.seed, recipe.threshold) == (128, 42, 0.5)
    assert recipe.problem_type == "auto"
    assert (recipe.train_split, recipe.eval_split) == ("train", "validation")
    assert recipe.strategy.name == "full"
    assert recipe.early_stopping.patience is None
    assert recipe.training == {}
    assert recipe.resume is False and recipe.overwrite is False


def test_empty_yaml_recipe_needs_only_data(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(NLPTransferError, match="no 'data' key"):
        load_recipe(path)
    assert load_recipe(path, ["data=card.md"]).output_dir == "runs/default"


def test_recipe_data_path_resolves_beside_the_recipe(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "card.md").write_text("---\n---\n", encoding="utf-8")
    path = tmp_path / "recipes" / "r.yaml"
    path.write_text("data: card.md\n", encoding="utf-8")
    monkeypatch.chdir(REPO)
    recipe = load_recipe(path)
    assert resolve_path(recipe.data, recipe) == tmp_path / "recipes" / "card.md"


def test_yaml_no_is_the_word_no_for_options_that_take_words(tmp_path):
    """YAML 1.1 reads `no` as False; eval_strategy: no (in a file or as an override) means the strategy "no"."""
    from nlp_transfer.config import load_recipe

    card = tmp_path / "card.md"
    card.write_text("---\nname: c\nsplits: {train: t.csv}\n---\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {card}\ntraining: {{eval_strategy: no, fp16: false}}\n")
    loaded = load_recipe(recipe, ["training.save_strategy=no"])
    assert loaded.training["eval_strategy"] == "no" and loaded.training["save_strategy"] == "no"
    assert loaded.training["fp16"] is False
