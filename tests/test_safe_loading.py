"""Nothing silently wrong, one line and never a traceback, for what is loaded and where it is written:

- a folder without a task head (a masked-LM run, a bare encoder) is refused by load_model / predict /
  evaluate instead of getting a randomly initialised head that predicts confident noise;
- a config.json with an unknown model_type, without one, or that is not JSON is named in one line;
- an input file with no texts is refused before the model loads;
- an output path of the wrong kind (a folder where a file is written, a file where a folder is) is refused
  before any model loads or data is read, and nothing already on disk changes.

The trained runs are real (tiny models, a few seconds) and shared by the whole module.
"""
from __future__ import annotations

import re
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import cli_error, tiny_recipe, tree_hashes, write_card, write_sst2_card

from nlp_transfer import NLPTransferError, embed, evaluate, load_model, train
from nlp_transfer.analysis.compare import compare

TEXTS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés from start to end"]


def _edit_config(folder: Path, **changes) -> Path:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert):
    """One trained classifier, one masked-LM run, and model folders broken in the ways under test."""
    root = tmp_path_factory.mktemp("safe-loading")
    data = root / "data"
    card = write_sst2_card(data, dev_rows=48)
    text_card = write_card(data, "sst2-text", task="text", splits={"train": "train.tsv", "validation": "dev.tsv"},
                           format="tsv", text="sentence", license="research-only")
    classifier = root / "cls"
    train(tiny_recipe(card, tiny_bert, classifier))
    mlm = root / "mlm"
    train({**tiny_recipe(text_card, tiny_bert, mlm, num_train_epochs=1), "task": "masked-lm"})

    def copy(source: Path, name: str) -> Path:
        return Path(shutil.copytree(source, root / name))

    foreign = copy(classifier, "foreign-classifier")  # a plain transformers ...ForSequenceClassification folder
    (foreign / "nlp_transfer.json").unlink()
    mlm_no_sidecar = copy(mlm, "mlm-no-sidecar")  # BertForMaskedLM from elsewhere
    (mlm_no_sidecar / "nlp_transfer.json").unlink()
    pretraining = _edit_config(copy(tiny_bert, "pretraining"), architectures=["BertForPreTraining"])
    no_architectures = _edit_config(copy(tiny_bert, "no-architectures"), architectures=None)
    unknown = _edit_config(copy(tiny_bert, "unknown-type"), model_type="no-such-arch",
                           architectures=["NoSuchArchForSequenceClassification"])
    no_type = _edit_config(copy(tiny_bert, "no-type"), model_type=None)
    bad_json = copy(tiny_bert, "bad-json")
    (bad_json / "config.json").write_text('{"model_type": "bert",\n  oops}\n')
    texts = root / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return SimpleNamespace(root=root, card=card, cls=classifier, mlm=mlm, bert=Path(tiny_bert), foreign=foreign,
                           mlm_no_sidecar=mlm_no_sidecar, pretraining=pretraining, no_architectures=no_architectures,
                           unknown=unknown, no_type=no_type, bad_json=bad_json, texts=texts)


# ---------------------------------------------------------------- the Python API

NO_HEAD = [
    ("mlm", "this is a masked-LM run (domain-adapted encoder), not a task model; train a task on it first"),
    ("bert", "this is a bare encoder / masked-LM checkpoint with no task head (BertModel); train a task on it first"),
    ("mlm_no_sidecar", "bare encoder / masked-LM checkpoint with no task head (BertForMaskedLM)"),
    ("pretraining", "bare encoder / masked-LM checkpoint with no task head (BertForPreTraining)"),
    ("no_architectures", "with no task head (config.json names no architectures)"),
]


@pytest.mark.parametrize("folder, expected", NO_HEAD, ids=[case[0] for case in NO_HEAD])
def test_load_model_refuses_a_folder_without_a_task_head(runs, folder, expected):
    path = getattr(runs, folder)
    with pytest.raises(NLPTransferError) as error:
        load_model(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
    assert f"model: {path} in a classification recipe" in message


def test_a_trained_classifier_and_a_plain_transformers_classifier_still_load_and_predict(runs):
    ours = load_model(runs.cls).predict(TEXTS)
    assert [p["label"] for p in ours] == [p["label"] for p in load_model(runs.foreign).predict(TEXTS)]
    for prediction in ours:
        assert prediction["label"] in ("negative", "positive")
        assert set(prediction["scores"]) == {"negative", "positive"}
    assert 0.0 <= evaluate(runs.cls, runs.card)["accuracy"] <= 1.0


def test_bare_encoders_and_masked_lm_runs_still_embed(runs):
    for folder in (runs.bert, runs.mlm):
        vectors = embed(str(folder), TEXTS)
        assert vectors.shape == (2, 32) and np.isfinite(vectors).all()


BAD_CONFIGS = [
    ("unknown", "config.json: model_type 'no-such-arch' is not known to transformers "),
    ("no_type", "config.json: has no model_type, and transformers "),
    ("bad_json", "config.json: not valid JSON (line 2 column 3: Expecting property name"),
]


@pytest.mark.parametrize("folder, expected", BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS])
@pytest.mark.parametrize("load", [load_model, lambda path: embed(str(path), TEXTS)], ids=["load_model", "embed"])
def test_a_bad_config_json_is_one_line_naming_the_file(runs, folder, expected, load):
    path = getattr(runs, folder)
    with pytest.raises(NLPTransferError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(str(path / "config.json")) and expected in message and "\n" not in message


def test_a_corrupt_sidecar_is_one_line_naming_it(runs, tmp_path):
    folder = Path(shutil.copytree(runs.cls, tmp_path / "run"))
    (folder / "nlp_transfer.json").write_text('{"task": ')
    with pytest.raises(NLPTransferError, match=r"nlp_transfer\.json: not valid JSON \(line 1 column 10"):
        load_model(folder)


def test_api_output_paths_of_the_wrong_kind_fail_before_anything_loads(runs, tmp_path):
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me\n")
    with pytest.raises(NLPTransferError, match=re.escape(f"output {existing}: is an existing file, but a folder is written")):
        embed(str(tmp_path / "no-such-model"), TEXTS, output=existing)
    with pytest.raises(NLPTransferError, match=re.escape(f"output {existing}: is an existing file, but a folder is written")):
        compare([tmp_path / "no-such-run"], output=existing)
    assert existing.read_text() == "keep me\n"


# ---------------------------------------------------------------- the command line, one table

def _write_train_recipe(runs, tmp_path, model_folder) -> Path:
    recipe = tmp_path / f"recipe-{model_folder}.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(runs.card, getattr(runs, model_folder), tmp_path / "new-run")))
    return recipe


def _inputs(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("\n   \n\t\n")
    (tmp_path / "header.csv").write_text("text,label\n")
    (tmp_path / "header.tsv").write_text("text\n\n")
    (tmp_path / "empty.conll").write_text("\n\n")
    (tmp_path / "out-folder").mkdir()
    (tmp_path / "out-folder" / "keep.txt").write_text("an earlier result\n")
    (tmp_path / "out-file.txt").write_text("an earlier result\n")


# (id, argv with {placeholders}, the path the message names, what it says). {root}: the module's runs,
# {tmp}: this test's folder. Output cases name a model and an input that do not exist: the output path is
# checked first, before any model loads or any data is read.
CLI_CASES = [
    ("predict-mlm-run", "predict {mlm} --input {texts} --output {tmp}/p.jsonl", "{mlm}",
     "this is a masked-LM run (domain-adapted encoder), not a task model; train a task on it first"),
    ("evaluate-mlm-run", "evaluate {mlm} --data {card}", "{mlm}", "this is a masked-LM run"),
    ("predict-bare-encoder", "predict {bert} --input {texts} --output {tmp}/p.jsonl", "{bert}",
     "this is a bare encoder / masked-LM checkpoint with no task head"),
    ("evaluate-bare-encoder", "evaluate {bert} --data {card} --output {tmp}/m.json", "{bert}",
     "this is a bare encoder / masked-LM checkpoint with no task head"),
    ("predict-unknown-type", "predict {unknown} --input {texts} --output {tmp}/p.jsonl", "{unknown}/config.json",
     "model_type 'no-such-arch' is not known to transformers"),
    ("evaluate-unknown-type", "evaluate {unknown} --data {card}", "{unknown}/config.json",
     "model_type 'no-such-arch' is not known to transformers"),
    ("embed-unknown-type", "embed {unknown} --input {texts} --output {tmp}/emb", "{unknown}/config.json",
     "upgrade transformers"),
    ("train-unknown-type", "train {recipe_unknown}", "{unknown}/config.json", "trust_remote_code: true"),
    ("predict-bad-json", "predict {bad_json} --input {texts} --output {tmp}/p.jsonl", "{bad_json}/config.json",
     "not valid JSON (line 2 column 3"),
    ("embed-bad-json", "embed {bad_json} --input {texts} --output {tmp}/emb", "{bad_json}/config.json",
     "not valid JSON"),
    ("train-bad-json", "train {recipe_bad_json}", "{bad_json}/config.json", "not valid JSON"),
    ("predict-empty-file", "predict {cls} --input {tmp}/empty.txt --output {tmp}/p.jsonl", "{tmp}/empty.txt",
     "no texts (the file is empty)"),
    ("predict-blank-lines", "predict {cls} --input {tmp}/blank.txt --output {tmp}/p.jsonl", "{tmp}/blank.txt",
     "no texts (the file has only blank lines)"),
    ("predict-csv-header-only", "predict {cls} --input {tmp}/header.csv --output {tmp}/p.jsonl", "{tmp}/header.csv",
     "no texts (the file has only a header line)"),
    ("predict-tsv-header-only", "predict {cls} --input {tmp}/header.tsv --output {tmp}/p.jsonl", "{tmp}/header.tsv",
     "no texts (the file has only a header line)"),
    ("predict-empty-conll", "predict {cls} --input {tmp}/empty.conll --output {tmp}/p.jsonl", "{tmp}/empty.conll",
     "no sentences (the file is empty"),
    ("embed-empty-file", "embed {bert} --input {tmp}/empty.txt --output {tmp}/emb", "{tmp}/empty.txt",
     "no texts (the file is empty)"),
    ("predict-output-is-a-folder", "predict {tmp}/no-model --input {tmp}/no.txt --output {tmp}/out-folder",
     "--output {tmp}/out-folder", "is an existing folder, but a file is written here; give a file path instead"),
    ("predict-output-under-a-file", "predict {tmp}/no-model --input {tmp}/no.txt --output {tmp}/out-file.txt/p.jsonl",
     "--output {tmp}/out-file.txt/p.jsonl", "{tmp}/out-file.txt is a file, so nothing can be written under it"),
    ("predict-output-is-the-input", "predict {tmp}/no-model --input {tmp}/out-file.txt --output {tmp}/out-file.txt",
     "--output {tmp}/out-file.txt", "is the --input file"),
    ("evaluate-output-is-a-folder", "evaluate {tmp}/no-model --data {tmp}/no-card.md --output {tmp}/out-folder",
     "--output {tmp}/out-folder", "is an existing folder, but a file is written here"),
    ("embed-output-is-a-file", "embed {tmp}/no-model --input {tmp}/no.txt --output {tmp}/out-file.txt",
     "--output {tmp}/out-file.txt", "is an existing file, but a folder is written here; give a folder path instead"),
    ("export-output-is-a-file", "export {tmp}/no-model --merge --output {tmp}/out-file.txt",
     "--output {tmp}/out-file.txt", "is an existing file, but a folder is written here"),
    ("compare-out-is-a-file", "compare {tmp}/no-run --out {tmp}/out-file.txt",
     "--out {tmp}/out-file.txt", "is an existing file, but a folder is written here"),
]


@pytest.mark.parametrize("argv, named, expected", [case[1:] for case in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_one_line_naming_the_path_and_nothing_on_disk_changes(runs, tmp_path, capsys, monkeypatch, argv, named,
                                                                  expected):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb-unused"))  # train() sets it otherwise
    _inputs(tmp_path)
    places = {**{k: str(v) for k, v in vars(runs).items()}, "tmp": str(tmp_path),
              "recipe_unknown": _write_train_recipe(runs, tmp_path, "unknown"),
              "recipe_bad_json": _write_train_recipe(runs, tmp_path, "bad_json")}
    before = tree_hashes(runs.root, tmp_path)
    message = cli_error(capsys, [part.format(**places) for part in argv.split()])
    assert named.format(**places) in message
    assert expected.format(**places) in message
    assert tree_hashes(runs.root, tmp_path) == before  # nothing changed, nothing new (no p.jsonl, emb/, new-run/)
