"""One test per bad input: the one-line message names the place and the fix, and the CLI
prints exactly ``error: ...`` on stderr, exits with 2, shows no traceback and writes no output_dir.

Every failure here happens before any training, so the `tiny_bert` model is only named, never trained.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, cli_error, tiny_recipe, write_card



@pytest.fixture()
def train_fails(tmp_path, tiny_bert, capsys, monkeypatch):
    """``train_fails(files, recipe_values=None, **card_front) -> message``: writes the data files and a card
    (splits default to train: <first file>), runs ``nlp-transfer train RECIPE`` and checks nothing was written."""
    out = tmp_path / "run"
    # train() does os.environ.setdefault(TENSORBOARD_LOGGING_DIR, ...): keep it from leaking into later tests.
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb-unused"))

    def run(files: dict[str, str | bytes], recipe_values: dict | None = None, **front) -> str:
        for name, content in files.items():
            target = tmp_path / name
            target.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        front.setdefault("splits", {"train": next(iter(files))})
        card = write_card(tmp_path, "card", **front)
        recipe = tmp_path / "recipe.yaml"
        values = {**tiny_recipe(card, tiny_bert, out), **(recipe_values or {})}
        recipe.write_text(yaml.safe_dump(values), encoding="utf-8")
        message = cli_error(capsys, ["train", recipe])
        assert not out.exists() or not any(out.iterdir()), "a failed run must leave no half-written output_dir"
        return message

    return run


def recipe_fails(tmp_path, capsys, text: str) -> str:
    """Write a recipe file verbatim, run ``nlp-transfer train`` on it, return the error line."""
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    message = cli_error(capsys, ["train", path])
    assert str(path) in message
    assert not (tmp_path / "run").exists()
    return message


GOOD_CSV = "text,label\ngood film,1\nbad film,0\n"


# ---------------------------------------------------------------- data files

def test_missing_data_file(tmp_path, train_fails):
    message = train_fails({"train.csv": GOOD_CSV}, splits={"train": "trian.csv"})
    assert f"data file '{tmp_path / 'trian.csv'}' not found" in message
    assert "split paths in the data card" in message


def test_missing_column_suggests_the_close_name(train_fails):
    message = train_fails({"train.csv": "sentence,label\ngood film,1\nbad film,0\n"}, text="sentense")
    assert "train.csv: line 1: no text column 'sentense'" in message
    assert "did you mean 'sentence'" in message
    assert "(columns: sentence, label)" in message


def test_missing_label_column_suggests_the_close_name(train_fails):
    message = train_fails({"train.jsonl": '{"text": "a", "labels": 1}\n'}, label="label")
    assert "train.jsonl: line 1: no label column 'label'; did you mean 'labels'" in message


def test_csv_row_with_wrong_field_count(train_fails):
    message = train_fails({"train.csv": "text,label\ngood film,1\nbad, boring film,0\nok,1\n"})
    assert "train.csv: line 3: expected 2 fields (text, label), found 3" in message
    assert "quote fields that contain the delimiter" in message


def test_tsv_row_with_a_stray_tab(train_fails):
    message = train_fails({"train.tsv": "text\tlabel\ngood\t1\nbad\tfilm\t0\n"})
    assert "train.tsv: line 3: expected 2 fields" in message
    assert "remove stray tabs inside the text" in message


def test_csv_row_with_an_unclosed_quote_names_the_row_where_it_opens(train_fails):
    message = train_fails({"train.csv": 'text,label\ngood film,1\n"bad, boring film,0\nok,1\nfine,0\n'})
    assert "train.csv: line 3: malformed row" in message
    assert "check the quoting of this row" in message


def test_csv_row_with_text_after_a_closing_quote(train_fails):
    message = train_fails({"train.csv": 'text,label\ngood film,1\n"bad" film,0\n'})
    assert "train.csv: line 3: malformed row" in message
    assert "check the quoting" in message


@pytest.mark.parametrize("name, content, line", [
    ("train.csv", "text,label\ngood film,1\n,0\n", 3),
    ("train.csv", 'text,label\ngood film,1\n"   ",0\n', 3),
    ("train.jsonl", '{"text": "good film", "label": 1}\n{"text": null, "label": 0}\n', 2),
    ("train.jsonl", '{"text": "good film", "label": 1}\n{"text": NaN, "label": 0}\n', 2),
], ids=["empty-csv-cell", "blank-csv-cell", "jsonl-null", "jsonl-NaN"])
def test_empty_or_nan_text(train_fails, name, content, line):
    message = train_fails({name: content})
    assert f"{name}: line {line}: empty or missing text in column 'text'" in message
    assert "fill it in or remove the row" in message


def test_empty_label(train_fails):
    message = train_fails({"train.csv": "text,label\ngood film,1\nbad film,\n"})
    assert "train.csv: line 3: empty label in column 'label'" in message


def test_invalid_json_line(train_fails):
    message = train_fails({"train.jsonl": '{"text": "a", "label": 1}\n{"text": "b", "label": 0\n'})
    assert "train.jsonl: line 2: not valid JSON" in message
    assert "each line must be one JSON object" in message


def test_label_not_in_card_labels_suggests_the_close_label(train_fails):
    content = "text,label\ngood film,positive\nbad film,negative\nfine film,postive\n"
    message = train_fails({"train.csv": content}, labels=["negative", "positive"])
    assert "train.csv: line 4: label 'postive' is not one of the labels [negative, positive]" in message
    assert "did you mean 'positive'" in message
    assert "add the label to 'labels:'" in message


def test_label_id_out_of_range(train_fails):
    message = train_fails({"train.csv": "text,label\ngood film,1\nbad film,2\n"}, labels=["negative", "positive"])
    assert "train.csv: line 3: label '2' is not one of the labels [negative, positive]" in message


def test_regression_label_that_is_not_a_number(train_fails):
    message = train_fails({"train.csv": "text,label\ngood film,4.5\nbad film,low\n"}, problem_type="regression")
    assert "train.csv: line 3: label 'low' is not a number" in message


def test_undecodable_bytes_name_the_line(train_fails):
    message = train_fails({"train.csv": b"text,label\ngood film,1\ncaf\xe9 film,0\n"})
    assert "train.csv: line 3: bytes that are not valid utf-8" in message
    assert "set 'encoding:' in the data card" in message


def test_latin1_file_reads_when_the_card_says_so(tmp_path):
    from nlp_transfer.data.readers import load_data

    (tmp_path / "train.csv").write_bytes(b"text,label\ngood film,1\ncaf\xe9 film,0\n")
    card = write_card(tmp_path, "latin", splits={"train": "train.csv"}, encoding="latin-1")
    assert load_data(card).splits["train"]["text"] == ["good film", "café film"]


def test_empty_split_with_only_a_header(tmp_path, train_fails):
    message = train_fails({"train.csv": "text,label\n"})
    assert "train.csv: split 'train' has no rows" in message
    assert str(tmp_path / "card.md") in message


def test_only_one_label_in_the_training_data(train_fails):
    message = train_fails({"train.csv": "text,label\ngood film,1\nbad film,1\n"})
    assert "only one label (1) found; classification needs at least two" in message


def test_unknown_split_name(train_fails):
    message = train_fails({"train.csv": GOOD_CSV}, recipe_values={"train_split": "trian"})
    assert "no 'trian' split; did you mean 'train'" in message


# ---------------------------------------------------------------- recipes

def test_missing_recipe_file(tmp_path, capsys):
    message = cli_error(capsys, ["train", tmp_path / "nope.yaml"])
    assert f"recipe file '{tmp_path / 'nope.yaml'}' not found" in message


def test_recipe_typo_at_top_level(tmp_path, capsys):
    message = recipe_fails(tmp_path, capsys, "data: card.md\nmax_lenght: 64\n")
    assert "unknown key 'max_lenght'; did you mean 'max_length'" in message


def test_recipe_typo_in_a_nested_section(tmp_path, capsys):
    message = recipe_fails(tmp_path, capsys, "data: card.md\nstrategy:\n  nme: full\n")
    assert "unknown key 'strategy.nme'; did you mean 'strategy.name'" in message


def test_recipe_typo_in_training(tmp_path, capsys):
    message = recipe_fails(tmp_path, capsys, "data: card.md\ntraining:\n  learning_rte: 3.0e-5\n")
    assert "unknown key 'training.learning_rte'; did you mean 'training.learning_rate'" in message


def test_override_typo(tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text("data: card.md\n", encoding="utf-8")
    message = cli_error(capsys, ["train", tmp_path / "recipe.yaml", "training.num_train_epoch=1"])
    assert "unknown key 'training.num_train_epoch'; did you mean 'training.num_train_epochs'" in message


def test_override_without_equals_sign(tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text("data: card.md\n", encoding="utf-8")
    message = cli_error(capsys, ["train", tmp_path / "recipe.yaml", "max_length"])
    assert "override 'max_length' is not of the form key=value" in message


def test_unsupported_strategy_suggests_the_close_one(tmp_path, capsys):
    message = recipe_fails(tmp_path, capsys, "data: card.md\nstrategy: fulll\n")
    assert "strategy.name 'fulll' is not supported; did you mean 'full'" in message


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    message = recipe_fails(tmp_path, capsys, "data: card.md\nmodel: tiny\n  seed: 3\noutput_dir: run\n")
    assert "recipe.yaml: line 3: mapping values are not allowed here; fix the YAML syntax" in message


def test_unclosed_quote_in_yaml_names_the_line_where_it_opens(tmp_path, capsys):
    message = recipe_fails(tmp_path, capsys, "data: card.md\nmodel: 'tiny\nseed: 3\n\n")
    assert "started on line 2" in message
    assert "fix the YAML syntax" in message


def test_training_value_rejected_by_transformers(tmp_path, train_fails):
    message = train_fails({"train.csv": GOOD_CSV}, recipe_values={"training": {"lr_scheduler_type": "cosinus"}})
    assert f"{tmp_path / 'recipe.yaml'}: training.lr_scheduler_type 'cosinus' is not supported" in message
    assert "did you mean 'cosine'?" in message


# ---------------------------------------------------------------- models

def test_unknown_model_suggests_the_alias_and_how_to_get_it_offline(monkeypatch, train_fails):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = train_fails({"train.csv": GOOD_CSV}, recipe_values={"model": "minilm-l7"})
    assert "unknown model 'minilm-l7': not a local directory" in message
    assert "did you mean 'minilm-l6'" in message
    assert "hf download minilm-l7 --local-dir DIR" in message and "model=DIR" in message


def test_model_path_that_does_not_exist(train_fails):
    message = train_fails({"train.csv": GOOD_CSV}, recipe_values={"model": "./no/such/dir"})
    assert "model directory './no/such/dir' not found" in message


def test_model_directory_without_config(tmp_path, train_fails):
    (tmp_path / "empty-model").mkdir()
    message = train_fails({"train.csv": GOOD_CSV}, recipe_values={"model": str(tmp_path / "empty-model")})
    assert "has no config.json" in message


# ---------------------------------------------------------------- predict input

def test_predict_with_a_missing_input_file(tmp_path, tiny_bert, capsys):
    argv = ["predict", tiny_bert, "--input", tmp_path / "texts.txt", "--output", tmp_path / "p.jsonl"]
    message = cli_error(capsys, argv)
    assert f"input file '{tmp_path / 'texts.txt'}' not found" in message
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("name, content, expected", [
    ("in.jsonl", '{"text": "a"}\n{"text": null}\n', "in.jsonl: line 2: empty or missing text in column 'text'"),
    ("in.jsonl", '{"text": "a"}\n{"text": NaN}\n', "in.jsonl: line 2: empty or missing text in column 'text'"),
    ("in.csv", "text\na\n\"\"\n", "in.csv: line 3: empty or missing text in column 'text'"),
    ("in.csv", 'text,id\n"a, b,1\nc,2\n', "in.csv: line 2: malformed row"),
    ("in.csv", "body\na\n", "in.csv: line 1: no text column 'text'"),
], ids=["jsonl-null", "jsonl-NaN", "csv-empty", "csv-unclosed-quote", "csv-no-column"])
def test_predict_input_with_bad_rows(tmp_path, tiny_bert, capsys, name, content, expected):
    (tmp_path / name).write_text(content, encoding="utf-8")
    message = cli_error(capsys, ["predict", tiny_bert, "--input", tmp_path / name, "--output", tmp_path / "p.jsonl"])
    assert expected in message
    assert not (tmp_path / "p.jsonl").exists()


# ---------------------------------------------------------------- the real command

def test_console_command_prints_one_error_line_and_exits_2(tmp_path, tiny_bert):
    (tmp_path / "train.csv").write_text("sentence,label\ngood film,1\nbad film,0\n", encoding="utf-8")
    card = write_card(tmp_path, "card", splits={"train": "train.csv"}, text="sentense")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(card, tiny_bert, tmp_path / "run")), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "nlp_transfer", "train", str(recipe)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "did you mean 'sentence'" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
    assert "error:" not in done.stdout
