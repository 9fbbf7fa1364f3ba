"""What a new user meets first (issue 27): a folder where a file belongs, list labels in a single-label card, other
tools' spellings of a key, ``cards FILE``, a hand-edited run folder, exporter noise, a calibration that would hurt,
``tune`` without a space file.

Each bad input runs the CLI as a user would and checks the contract of tests/test_bad_input.py: exit 2, one
``error:`` line with the words that matter, no traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO, cli_error, tiny_recipe, write_card, write_sst2_card

from nlp_transfer.cli import main


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, tiny_bert):
    """A tiny trained SST-2 classifier (max_length 48; the tiny model reads 128 positions)."""
    from nlp_transfer import train

    folder = tmp_path_factory.mktemp("first-use")
    card = write_sst2_card(folder, train_rows=96, dev_rows=48)
    out = folder / "run"
    train(tiny_recipe(card, tiny_bert, out, num_train_epochs=1))
    return out


def _edited_copy(run_folder, tmp_path, **values):
    """A copy of the run folder whose nlp_transfer.json has ``values`` written over it, as a hand edit would."""
    import shutil

    copy = tmp_path / "edited-run"
    shutil.copytree(run_folder, copy)
    sidecar = json.loads((copy / "nlp_transfer.json").read_text())
    (copy / "nlp_transfer.json").write_text(json.dumps({**sidecar, **values}))
    return copy


# ------------------------------------------------------------------ cases 1, 2, 6: a folder where a file belongs

def _data_folder_without_card(tmp_path):
    return ["train", REPO / "recipes" / "sst2_demo.yaml", f"data={REPO / 'samples' / 'sst2'}",
            f"output_dir={tmp_path / 'out'}"]


def _data_folder_with_cards(tmp_path):
    return ["train", REPO / "recipes" / "sst2_demo.yaml", f"data={REPO / 'data_cards'}", f"output_dir={tmp_path / 'out'}"]


def _data_card_typo(tmp_path):
    return ["train", REPO / "recipes" / "sst2_demo.yaml", f"data={REPO / 'data_cards' / 'sst3.md'}",
            f"output_dir={tmp_path / 'out'}"]


def _predict_input_folder(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "texts.txt").write_text("a fine film\n")
    return ["predict", tmp_path / "no-run-needed", "--input", tmp_path / "in", "--output", tmp_path / "p.jsonl"]


def _predict_empty_input_folder(tmp_path):
    (tmp_path / "in").mkdir()
    return ["predict", tmp_path / "no-run-needed", "--input", tmp_path / "in", "--output", tmp_path / "p.jsonl"]


def _cards_of_a_folder_without_cards(tmp_path):
    (tmp_path / "notes.md").write_text("# just notes\n")
    return ["cards", tmp_path]


def _cards_of_a_file_that_is_no_card(tmp_path):
    (tmp_path / "notes.md").write_text("# just notes\n")
    return ["cards", tmp_path / "notes.md"]


@pytest.mark.parametrize("argv, words", [
    (_data_folder_without_card, ["data card", "sst2' is a folder, not a file", "train.tsv", "but no data card",
                                 "one .md file with YAML front matter"]),
    (_data_folder_with_cards, ["data card", "data_cards' is a folder", "name one of its .md files",
                               "data_cards/sst2.md"]),
    (_data_card_typo, ["sst3.md' not found", "did you mean", "data_cards/sst2.md"]),
    (_predict_input_folder, ["input file", "in' is a folder", "in/texts.txt"]),
    (_predict_empty_input_folder, ["input file", "in' is a folder, not a file (it is empty)", ".txt (one text per line)"]),
    (_cards_of_a_folder_without_cards, ["no data cards (*.md) in the folder"]),
    (_cards_of_a_file_that_is_no_card, ["notes.md: line 1: a data card starts with '---'"]),
], ids=["data-folder-without-card", "data-folder-of-cards", "data-card-typo", "predict-input-folder",
        "predict-empty-folder", "cards-folder-without-cards", "cards-file-that-is-no-card"])
def test_a_folder_or_wrong_file_where_a_file_belongs_is_named_as_such(tmp_path, capsys, argv, words):
    message = cli_error(capsys, argv(tmp_path))
    for word in words:
        assert word in message, message
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.jsonl").exists()


def test_cards_checks_one_card_file_and_folders_together(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("text,label\ngood,1\nbad,0\n")
    card = write_card(tmp_path, "mine", splits={"train": "train.csv"})
    assert main(["cards", str(card), str(REPO / "data_cards")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mine ") and lines[0].endswith("[ok]")
    assert any(line.startswith("sst2 ") for line in lines[1:])  # the folder's cards follow


# ------------------------------------------------------------------ cases 4, 5: what the card says

def _card_run(tmp_path, tiny_bert, rows: list[dict], **front) -> list:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    card = write_card(tmp_path, "topics", splits={"train": "train.jsonl"}, **front)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(card, tiny_bert, tmp_path / "out")))
    return ["train", recipe]


LIST_LABELS = [{"text": "a late goal wins the cup", "labels": ["sports"]},
               {"text": "parliament votes on the budget", "labels": ["politics", "tech"]}]


@pytest.mark.parametrize("front, words", [
    ({"label": "labels", "labels": ["sports", "politics", "tech"]},
     ["train.jsonl: line 1: label [\"sports\"]", "is a list, so the data is multi-label",
      "set problem_type: multi_label in"]),
    ({"label": "labels"}, ["line 1", "is a list", "problem_type: multi_label"]),  # labels inferred from the rows
    ({"label": "labels", "problem_type": "regression"}, ["is a list", "reads it as regression"]),
], ids=["declared-labels", "inferred-labels", "regression"])
def test_list_labels_in_a_card_without_problem_type_say_multi_label(tmp_path, capsys, tiny_bert, front, words):
    message = cli_error(capsys, _card_run(tmp_path, tiny_bert, LIST_LABELS, **front))
    for word in words:
        assert word in message, message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, value, suggestion", [
    ("multi_label", True, "problem_type: multi_label"),
    ("multilabel", True, "problem_type: multi_label"),
    ("Multi-Label", True, "problem_type: multi_label"),
    ("num_labels", 3, "labels (the label names, in id order)"),
    ("classes", ["a", "b"], "labels (the label names, in id order)"),
    ("text_column", "text", "'text'"),
    ("label_column", "labels", "'label'"),
    ("tag_column", "ner", "'tags'"),
    ("data_files", {"train": "train.jsonl"}, "splits (e.g. splits:"),
    ("licence", "CC0", "'license'"),
])
def test_other_tools_spellings_of_a_card_key_name_the_real_key(tmp_path, capsys, tiny_bert, key, value, suggestion):
    message = cli_error(capsys, _card_run(tmp_path, tiny_bert, LIST_LABELS, label="labels", **{key: value}))
    assert f"unknown key '{key}' in the front matter; did you mean" in message
    assert suggestion in message, message


@pytest.mark.parametrize("override, suggestion", [
    ("epochs=3", "training.num_train_epochs"),
    ("lr=3e-5", "training.learning_rate"),
    ("batch_size=16", "training.per_device_train_batch_size"),
    ("model_name_or_path=x", "'model'"),
    ("max_seq_length=64", "'max_length'"),
    ("training.evaluation_strategy=steps", "training.eval_strategy"),
    ("training.group_by_length=true", "training.train_sampling_strategy: group_by_length"),
    ("outptu_dir=x", "'output_dir'"),  # a typo still gets the close match
])
def test_other_tools_spellings_of_a_recipe_key_name_the_real_key(tmp_path, capsys, override, suggestion):
    message = cli_error(capsys, ["train", REPO / "recipes" / "sst2_demo.yaml", override])
    assert "unknown key" in message and suggestion in message, message


# ------------------------------------------------------------------ case 3: a run folder edited by hand

@pytest.mark.parametrize("values, words", [
    ({"max_length": 100000}, ["nlp_transfer.json: max_length 100000 is longer than the model reads (128 positions)",
                              "at most 128"]),
    ({"max_length": "long"}, ["nlp_transfer.json: max_length must be an integer, got 'long'", "recipe.yaml"]),
    ({"max_length": 2}, ["nlp_transfer.json: max_length must be >= 8"]),
    ({"threshold": 1.5}, ["nlp_transfer.json: threshold must be > 0 and < 1"]),
    ({"label_names": "positive"}, ["nlp_transfer.json: label_names must be a list of strings"]),
    ({"task": 7}, ["nlp_transfer.json: task must be a string, got 7"]),
], ids=["max-length-too-long", "max-length-not-a-number", "max-length-too-small", "threshold", "label-names", "task"])
def test_a_hand_edited_sidecar_is_one_line_naming_the_file_and_key(run_folder, tmp_path, capsys, values, words):
    edited = _edited_copy(run_folder, tmp_path, **values)
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\n" + "word " * 60000 + "\n")
    message = cli_error(capsys, ["predict", edited, "--input", texts, "--output", tmp_path / "p.jsonl"],
                        progress_before=True)  # transformers' weight-loading bar may come first
    for word in words:
        assert word in message, message
    assert not (tmp_path / "p.jsonl").exists()


def test_embed_refuses_a_max_length_beyond_the_model_before_writing(tiny_bert, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("word " * 500 + "\n")
    message = cli_error(capsys, ["embed", tiny_bert, "--input", texts, "--output", tmp_path / "emb",
                                 "--max-length", "1000"], progress_before=True)
    assert "max_length 1000 is longer than" in message and "(128 positions)" in message
    assert not (tmp_path / "emb").exists()


# ------------------------------------------------------------------ case 8: the exporter's own noise

@pytest.mark.slow
def test_onnx_export_prints_no_torchvision_warnings(run_folder, tmp_path):
    pytest.importorskip("onnxscript")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "nlp_transfer", "export", str(run_folder), "--format", "onnx",
                           "--int8", "--output", str(tmp_path / "onnx")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "torchvision" not in done.stderr + done.stdout
    assert "nlp-transfer: exported" in done.stdout
    import logging

    from nlp_transfer.export.onnx_export import EXPORTER_LOGGERS, quiet_loggers

    logger = logging.getLogger(EXPORTER_LOGGERS[0])
    before = logger.level
    with quiet_loggers(EXPORTER_LOGGERS):
        assert logger.level == logging.ERROR
    assert logger.level == before  # a library call leaves the user's logging as it found it


# ------------------------------------------------------------------ case 9: a calibration that would hurt

def _binary_logits(groups):
    """Rows of (confidence of label 1, count, how many are truly label 1): one logit pair per row."""
    logits, gold = [], []
    for confidence, count, positives in groups:
        margin = np.log(confidence / (1 - confidence))
        logits += [[0.0, margin]] * count
        gold += [1] * positives + [0] * (count - positives)
    return np.array(logits), np.array(gold)


def test_a_temperature_that_raises_the_ece_where_it_was_fitted_is_not_applied():
    from nlp_transfer.calibration import fit, scores, summary_line
    from nlp_transfer.config import CalibrationConfig

    # a calibrated confident group and an under-confident one: the NLL wants T < 1, which over-sharpens the first
    logits, gold = _binary_logits([(0.95, 100, 95), (0.55, 100, 85)])
    calibration, report = fit(logits, gold, "single_label", CalibrationConfig())
    rejected = report.rejected
    assert rejected is not None and rejected["temperature"] < 1
    assert rejected["ece"] > report.before["ece"] and rejected["nll"] < report.before["nll"]
    assert calibration.temperature == 1.0 and report.temperature == 1.0
    assert report.after == report.before == scores(logits, gold, "single_label", 1.0)
    line = summary_line(report.to_dict())
    assert f"temperature {rejected['temperature']:.3f} not applied" in line and "scores stay raw (T = 1)" in line


def test_a_temperature_that_lowers_the_ece_is_applied():
    from nlp_transfer.calibration import fit, summary_line
    from nlp_transfer.config import CalibrationConfig

    logits, gold = _binary_logits([(0.99, 100, 70)])  # over-confident: T > 1 helps
    calibration, report = fit(logits, gold, "single_label", CalibrationConfig())
    assert report.rejected is None and calibration.temperature > 1
    assert report.after["ece"] < report.before["ece"]
    assert summary_line(report.to_dict()).startswith(f"temperature {calibration.temperature:.3f}; ECE")


# ------------------------------------------------------------------ case 10: tune without --space

@pytest.mark.parametrize("strategy", ["full", "last-n", "gradual", "lora", "feature-extraction",
                                      "feature-extraction/head", "contrastive"])
def test_every_default_search_space_samples_as_a_space_file_would(strategy):
    optuna = pytest.importorskip("optuna")
    from nlp_transfer.config import load_recipe
    from nlp_transfer.analysis.tune import DEFAULT_SPACES, default_space, suggest

    name, _, head = strategy.partition("/")
    options = {"name": name, **({"probe": "head"} if head else {})}
    recipe = load_recipe({"data": str(REPO / "data_cards" / "sst2.md"), "strategy": options})
    space, source = default_space(recipe)
    assert source.endswith(strategy) and set(space) == set(DEFAULT_SPACES[strategy])
    trial = optuna.create_study().ask()
    for key, spec in space.items():
        value = suggest(trial, key, spec)  # an int or float entry without `log` was a KeyError here
        if spec["type"] == "categorical":
            assert value in spec["choices"]
        else:
            assert spec["low"] <= value <= spec["high"], (key, value)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["full", "lora", "feature-extraction"])
def test_tune_runs_on_the_default_space_without_a_space_file(tiny_bert, sst2_toy, tmp_path, capsys, strategy):
    pytest.importorskip("optuna")
    if strategy == "lora":
        pytest.importorskip("peft")
    recipe = tmp_path / "recipe.yaml"
    values = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=1)
    values["strategy"] = {"name": strategy}
    if strategy == "feature-extraction":
        del values["training"]  # the scikit-learn probe trains no Trainer
    recipe.write_text(yaml.safe_dump(values))
    code = main(["tune", str(recipe), "--trials", "1", "--rows", "80", "--out", str(tmp_path / "search")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err and (tmp_path / "search" / "best.yaml").is_file()
