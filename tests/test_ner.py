"""Token classification: alignment for three tokenizer kinds, windows, entity spans, training, pipeline."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_recipe
from transformers import AutoTokenizer

from nlp_transfer import evaluate, load_model, train
from nlp_transfer.models import load_tokenizer
from nlp_transfer.tasks.ner import IGNORE, WindowMerger, align_labels, entities, split_words, tokenize_words

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
WORDS = ["Angela", "Merkel", "visited", "Reykjavík", "yesterday", "."]
TAGS = [3, 4, 0, 1, 0, 0]


@pytest.fixture(params=["tiny_bert", "tiny_xlmr", "tiny_roberta"])
def tokenizer(request):
    return load_tokenizer(str(request.getfixturevalue(request.param)), for_words=True)


def test_first_subword_carries_the_word_label_and_the_rest_are_ignored(tokenizer):
    encoded = tokenizer(WORDS, is_split_into_words=True)
    word_ids = encoded.word_ids()
    labels = align_labels(word_ids, TAGS, LABELS)
    seen = set()
    for word, label in zip(word_ids, labels):
        if word is None:
            assert label == IGNORE
        elif word not in seen:
            assert label == TAGS[word]
            seen.add(word)
        else:
            assert label == IGNORE
    assert seen == set(range(len(WORDS)))  # every word got its label once
    assert any(w is not None and word_ids.count(w) > 1 for w in word_ids)  # some word really has several pieces


def test_all_subwords_mode_continues_entities_with_inside_tags(tokenizer):
    encoded = tokenizer(WORDS, is_split_into_words=True)
    word_ids = encoded.word_ids()
    labels = align_labels(word_ids, TAGS, LABELS, label_all_subwords=True)
    for position, (word, label) in enumerate(zip(word_ids, labels)):
        if word is None:
            continue
        first = word_ids.index(word) == position
        expected = TAGS[word] if first or LABELS[TAGS[word]] == "O" else LABELS.index("I-" + LABELS[TAGS[word]][2:])
        assert label == expected


def test_byte_level_tokenizer_sees_words_as_in_running_text(tiny_roberta):
    plain = AutoTokenizer.from_pretrained(tiny_roberta)
    tokenizer = load_tokenizer(str(tiny_roberta), for_words=True)

    def pieces(tok, value, **kwargs):
        return tok.convert_ids_to_tokens(tok(value, **kwargs)["input_ids"])

    running = pieces(tokenizer, " " + " ".join(WORDS))
    assert pieces(tokenizer, WORDS, is_split_into_words=True) == running
    # without add_prefix_space the words lose their leading-space marker and become other tokens
    assert pieces(plain, WORDS, is_split_into_words=True) != running


def test_words_with_zero_pieces_get_no_label_but_still_a_tag(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert), for_words=True)
    words = ["Paris", "\u200b", "is", "\x07", "big"]  # zero-width space and a control character vanish
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    assert 1 not in word_ids and 3 not in word_ids
    merger = WindowMerger([len(words)])
    scores = np.tile(np.array([0.1, 0.9, 0.0, 0.0, 0.0]), (len(word_ids), 1))
    merger.add(0, [-1 if w is None else w for w in word_ids], scores)
    tags = merger.word_scores(0, len(LABELS)).argmax(-1)
    assert len(tags) == len(words) and tags[1] == 0 and tags[3] == 0  # uncovered words: O
    assert tags[0] == 1


def test_long_sentence_is_windowed_and_every_word_comes_back_once(tiny_xlmr):
    tokenizer = load_tokenizer(str(tiny_xlmr), for_words=True)
    words = ("Der Hund läuft schnell über die Straße nach Berlin und Москва".split() * 8)
    encoded = tokenize_words(tokenizer, [words], max_length=24, stride=6)
    ids = encoded.column("input_ids")
    assert len(ids) > 3 and all(len(window) <= 24 for window in ids)
    covered = {w for window in encoded.word_ids for w in window if w is not None}
    assert covered == set(range(len(words)))


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_word_windows_rebuild_the_whole_sentence_whatever_the_tokenizers_version(kind, tiny_bert, tiny_xlmr):
    """Windows are cut from the token ids (data.windows), so with the overlap taken out they give back exactly the
    sentence's subwords and word indexes; tokenizers' own overflow windows dropped tokens in some versions."""
    tokenizer = load_tokenizer(str(tiny_bert if kind == "bert" else tiny_xlmr), for_words=True)
    words = ("Der Hund läuft schnell über die Straße nach Berlin und Москва".split() * 9)
    stride = 5
    encoded = tokenize_words(tokenizer, [words], max_length=20, stride=stride)
    whole = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    content, word_ids = [], []
    for row, positions in zip(encoded.rows, encoded.word_ids):
        inner = [(i, w) for i, w in zip(row["input_ids"], positions) if w is not None]
        assert row["input_ids"][0] == tokenizer.cls_token_id and row["input_ids"][-1] == tokenizer.sep_token_id
        start = stride if content else 0
        content += [i for i, _ in inner][start:]
        word_ids += [w for _, w in inner][start:]
    assert content == whole["input_ids"] and word_ids == whole.word_ids()
    assert len(encoded.rows) >= 4 and encoded.owners == [0] * len(encoded.rows)


def test_entity_offsets_index_the_input_text_in_several_scripts():
    text = "Angela Merkel visited Paris. Москва — столица России. 東京は首都です。 مرحبا بالعالم café"
    words = split_words(text)
    assert all(text[start:end] == word for word, start, end in words)
    names = [w for w, _, _ in words]
    tags = ["O"] * len(words)
    for i, name in enumerate(names):
        if name in ("Angela", "Москва", "東", "مرحبا"):
            tags[i] = "B-PER" if name == "Angela" else "B-LOC"
        if name in ("Merkel", "京", "بالعالم"):
            tags[i] = "I-PER" if name == "Merkel" else "I-LOC"
    spans = entities(names, tags, [1.0] * len(words), [(s, e) for _, s, e in words], text)
    assert [(e["type"], e["text"]) for e in spans] == [("PER", "Angela Merkel"), ("LOC", "Москва"), ("LOC", "東京"),
                                                       ("LOC", "مرحبا بالعالم")]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in spans)


def test_ner_run_writes_per_type_metrics_predictions_and_held_out_test(conll_toy, tiny_bert, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(conll_toy, tiny_bert, out, num_train_epochs=2, learning_rate=3e-3)
    recipe.update(task="token-classification", test_split="test", max_length=32)
    result = train(recipe)
    metrics = result.metrics
    assert metrics["main_metric"] == "f1"
    assert set(metrics["eval"]["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
    assert 0.0 <= metrics["eval"]["f1"] <= 1.0 and metrics["eval"]["accuracy"] > 0.5
    assert metrics["test"]["rows"] == 60 and "per_type" in metrics["test"]
    rows = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(rows) == 60
    assert all(len(r["tokens"]) == len(r["tags"]) == len(r["predicted"]) for r in rows)
    # the merged-window evaluation of the saved model reproduces the training run's streamed one
    again = evaluate(out, conll_toy, "validation")
    assert again["f1"] == pytest.approx(metrics["eval"]["f1"]) and again["accuracy"] == pytest.approx(metrics["eval"]["accuracy"])
    config = json.loads((out / "config.json").read_text())
    assert set(config["id2label"].values()) == {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"}


def test_windowed_prediction_tags_every_word_of_a_sentence_longer_than_max_length(conll_toy, tiny_xlmr, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(conll_toy, tiny_xlmr, out, num_train_epochs=1, learning_rate=3e-3)
    recipe.update(task="token-classification", max_length=16, stride=4)
    train(recipe)
    tagger = load_model(out)
    long_sentence = "Peter Blackburn of the European Commission said in Brussels on Thursday that Germany".split() * 5
    [result] = tagger.predict_tokens([long_sentence])
    assert len(result["tags"]) == len(long_sentence)
    assert all(t == "O" or t[:2] in ("B-", "I-") for t in result["tags"])
    text = "Москва — столица России, а Peter Blackburn живёт в Brussels."
    for entity in tagger.predict(text):
        assert text[entity["start"]:entity["end"]] == entity["text"]


def test_pipeline_loads_the_tagger_with_entity_names(conll_toy, tiny_bert, tmp_path):
    from transformers import pipeline

    out = tmp_path / "run"
    recipe = tiny_recipe(conll_toy, tiny_bert, out, num_train_epochs=3, learning_rate=3e-3)
    recipe.update(task="token-classification")
    train(recipe)
    text = "EU rejects German call to boycott British lamb . LONDON 1996-08-30"
    # ignore_labels=[] keeps "O" too, so the check does not depend on what a tiny model finds
    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="simple", ignore_labels=[])
    groups = {e["entity_group"] for e in tagger(text)}
    assert groups and groups <= {"O", "PER", "ORG", "LOC", "MISC"}
    raw = pipeline("token-classification", model=str(out), ignore_labels=[])
    tags = {e["entity"] for e in raw(text)}
    assert tags <= {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"}


def test_cli_predict_writes_entities_for_text_and_tags_for_conll(conll_toy, tiny_bert, tmp_path, capsys):
    from nlp_transfer.cli import main

    out = tmp_path / "run"
    recipe = tiny_recipe(conll_toy, tiny_bert, out, max_steps=4)
    recipe.update(task="token-classification")
    train(recipe)
    texts = tmp_path / "texts.txt"
    texts.write_text("Peter Blackburn visited Brussels .\nEU rejects German call\n")
    assert main(["predict", str(out), "--input", str(texts), "--output", str(tmp_path / "ents.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "ents.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == texts.read_text().splitlines()
    for row in rows:
        assert all(row["text"][e["start"]:e["end"]] == e["text"] for e in row["entities"])

    words = tmp_path / "words.conll"
    words.write_text("Peter B-PER\nBlackburn I-PER\n\nEU B-ORG\nrejects O\nGerman B-MISC\n")
    target = tmp_path / "tags.conll"
    assert main(["predict", str(out), "--input", str(words), "--output", str(target), "--strategy", "average"]) == 0
    blocks = [b.splitlines() for b in target.read_text().strip().split("\n\n")]
    assert [[line.split("\t")[0] for line in b] for b in blocks] == [["Peter", "Blackburn"], ["EU", "rejects", "German"]]
    assert all(line.split("\t")[1] in ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
               for b in blocks for line in b)
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(texts), "--output", str(tmp_path / "x.conll")]) == 2
    assert "CoNLL output needs pre-tokenized CoNLL input" in capsys.readouterr().err


def _ner_card(tmp_path, train_text: str, **front):
    from conftest import write_card

    (tmp_path / "train.txt").write_text(train_text, encoding="utf-8")
    return write_card(tmp_path, "bad-ner", task="token-classification", splits={"train": "train.txt"},
                      format="conll", **front)


@pytest.mark.parametrize("content, front, expected", [
    ("EU NNP B-ORG\nrejects VBZ\n", {}, "train.txt: line 2: expected 3 columns"),
    ("EU B-ORG\nrejects O\n", {"labels": ["O", "B-PER", "I-PER"]}, "train.txt: line 1"),
    ("\n\n\n", {}, "train.txt: no sentences"),
], ids=["wrong-column-count", "tag-not-in-labels", "no-sentences"])
def test_bad_ner_files_stop_the_cli_with_one_line(tmp_path, tiny_bert, capsys, content, front, expected):
    import yaml

    from nlp_transfer.cli import main

    card = _ner_card(tmp_path, content, **front)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"task": "token-classification", "data": str(card), "model": str(tiny_bert),
                                      "output_dir": str(tmp_path / "out")}))
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert not (tmp_path / "out").exists()


def test_inside_tag_after_outside_is_repaired_warned_and_counted(tmp_path, tiny_bert):
    from nlp_transfer.data.conll import TagRepairWarning

    text = "EU B-ORG\nrejects O\nGerman I-MISC\ncall O\n\nPeter I-PER\nBlackburn I-PER\n\n" * 20
    card = _ner_card(tmp_path, text, scheme="IOB2")
    (tmp_path / "valid.txt").write_text(text)
    with pytest.warns(TagRepairWarning, match="repaired 40 I- tags"):
        result = train(tiny_recipe(card, tiny_bert, tmp_path / "run", max_steps=2) | {"task": "token-classification"})
    assert result.metrics["repaired_tags"] == {"train": 40}


def test_token_cards_read_jsonl_and_datasets_classlabel_sequences(tmp_path):
    import datasets
    from conftest import write_card

    from nlp_transfer.data import load_data

    rows = [{"tokens": ["Peter", "Blackburn", "visited", "Brussels"], "tags": ["I-PER", "I-PER", "O", "I-LOC"]},
            {"tokens": ["EU", "rejects"], "tags": ["I-ORG", "O"]}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    card = write_card(tmp_path, "jsonl-ner", task="token-classification", splits={"train": "train.jsonl"}, scheme="IOB1")
    data = load_data(card)
    names = data.label_names
    assert [names[t] for t in data.splits["train"][0]["tags"]] == ["B-PER", "I-PER", "O", "B-LOC"]  # IOB1 -> IOB2

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-LOC", "I-LOC"]))})
    saved = datasets.Dataset.from_dict({"tokens": [["in", "New", "York"]], "ner_tags": [[0, 1, 2]]}, features=features)
    saved.save_to_disk(str(tmp_path / "ds"))
    card = write_card(tmp_path, "ds-ner", task="token-classification", splits={"train": "ds"}, format="datasets",
                      label="ner_tags")
    data = load_data(card)
    assert [data.label_names[t] for t in data.splits["train"][0]["tags"]] == ["O", "B-LOC", "I-LOC"]
