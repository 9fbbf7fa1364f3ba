"""Every kind of run folder the package writes opens with `load_model` and predicts through the CLI: Trainer
classification and NER, LoRA, the scikit-learn probe, the static BiLSTM classifier and tagger. A masked-LM run is
refused with a clear message (it has no task head to predict with)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONLL_DIR, cli_error, take_sentences, tiny_recipe, write_card, write_sst2_card
from test_static_baselines import NEGATIVE, POSITIVE, recipe as static_recipe, write_vectors

from nlp_transfer import NLPTransferError, load_model, train
from nlp_transfer.cli import main
from nlp_transfer.static.words import words

KINDS = ("trainer-classifier", "trainer-ner", "lora", "probe", "static-classifier", "static-tagger")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert) -> dict[str, Path]:
    if not CONLL_DIR.is_dir():
        pytest.skip("../shared/data/conll2003 is not beside this checkout")
    root = tmp_path_factory.mktemp("every-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLP_TRANSFER_CACHE", str(root / "cache"))  # the vectors and features caches stay in tmp
        return train_every_kind(root, tiny_bert)


def train_every_kind(root: Path, tiny_bert: Path) -> dict[str, Path]:
    card = write_sst2_card(root / "sst2", 96, 32)
    conll = root / "conll"
    conll.mkdir()
    for name, count in (("train.txt", 120), ("valid.txt", 30)):
        take_sentences(CONLL_DIR / name, conll / name, count)
    conll_card = write_card(conll, "conll-toy", task="token-classification", format="conll",
                            splits={"train": "train.txt", "validation": "valid.txt"}, columns=["token", "pos", "chunk", "ner"],
                            tags="ner")
    out = {kind: root / kind for kind in KINDS + ("masked-lm",)}
    train(tiny_recipe(card, tiny_bert, out["trainer-classifier"], max_steps=4))
    ner = tiny_recipe(conll_card, tiny_bert, out["trainer-ner"], max_steps=4)
    train({**ner, "task": "token-classification"})
    train({**tiny_recipe(card, tiny_bert, out["lora"], max_steps=4), "strategy": {"name": "lora", "r": 4}})
    probe = tiny_recipe(card, tiny_bert, out["probe"])
    probe.pop("training")
    train({**probe, "strategy": {"name": "feature-extraction"}})
    texts = [line.rsplit("\t", 1)[0] for name in ("train.tsv", "dev.tsv")
             for line in (card.parent / name).read_text(encoding="utf-8").splitlines()[1:]]
    vectors = write_vectors(root / "vectors.txt", {w for t in texts for w in words(t)} | POSITIVE | NEGATIVE)
    train(static_recipe(card, vectors, out["static-classifier"], epochs=1))
    tokens = {line.split(" ")[0] for name in ("train.txt", "valid.txt")
              for line in (conll / name).read_text(encoding="utf-8").splitlines() if line.strip()}
    conll_vectors = write_vectors(root / "conll-vectors.txt", tokens)
    train({**static_recipe(conll_card, conll_vectors, out["static-tagger"], epochs=1), "task": "token-classification"})
    text_card = write_card(card.parent, "sst2-text", task="text", splits={"train": "train.tsv", "validation": "dev.tsv"},
                           format="tsv", text="sentence")
    train({**tiny_recipe(text_card, tiny_bert, out["masked-lm"], max_steps=2), "task": "masked-lm"})
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_each_run_folder_loads_and_predicts(runs, kind, tmp_path):
    folder = runs[kind]
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "finished"
    model = load_model(folder)
    if kind.endswith(("ner", "tagger")):
        tagged = model.predict_tokens([["EU", "rejects", "German", "call"]])[0]
        assert len(tagged["tags"]) == 4 and all(t == "O" or t[:2] in ("B-", "I-") for t in tagged["tags"])
        assert isinstance(model.predict("Angela Merkel visited Paris."), list)
    else:
        predicted = model.predict(["a gorgeous , witty film", "a dull , lifeless mess"])
        assert [p["label"] in ("negative", "positive") for p in predicted] == [True, True]
        assert all(abs(sum(p["scores"].values()) - 1) < 1e-4 for p in predicted)
    texts = tmp_path / "texts.txt"
    texts.write_text("a gorgeous , witty film\nAngela Merkel visited Paris .\n")
    assert main(["predict", str(folder), "--input", str(texts), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_a_masked_lm_run_is_refused_with_the_reason(runs, capsys, tmp_path):
    with pytest.raises(NLPTransferError, match="this is a masked-LM run .* train a task on it first"):
        load_model(runs["masked-lm"])
    texts = tmp_path / "texts.txt"
    texts.write_text("a film\n")
    message = cli_error(capsys, ["predict", runs["masked-lm"], "--input", texts, "--output", tmp_path / "o.jsonl"])
    assert "masked-LM run" in message and not (tmp_path / "o.jsonl").exists()
