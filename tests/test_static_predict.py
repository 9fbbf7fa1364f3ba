"""Static runs open with `load_model` and predict as they scored in training: the BiLSTM classifier (single texts
and text pairs), averaged vectors + logistic regression and the BiLSTM tagger are rebuilt from their run folder
alone (the vectors file is deleted before loading), reproduce the run's predictions file, and work through
`nlp-transfer predict`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CONLL_DIR, cli_error, take_sentences, write_card, write_sst2_card
from nlp_transfer import load_model, train
from nlp_transfer.cli import main
from nlp_transfer.data.conll import repair_iob2
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.static import words
from nlp_transfer.static.predictors import StaticClassifier, StaticTagger
from nlp_transfer.tasks.ner import entity_metrics, split_words
from test_static_baselines import NEGATIVE, POSITIVE, read_rows, recipe, write_vectors


def pair_card(sst_card: Path) -> Path:
    """SST-2 rows as text pairs: each sentence with the next one, labelled as the first."""
    folder = sst_card.parent / "pairs"
    folder.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        rows = [line.rsplit("\t", 1) for line in (sst_card.parent / name).read_text(encoding="utf-8").splitlines()[1:]]
        lines = [f"{text}\t{rows[(i + 1) % len(rows)][0]}\t{label}" for i, (text, label) in enumerate(rows)]
        (folder / name).write_text("first\tsecond\tlabel\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return write_card(folder, "sst2-pairs", splits={"train": "train.tsv", "validation": "dev.tsv"}, format="tsv",
                      text=["first", "second"], label="label", labels=["negative", "positive"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Static runs trained once for this file; the vectors files and their cache are deleted afterwards."""
    root = tmp_path_factory.mktemp("static-runs")
    card = write_sst2_card(root / "sst2")
    texts = [line.split("\t")[0] for name in ("train.tsv", "dev.tsv")
             for line in (card.parent / name).read_text(encoding="utf-8").splitlines()[1:]]
    sst_vectors = write_vectors(root / "sst-vectors.txt", {w for t in texts for w in words(t)} | POSITIVE | NEGATIVE)
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLP_TRANSFER_CACHE", str(root / "cache"))
        out["bilstm"] = root / "bilstm"
        train(recipe(card, sst_vectors, out["bilstm"], oov="learned"))
        out["average"] = root / "average"
        train(recipe(card, sst_vectors, out["average"], baseline="average", tfidf=True))
        out["pairs"] = root / "pairs"
        train(recipe(pair_card(card), sst_vectors, out["pairs"], epochs=1, pooling="last"))
        if CONLL_DIR.is_dir():  # research-only Reuters text: read from ../shared, never shipped in the repo
            conll = root / "conll"
            conll.mkdir()
            for name, count in (("train.txt", 300), ("valid.txt", 60)):
                take_sentences(CONLL_DIR / name, conll / name, count)
            conll_card = write_card(conll, "conll-toy", task="token-classification",
                                    splits={"train": "train.txt", "validation": "valid.txt"}, format="conll",
                                    columns=["token", "pos", "chunk", "ner"], tags="ner")
            vocabulary = {line.split()[0].lower() for name in ("train.txt", "valid.txt")
                          for line in (conll / name).read_text(encoding="utf-8").splitlines() if line.strip()}
            conll_vectors = write_vectors(root / "conll-vectors.txt", vocabulary, leave_out=40)
            out["tagger"] = root / "tagger"
            values = recipe(conll_card, conll_vectors, out["tagger"], epochs=5, batch_size=8, learning_rate=1e-2)
            train({**values, "task": "token-classification"})
            conll_vectors.unlink()
    sst_vectors.unlink()  # loading needs the run folder only
    shutil.rmtree(root / "cache")
    return out


@pytest.fixture()
def tagger_run(runs) -> Path:
    if "tagger" not in runs:
        pytest.skip("../shared/data/conll2003 is not beside this checkout")
    return runs["tagger"]


@pytest.mark.parametrize("kind", ["bilstm", "average", "pairs"])
def test_loaded_classifier_reproduces_the_saved_predictions(runs, kind):
    model = load_model(runs[kind])
    assert isinstance(model, StaticClassifier) and model.device == "cpu"
    assert model.label_names == ["negative", "positive"] and model.problem_type == "single_label"
    rows = read_rows(runs[kind] / "predictions_validation.jsonl")
    inputs = [(r["text"], r["text_pair"]) for r in rows] if kind == "pairs" else [r["text"] for r in rows]
    for batch_size in (32, 1):
        predicted = model.predict(inputs, batch_size=batch_size, calibrated=False)  # the file has the raw scores
        assert [p["label"] for p in predicted] == [r["predicted"] for r in rows]
        np.testing.assert_allclose([p["score"] for p in predicted], [r["score"] for r in rows], atol=1e-5)
    assert set(predicted[0]["scores"]) == {"negative", "positive"}
    logits = model.logits(inputs[:3])
    assert logits.shape == (3, 2) and logits.dtype == np.float32
    if kind != "pairs":
        assert model.predict(inputs[0])["label"] == rows[0]["predicted"]  # one text in, one dict out
    metrics = json.loads((runs[kind] / "metrics.json").read_text())
    accuracy = np.mean([p["label"] == r["label"] for p, r in zip(predicted, rows)])
    assert accuracy == pytest.approx(metrics["eval"]["accuracy"], abs=1e-9)


def test_classifier_reads_words_as_training_did(runs):
    model = load_model(runs["bilstm"], device="cpu")
    unknown = model.predict(["zzqx"])[0]["scores"]  # unknown words: the learned OOV row, as in training
    empty = model.predict([""])[0]["scores"]  # an empty text is one unknown word
    assert unknown == empty
    long_text = "great " * model.max_length
    assert model.predict([long_text + "worst " * 50])[0] == model.predict([long_text])[0]  # max_length words


def test_pairs_and_single_texts_are_not_mixed_up(runs):
    with pytest.raises(NLPTransferError, match=r"trained on text pairs; pass \(text, text_pair\) tuples"):
        load_model(runs["pairs"]).predict(["only one text"])
    with pytest.raises(NLPTransferError, match="reads single texts, not"):
        load_model(runs["bilstm"]).predict([("a", "b")])


def test_loaded_tagger_reproduces_the_scored_tags(tagger_run):
    model = load_model(tagger_run)
    assert isinstance(model, StaticTagger) and model.strict is False and model.label_names[0] == "O"
    rows = read_rows(tagger_run / "predictions_validation.jsonl")
    tagged = model.tag_words([r["tokens"] for r in rows])
    assert [tags for tags, _ in tagged] == [repair_iob2(r["predicted"])[0] for r in rows]
    assert all(len(scores) == len(r["tokens"]) and all(0 < s <= 1 for s in scores)
               for (_, scores), r in zip(tagged, rows))
    metrics = json.loads((tagger_run / "metrics.json").read_text())
    recomputed = entity_metrics([r["tags"] for r in rows], [tags for tags, _ in tagged], model.strict)
    assert metrics["eval"]["f1"] > 0.05 and recomputed["f1"] == pytest.approx(metrics["eval"]["f1"], abs=1e-6)
    assert model.tag_words([[]]) == [([], [])]


def test_tagger_finds_spans_in_raw_text(tagger_run):
    model = load_model(tagger_run)
    rows = [r for r in read_rows(tagger_run / "predictions_validation.jsonl")  # raw text split as in the card
            if [w for w, _, _ in split_words(" ".join(r["tokens"]))] == r["tokens"] and set(r["predicted"]) != {"O"}]
    text = " ".join(rows[0]["tokens"])
    spans = model.predict(text)
    assert spans and spans == model.predict([text])[0]
    tokens = model.predict_tokens([rows[0]["tokens"]])[0]
    assert tokens["tags"] == repair_iob2(rows[0]["predicted"])[0]
    assert [(e["type"], e["text"], e["words"]) for e in tokens["entities"]] == \
        [(e["type"], e["text"], e["words"]) for e in spans]
    for entity in spans:
        assert text[entity["start"]:entity["end"]] == entity["text"]


def test_cli_predict_on_static_classifiers(runs, tmp_path, capsys):
    texts = ["a charming , funny film .", "dull and boring .", "the worst mess of the year"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    for kind in ("bilstm", "average"):
        output = tmp_path / f"{kind}.jsonl"
        assert main(["predict", str(runs[kind]), "--input", str(source), "--output", str(output)]) == 0
        written = read_rows(output)
        expected = load_model(runs[kind]).predict(texts)
        assert [r["text"] for r in written] == texts
        assert [r["label"] for r in written] == [p["label"] for p in expected]
    assert "wrote 3 predictions" in capsys.readouterr().out


def test_cli_predict_on_the_static_tagger(tagger_run, tmp_path):
    model = load_model(tagger_run)
    rows = read_rows(tagger_run / "predictions_validation.jsonl")[:5]
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(" ".join(r["tokens"]) for r in rows) + "\n", encoding="utf-8")
    assert main(["predict", str(tagger_run), "--input", str(texts), "--output", str(tmp_path / "spans.jsonl")]) == 0
    written = read_rows(tmp_path / "spans.jsonl")
    assert [r["entities"] for r in written] == model.predict([" ".join(r["tokens"]) for r in rows])
    conll = tmp_path / "input.conll"
    conll.write_text("\n\n".join("\n".join(f"{t}\tO" for t in r["tokens"]) for r in rows) + "\n", encoding="utf-8")
    assert main(["predict", str(tagger_run), "--input", str(conll), "--output", str(tmp_path / "out.conll")]) == 0
    blocks = (tmp_path / "out.conll").read_text(encoding="utf-8").strip().split("\n\n")
    assert [[line.split("\t")[1] for line in block.splitlines()] for block in blocks] == \
        [repair_iob2(r["predicted"])[0] for r in rows]


def test_damaged_static_runs_are_one_line_errors(runs, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(runs["bilstm"], broken)
    (broken / "vocabulary.json").unlink()
    with pytest.raises(NLPTransferError, match=r"vocabulary\.json: not found; this static run is incomplete"):
        load_model(broken)
    shutil.copy(runs["bilstm"] / "vocabulary.json", broken)
    (broken / "nlp_transfer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(NLPTransferError, match=r"nlp_transfer\.json: not valid JSON \(line 1"):
        load_model(broken)
    shutil.copy(runs["bilstm"] / "nlp_transfer.json", broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    texts = tmp_path / "texts.txt"
    texts.write_text("good\n", encoding="utf-8")
    error = cli_error(capsys, ["predict", broken, "--input", texts, "--output", tmp_path / "out.jsonl"])
    assert "model.safetensors: not a readable safetensors file" in error
    with pytest.raises(NLPTransferError, match="device 'tpu' is not one of"):
        load_model(runs["average"], device="tpu")
