"""Multilingual models first-class: the XLM-R-style fixture (SentencePiece, <s>/</s>, no token types) through every
task, per-language metrics, extra evaluation sets (eval_sets), entity-type mapping (label_map), the e5 alias."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_recipe, write_card

from nlp_transfer import NLPTransferError, embed, load_model, train
from nlp_transfer.evaluation import evaluate
from nlp_transfer.tasks.ner import EntityTypeMismatchWarning, score_on_shared_types, split_words


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine the thread hand-offs cost
    10x; one thread keeps this file fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- data

# One sentence per script (Latin with accents, Cyrillic, CJK written without spaces, Arabic); words as
# `split_words` cuts the raw text, so raw-text prediction sees exactly the training words.
SENTENCES = {
    "de": ("Angela Merkel läuft über die Straße in Zürich .", {"Angela": "B-PER", "Merkel": "I-PER", "Zürich": "B-LOC"}),
    "ru": ("Москва — столица России .", {"Москва": "B-LOC", "России": "B-LOC"}),
    "ja": ("東京は日本の首都です。", {"東": "B-LOC", "京": "I-LOC", "日": "B-LOC", "本": "I-LOC"}),
    "ar": ("زار محمد القاهرة أمس", {"محمد": "B-PER", "القاهرة": "B-LOC"}),
}
EXPECTED = {"de": [("PER", "Angela Merkel"), ("LOC", "Zürich")], "ru": [("LOC", "Москва"), ("LOC", "России")],
            "ja": [("LOC", "東京"), ("LOC", "日本")], "ar": [("PER", "محمد"), ("LOC", "القاهرة")]}


def conll_block(words_and_tags) -> str:
    return "\n".join(f"{word}\t{tag}" for word, tag in words_and_tags)


def script_cards(folder: Path) -> list[str]:
    """One CoNLL card per language (card `language:` set), the sentence repeated for training."""
    cards = []
    for language, (text, tags) in SENTENCES.items():
        block = conll_block((w, tags.get(w, "O")) for w, _, _ in split_words(text))
        part = folder / language
        part.mkdir(parents=True)
        (part / "train.txt").write_text("\n\n".join([block] * 24) + "\n", encoding="utf-8")
        (part / "dev.txt").write_text(block + "\n", encoding="utf-8")
        cards.append(str(write_card(part, f"toy-{language}", task="token-classification", language=language,
                                    splits={"train": "train.txt", "validation": "dev.txt"}, format="conll")))
    return cards


NAMES = [("John", "Smith"), ("Mary", "Jones"), ("Peter", "Brown"), ("Anna", "Lee")]
PLACES = ["London", "Paris", "Berlin", "Moscow"]


def english_with_misc(folder: Path) -> Path:
    """CoNLL-2003-like: PER, LOC and MISC (which the WikiANN-like cards do not have)."""
    blocks = []
    for first, last in NAMES:
        for place in PLACES:
            blocks.append(conll_block([(first, "B-PER"), (last, "I-PER"), ("visited", "O"), (place, "B-LOC"),
                                       ("with", "O"), ("the", "O"), ("German", "B-MISC"), ("team", "O"), (".", "O")]))
    folder.mkdir(parents=True)
    for name, chosen in (("train.txt", blocks), ("dev.txt", blocks[::4]), ("test.txt", blocks[1::4])):
        (folder / name).write_text("\n\n".join(chosen) + "\n", encoding="utf-8")
    return write_card(folder, "toy-en", task="token-classification", language="en", format="conll",
                      splits={"train": "train.txt", "validation": "dev.txt", "test": "test.txt"})


def wikiann_like(folder: Path, language: str, verb: str, extra_org: bool = False) -> Path:
    """PER/LOC only (no MISC), like WikiANN; ``extra_org`` adds an ORG entity the model has never seen."""
    blocks = []
    for (first, last), place in zip(NAMES, PLACES):
        words = [(first, "B-PER"), (last, "I-PER"), (verb, "O"), (place, "B-LOC"), (".", "O")]
        if extra_org:
            words += [("Siemens", "B-ORG"), ("AG", "I-ORG")]
        blocks.append(conll_block(words))
    folder.mkdir(parents=True)
    (folder / "test.txt").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return write_card(folder, f"toy-wikiann-{language}{'-org' if extra_org else ''}", task="token-classification",
                      language=language, format="conll", splits={"test": "test.txt"})


def mixed_classification_card(folder: Path) -> Path:
    """Sentiment in three languages in one file, with a per-row language column."""
    words = {"en": ("a good film", "a bad film"), "de": ("ein guter Film", "ein schlechter Film"),
             "ru": ("хороший фильм", "плохой фильм")}
    rows = []
    for language, (good, bad) in words.items():
        for i in range(8):
            rows += [(f"{good} {i}", "positive", language), (f"{bad} {i}", "negative", language)]
    folder.mkdir(parents=True)
    text = "sentence\tlabel\tlang\n" + "".join(f"{s}\t{l}\t{g}\n" for s, l, g in rows)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (folder / name).write_text(text, encoding="utf-8")
    return write_card(folder, "toy-sentiment-mixed", format="tsv", text="sentence", label="label",
                      labels=["negative", "positive"], language_column="lang",
                      splits={"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"})


def ner_recipe(card, model, out, **training) -> dict:
    recipe = tiny_recipe(card, model, out, **training)
    recipe.update(task="token-classification", max_length=32)
    return recipe


def weighted_mean(per_language: dict, metric: str) -> float:
    total = sum(v["rows"] for v in per_language.values())
    return sum(v[metric] * v["rows"] for v in per_language.values()) / total


# ---------------------------------------------------------------- sequence classification

def test_classifier_on_a_mixed_language_split_reports_each_language(tiny_xlmr, tmp_path):
    card = mixed_classification_card(tmp_path / "data")
    out = tmp_path / "run"
    recipe = tiny_recipe(card, tiny_xlmr, out, num_train_epochs=3, learning_rate=3e-3)
    recipe["test_split"] = "test"
    metrics = train(recipe).metrics
    per_language = metrics["eval"]["per_language"]
    assert set(per_language) == {"de", "en", "ru"} and all(v["rows"] == 16 for v in per_language.values())
    assert weighted_mean(per_language, "accuracy") == pytest.approx(metrics["eval"]["accuracy"])
    assert set(metrics["test"]["per_language"]) == {"de", "en", "ru"}  # the held-out split too (evaluate)
    rows = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert [r["language"] for r in rows[:2]] == ["en", "en"] and rows[-1]["language"] == "ru"
    assert "| language | rows | accuracy |" in (out / "README.md").read_text()
    predictions = load_model(out).predict(["ein guter Film", "плохой фильм", "東京は日本の首都です。", "مرحبا"])
    assert all(p["label"] in ("negative", "positive") for p in predictions)


def test_language_column_must_exist_and_be_filled(tmp_path):
    from nlp_transfer.data import load_data

    card = mixed_classification_card(tmp_path / "data")
    text = card.read_text().replace("language_column: lang", "language_column: langauge")
    card.write_text(text)
    with pytest.raises(NLPTransferError, match="no language column 'langauge'; did you mean 'lang'"):
        load_data(card)
    card.write_text(text.replace("langauge", "lang"))
    (tmp_path / "data" / "train.tsv").write_text("sentence\tlabel\tlang\ngood\tpositive\t \n")
    with pytest.raises(NLPTransferError, match="train.tsv: line 2: empty language in column 'lang'"):
        load_data(card)


# ---------------------------------------------------------------- token classification

@pytest.fixture(scope="module")
def script_tagger(tiny_xlmr, tmp_path_factory):
    """The XLM-R-style model trained on the four scripts, read as four merged cards."""
    folder = tmp_path_factory.mktemp("scripts")
    cards = script_cards(folder / "data")
    recipe = ner_recipe(cards[0], tiny_xlmr, folder / "run", num_train_epochs=12, learning_rate=1e-2,
                        per_device_train_batch_size=8)
    recipe["data"] = cards
    return folder / "run", cards, train(recipe).metrics


def test_ner_on_merged_cards_scores_each_language(script_tagger):
    _, _, metrics = script_tagger
    per_language = metrics["eval"]["per_language"]
    assert set(per_language) == {"de", "ru", "ja", "ar"} and all(v["rows"] == 1 for v in per_language.values())
    assert all(v["f1"] == 1.0 for v in per_language.values())  # memorised: every language's entities found
    assert metrics["rows"] == {"train": 96, "validation": 4}


def test_entity_offsets_from_the_trained_xlmr_tagger_in_four_scripts(script_tagger):
    out, _, _ = script_tagger
    tagger = load_model(out)
    texts = [text for text, _ in SENTENCES.values()]
    for (language, expected), found in zip(EXPECTED.items(), tagger.predict(texts)):
        text = SENTENCES[language][0]
        assert [(e["type"], e["text"]) for e in found] == expected, language
        assert all(text[e["start"]:e["end"]] == e["text"] for e in found)
    # CJK without spaces: each character is a word, and the entity spans two of them
    [tokyo, _] = tagger.predict("東京は日本の首都です。")
    assert (tokyo["start"], tokyo["end"], tokyo["words"]) == (0, 2, [0, 2])


def test_evaluate_on_several_cards_reports_each_language(script_tagger):
    out, cards, _ = script_tagger
    result = evaluate(out, cards[:2], "validation")
    assert result["data"] == "toy-de+toy-ru" and result["rows"] == 2
    assert set(result["per_language"]) == {"de", "ru"}
    single = evaluate(out, cards[0], "validation")
    assert "per_language" not in single  # one language: nothing to split


def test_embed_reads_the_fine_tuned_xlmr_folder_and_keeps_input_order(script_tagger):
    out, _, _ = script_tagger
    texts = [text for text, _ in SENTENCES.values()]
    vectors = embed(str(out), texts + texts[::-1], pooling="mean", normalize=True)
    assert vectors.shape == (8, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[:4], vectors[4:][::-1], atol=1e-5)  # same text, same vector, any batch


# ---------------------------------------------------------------- label_map and eval_sets

@pytest.fixture(scope="module")
def crosslingual_run(tiny_xlmr, tmp_path_factory):
    """Trained on English with MISC mapped to O; German and Dutch WikiANN-like sets scored at the end."""
    folder = tmp_path_factory.mktemp("crosslingual")
    english = english_with_misc(folder / "en")
    german = wikiann_like(folder / "de", "de", "besuchte")
    dutch = wikiann_like(folder / "nl", "nl", "bezocht")
    recipe = ner_recipe(english, tiny_xlmr, folder / "run", num_train_epochs=4, learning_rate=5e-3)
    recipe.update(label_map={"MISC": "O"}, test_split="test",
                  eval_sets={"de": {"data": str(german), "split": "test"}, "de+nl": {"data": [str(german), str(dutch)]}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", EntityTypeMismatchWarning)  # PER/LOC on both sides: nothing to warn about
        result = train(recipe)
    return folder, result


def test_label_map_drops_misc_from_training_and_the_model(crosslingual_run):
    folder, result = crosslingual_run
    config = json.loads((folder / "run" / "config.json").read_text())
    assert set(config["id2label"].values()) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
    rows = [json.loads(line) for line in (folder / "run" / "predictions_validation.jsonl").read_text().splitlines()]
    assert all("B-MISC" not in r["tags"] and "B-MISC" not in r["predicted"] for r in rows)
    assert set(result.metrics["eval"]["per_type"]) <= {"PER", "LOC"} and result.metrics["test"]["rows"] == 4
    # the run's label_map is stored and `evaluate` applies it to English data with MISC by default
    assert evaluate(folder / "run", folder / "en" / "toy-en.md", "test")["f1"] == result.metrics["test"]["f1"]


def test_eval_sets_are_scored_once_and_reported(crosslingual_run):
    folder, result = crosslingual_run
    sets = result.metrics["eval_sets"]
    assert list(sets) == ["de", "de+nl"]
    assert sets["de"]["data"] == "toy-wikiann-de" and sets["de"]["split"] == "test" and sets["de"]["rows"] == 4
    assert 0.0 <= sets["de"]["f1"] <= 1.0 and "per_language" not in sets["de"]
    assert set(sets["de+nl"]["per_language"]) == {"de", "nl"} and sets["de+nl"]["rows"] == 8
    assert sets["de+nl"]["per_language"]["de"]["f1"] == pytest.approx(sets["de"]["f1"])
    saved = json.loads((folder / "run" / "metrics.json").read_text())
    assert saved["eval_sets"] == json.loads(json.dumps(sets))
    card = (folder / "run" / "README.md").read_text()
    assert "## Results on `de+nl` (`toy-wikiann-de+toy-wikiann-nl`, split `test`" in card
    assert "MISC → O" in card


def test_entity_types_only_the_data_has_are_left_out_with_one_warning(crosslingual_run):
    folder, _ = crosslingual_run
    with_org = wikiann_like(folder / "de-org", "de", "besuchte", extra_org=True)
    with pytest.warns(EntityTypeMismatchWarning) as caught:
        result = evaluate(folder / "run", with_org, "test")
    assert len(caught) == 1
    assert "gold ORG (4) entities count as O" in str(caught[0].message)
    assert result["types"] == {"scored": ["LOC", "PER"], "data_only": {"ORG": 4}, "model_only": {}}
    assert "ORG" not in result["per_type"]  # not a miss: left out of the scores
    plain = evaluate(folder / "run", folder / "de" / "toy-wikiann-de.md", "test")
    assert result["f1"] == pytest.approx(plain["f1"])  # the same sentences without ORG score the same


def test_shared_type_scoring_ignores_types_on_either_side():
    gold = [["B-PER", "I-PER", "O", "B-DATE"], ["B-LOC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "B-MISC"]]
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    with pytest.warns(EntityTypeMismatchWarning, match=r"gold DATE \(1\).*predicted MISC \(1\) entities are ignored"):
        gold2, predicted2, types = score_on_shared_types(gold, predicted, {"PER", "LOC", "DATE"}, labels, "toy")
    assert gold2 == [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O"]] and predicted2 == gold2
    assert types == {"scored": ["LOC", "PER"], "data_only": {"DATE": 1}, "model_only": {"MISC": 1}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert score_on_shared_types(gold2, predicted2, {"PER", "LOC"}, labels[:5], "toy")[2] is None


def test_label_map_renames_types_and_checks_its_keys(tmp_path):
    from nlp_transfer.config import load_recipe
    from nlp_transfer.data import load_data

    card = english_with_misc(tmp_path / "en")
    data = load_data(card, ["train"], label_map={"MISC": "NORP", "LOC": "GPE"})
    assert data.label_names == ["O", "B-GPE", "I-GPE", "B-NORP", "I-NORP", "B-PER", "I-PER"]
    with pytest.warns(UserWarning, match="label_map key 'MSIC' matches no entity type.*did you mean 'MISC'"):
        load_data(card, ["train"], label_map={"MSIC": "O"})
    base = {"task": "token-classification", "data": str(card)}
    with pytest.raises(NLPTransferError, match="write the entity type 'MISC', not the tag 'B-MISC'"):
        load_recipe({**base, "label_map": {"B-MISC": "O"}})
    with pytest.raises(NLPTransferError, match="applies to token-classification recipes only"):
        load_recipe({**base, "task": "sequence-classification", "label_map": {"MISC": "O"}})
    assert load_recipe(base, ["label_map.MISC=O"]).label_map == {"MISC": "O"}  # a command-line override


def test_eval_sets_accept_a_list_or_a_mapping(tmp_path):
    from nlp_transfer.config import load_recipe

    base = {"data": "x.md"}
    listed = load_recipe({**base, "eval_sets": ["cards/wikiann_de.md", {"data": "cards/wikiann_nl.md", "split": "dev"},
                                                {"data": ["a.md", "b.md"], "name": "both"}]}).eval_sets
    assert listed == {"wikiann_de-test": {"data": "cards/wikiann_de.md", "split": "test"},
                      "wikiann_nl-dev": {"data": "cards/wikiann_nl.md", "split": "dev"},
                      "both": {"data": ["a.md", "b.md"], "split": "test"}}
    mapped = load_recipe({**base, "eval_sets": {"german": "cards/wikiann_de.md"}}, ["eval_sets.german.split=dev"])
    assert mapped.eval_sets == {"german": {"data": "cards/wikiann_de.md", "split": "dev"}}
    with pytest.raises(NLPTransferError, match="unknown key 'eval_sets.german.splt'; did you mean 'eval_sets.german.split'"):
        load_recipe({**base, "eval_sets": {"german": {"data": "a.md", "splt": "test"}}})
    with pytest.raises(NLPTransferError, match="two sets are named 'a-test'"):
        load_recipe({**base, "eval_sets": ["a.md", "x/a.md"]})


def test_a_missing_eval_set_card_or_split_fails_before_training(tiny_xlmr, tmp_path, capsys):
    from nlp_transfer.cli import main

    english = english_with_misc(tmp_path / "en")
    wikiann_like(tmp_path / "cards", "de", "besuchte")
    typo = str(tmp_path / "cards" / "toy-wikiann-dd.md")
    recipe = ner_recipe(english, tiny_xlmr, tmp_path / "run", max_steps=2)
    with pytest.raises(NLPTransferError, match=r"eval_sets.german: data card '.*toy-wikiann-dd.md' not found; "
                                               r"did you mean '.*toy-wikiann-de.md'\?"):
        train({**recipe, "eval_sets": {"german": typo}})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**recipe, "eval_sets": [{"data": typo.replace("dd", "de"), "split": "tset"}]}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no split 'tset'; did you mean 'test'?" in err[0]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- strategies and masked-LM on XLM-R

def test_last_n_on_xlmr_freezes_embeddings_and_the_lower_layer_bit_for_bit(tiny_xlmr, tmp_path):
    from transformers import AutoModel, AutoModelForSequenceClassification

    from nlp_transfer.strategies import layer_map

    card = mixed_classification_card(tmp_path / "data")
    before = {k: v.clone() for k, v in AutoModel.from_pretrained(tiny_xlmr).state_dict().items()}
    recipe = tiny_recipe(card, tiny_xlmr, tmp_path / "run", max_steps=6, learning_rate=1e-2)
    recipe["strategy"] = {"name": "last-n", "n": 1}
    metrics = train(recipe).metrics
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    mapped = layer_map(model)
    assert mapped.embeddings is model.roberta.embeddings and len(mapped.layers) == 2
    after = {k.removeprefix("roberta."): v for k, v in model.state_dict().items()}
    frozen = [k for k in before if k.startswith(("embeddings.", "encoder.layer.0."))]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert not torch.equal(after["encoder.layer.1.attention.self.query.weight"],
                           before["encoder.layer.1.attention.self.query.weight"])
    top = sum(v.numel() for k, v in before.items() if k.startswith("encoder.layer.1."))
    head = sum(p.numel() for p in model.classifier.parameters())  # XLM-R's head: dense + out_proj, no pooler
    assert metrics["params"]["trainable"] == top + head


def test_lora_on_xlmr_targets_query_and_value(tiny_xlmr, tmp_path):
    card = mixed_classification_card(tmp_path / "data")
    recipe = tiny_recipe(card, tiny_xlmr, tmp_path / "run", max_steps=4, learning_rate=1e-2)
    recipe["strategy"] = {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0}
    metrics = train(recipe).metrics
    adapter = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["query", "value"]  # peft's default for xlm-roberta
    head = 32 * 32 + 32 + 32 * 2 + 2
    assert metrics["params"]["trainable"] == 2 * 2 * (4 * 32 + 32 * 4) + head
    assert load_model(tmp_path / "run").predict(["ein guter Film"])[0]["label"] in ("negative", "positive")


def test_masked_lm_on_xlmr_lowers_held_out_loss(tiny_xlmr, tmp_path):
    texts = [text for text, _ in SENTENCES.values()] + ["Der Hund läuft schnell über die Straße .", "café naïve résumé"]
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "train.tsv").write_text("text\n" + "\n".join(texts * 12) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("text\n" + "\n".join(texts) + "\n", encoding="utf-8")
    card = write_card(folder, "toy-text", task="text", format="tsv", splits={"train": "train.tsv", "validation": "dev.tsv"})
    recipe = tiny_recipe(card, tiny_xlmr, tmp_path / "mlm", num_train_epochs=3, learning_rate=5e-3)
    recipe.update(task="masked-lm", mlm_probability=0.3)
    metrics = train(recipe).metrics
    assert metrics["eval"]["loss"] < metrics["eval_before"]["loss"]


# ---------------------------------------------------------------- the multilingual-e5-small alias

def test_e5_alias_resolves_to_the_built_folder_or_says_how_to_build_it(tmp_path, monkeypatch):
    from nlp_transfer import models

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "REPO_ROOT", tmp_path / "elsewhere")
    with pytest.raises(NLPTransferError) as caught:
        models.resolve("multilingual-e5-small")
    message = str(caught.value)
    assert "\n" not in message and "python -m benchmarks.build_multilingual_e5" in message
    assert "intfloat/multilingual-e5-small" in message
    built = tmp_path / "models" / "multilingual-e5-small"
    built.mkdir(parents=True)
    (built / "config.json").write_text("{}")
    assert Path(models.resolve("multilingual-e5-small")) == Path("models/multilingual-e5-small").absolute()
