"""Every kind of run folder the package writes opens with `load_model` and predicts through the CLI: Trainer
classification and NER, LoRA, the scikit-learn probe (on a frozen or a pair-trained encoder), the static BiLSTM classifier and tagger. A masked-LM run is
refused with a clear message (it has no task head to predict with). Every backend ends the same way
(`nlp_transfer.outputs`): one run record schema, the test split and eval sets scored by the saved model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import CONLL_DIR, cli_error, take_sentences, tiny_recipe, write_card, write_sst2_card
from test_static_baselines import NEGATIVE, POSITIVE, recipe as static_recipe, write_vectors

from nlp_transfer import NLPTransferError, evaluate, load_model, train
from nlp_transfer.cli import main
from nlp_transfer.static.words import words

KINDS = ("trainer-classifier", "trainer-ner", "lora", "probe", "contrastive", "static-classifier", "static-tagger")


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
    (card.parent / "test.tsv").write_text((card.parent / "train.tsv").read_text(encoding="utf-8")[:2000].rsplit("\n", 1)[0]
                                          + "\n", encoding="utf-8")
    card = write_card(card.parent, "sst2-toy", splits={"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"},
                      format="tsv", text="sentence", label="label", labels=["negative", "positive"])
    conll = root / "conll"
    conll.mkdir()
    for name, count in (("train.txt", 120), ("valid.txt", 30), ("test.txt", 30)):
        take_sentences(CONLL_DIR / name, conll / name, count)
    conll_card = write_card(conll, "conll-toy", task="token-classification", format="conll",
                            splits={"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
                            columns=["token", "pos", "chunk", "ner"], tags="ner")
    out = {kind: root / kind for kind in KINDS + ("masked-lm",)}

    def scored(values: dict, data: Path) -> dict:  # the test split and one extra evaluation set, for every backend
        return {**values, "test_split": "test", "eval_sets": {"again": {"data": str(data), "split": "test"}}}

    train(scored(tiny_recipe(card, tiny_bert, out["trainer-classifier"], max_steps=4), card))
    ner = tiny_recipe(conll_card, tiny_bert, out["trainer-ner"], max_steps=4)
    train(scored({**ner, "task": "token-classification"}, conll_card))
    train(scored({**tiny_recipe(card, tiny_bert, out["lora"], max_steps=4), "strategy": {"name": "lora", "r": 4}}, card))
    probe = tiny_recipe(card, tiny_bert, out["probe"])
    probe.pop("training")
    train(scored({**probe, "strategy": {"name": "feature-extraction"}}, card))
    train(scored({**probe, "output_dir": str(out["contrastive"]),
                  "strategy": {"name": "contrastive", "iterations": 1, "max_pairs": 32}}, card))
    texts = [line.rsplit("\t", 1)[0] for name in ("train.tsv", "dev.tsv", "test.tsv")
             for line in (card.parent / name).read_text(encoding="utf-8").splitlines()[1:]]
    vectors = write_vectors(root / "vectors.txt", {w for t in texts for w in words(t)} | POSITIVE | NEGATIVE)
    train(scored(static_recipe(card, vectors, out["static-classifier"], epochs=1), card))
    tokens = {line.split(" ")[0] for name in ("train.txt", "valid.txt", "test.txt")
              for line in (conll / name).read_text(encoding="utf-8").splitlines() if line.strip()}
    conll_vectors = write_vectors(root / "conll-vectors.txt", tokens)
    train(scored({**static_recipe(conll_card, conll_vectors, out["static-tagger"], epochs=1),
                  "task": "token-classification"}, conll_card))
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


RECORD_KEYS = ("schema", "backend", "task", "problem_type", "model", "data", "strategy", "eval_split", "main_metric",
               "eval", "train", "params", "predict", "history", "rows", "world_size", "seed", "nlp_transfer_version",
               "date", "test_split", "test", "eval_sets")


@pytest.mark.parametrize("kind", KINDS)
def test_every_backend_writes_one_record_and_scores_the_saved_model(runs, kind):
    """One run record schema for every backend, and one final-scoring step: the test split and eval sets in
    metrics.json are what the saved folder scores when opened again (so they were scored by the final model)."""
    metrics = json.loads((runs[kind] / "metrics.json").read_text())
    assert list(metrics)[:len(RECORD_KEYS) - 3] == list(RECORD_KEYS[:-3])
    assert set(RECORD_KEYS) <= set(metrics)
    assert metrics["schema"] == 1
    assert metrics["backend"] == {"probe": "probe", "contrastive": "probe", "static-classifier": "static", "static-tagger": "static"}.get(kind, "trainer")
    main = metrics["main_metric"]
    data = json.loads((runs[kind] / "run.json").read_text())
    assert data["backend"] == metrics["backend"]
    card = yaml.safe_load((runs[kind] / "recipe.yaml").read_text())["data"]
    again = evaluate(runs[kind], card, "test", device="cpu")
    assert metrics["test"]["rows"] == again["rows"] == metrics["eval_sets"]["again"]["rows"]
    assert metrics["test"][main] == pytest.approx(again[main], abs=1e-6)
    assert metrics["eval_sets"]["again"][main] == pytest.approx(again[main], abs=1e-6)
    assert "## Results on `test" in (runs[kind] / "README.md").read_text()


@pytest.mark.parametrize("kind", KINDS + ("masked-lm",))
def test_every_saved_recipe_loads_again_for_the_same_backend(runs, kind):
    """recipe.yaml in a run folder trains again as it is: it holds no key its backend would refuse."""
    from nlp_transfer.config import load_recipe

    saved = load_recipe(runs[kind] / "recipe.yaml")
    assert saved.backend == json.loads((runs[kind] / "run.json").read_text())["backend"]
    assert saved.test_split == ("test" if kind != "masked-lm" else None)


def test_a_masked_lm_run_is_refused_with_the_reason(runs, capsys, tmp_path):
    with pytest.raises(NLPTransferError, match="this is a masked-LM run .* train a task on it first"):
        load_model(runs["masked-lm"])
    texts = tmp_path / "texts.txt"
    texts.write_text("a film\n")
    message = cli_error(capsys, ["predict", runs["masked-lm"], "--input", texts, "--output", tmp_path / "o.jsonl"])
    assert "masked-LM run" in message and not (tmp_path / "o.jsonl").exists()
