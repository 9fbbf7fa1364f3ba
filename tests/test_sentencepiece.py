"""A model whose only tokenizer file is a SentencePiece ``.model`` (no tokenizer.json): transformers converts it to
a fast tokenizer, which tokenizes like SentencePiece itself, aligns NER labels and trains (``spm_xlmr`` fixture)."""
from __future__ import annotations

import json

import pytest
from conftest import corpus, tiny_recipe

from nlp_transfer import load_model, train
from nlp_transfer.models import load_tokenizer
from nlp_transfer.tasks.ner import IGNORE, align_labels

spm = pytest.importorskip("sentencepiece", reason="sentencepiece (a declared dependency) is not installed here")

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
WORDS = ["Angela", "Merkel", "visited", "Reykjavík", "yesterday", "."]
TAGS = [3, 4, 0, 1, 0, 0]


def test_a_folder_with_only_the_model_file_loads_as_a_fast_tokenizer(spm_xlmr):
    assert sorted(p.name for p in spm_xlmr.iterdir()) == ["config.json", "model.safetensors",
                                                          "sentencepiece.bpe.model", "tokenizer_config.json"]
    tokenizer = load_tokenizer(str(spm_xlmr))
    assert tokenizer.is_fast
    config = json.loads((spm_xlmr / "config.json").read_text())
    assert len(tokenizer) == config["vocab_size"]  # every id the tokenizer makes has an embedding row
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.mask_token_id == config["vocab_size"] - 1


def test_tokens_match_sentencepiece_and_decoding_round_trips(spm_xlmr):
    tokenizer = load_tokenizer(str(spm_xlmr))
    processor = spm.SentencePieceProcessor(model_file=str(spm_xlmr / "sentencepiece.bpe.model"))
    texts = corpus()[::10]
    assert len(texts) > 150 and any(not t.isascii() for t in texts)
    for text in texts:
        encoded = tokenizer(text, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        assert (ids[0], ids[-1]) == (tokenizer.bos_token_id, tokenizer.eos_token_id)
        pieces = tokenizer.convert_ids_to_tokens(ids[1:-1])
        assert pieces == processor.encode(text, out_type=str), text
        # XLM-R's fairseq layout: every SentencePiece id moves up by one (<pad> is inserted at 1)
        assert ids[1:-1] == [i + 1 if i else tokenizer.unk_token_id for i in processor.encode(text)], text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
        for start, end in encoded["offset_mapping"][1:-1]:
            assert 0 <= start <= end <= len(text)


def test_ner_labels_go_to_the_first_piece_of_each_word(spm_xlmr):
    tokenizer = load_tokenizer(str(spm_xlmr), for_words=True)
    word_ids = tokenizer(WORDS, is_split_into_words=True).word_ids()
    labels = align_labels(word_ids, TAGS, LABELS)
    firsts = [i for i, w in enumerate(word_ids) if w is not None and w != (word_ids[i - 1] if i else None)]
    assert [word_ids[i] for i in firsts] == list(range(len(WORDS)))
    assert [labels[i] for i in firsts] == TAGS
    assert all(label == IGNORE for i, label in enumerate(labels) if i not in firsts)
    assert any(word_ids.count(w) > 1 for w in range(len(WORDS)))  # some word really has several pieces


def test_token_classification_trains_and_tags_every_word(conll_toy, spm_xlmr, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(conll_toy, spm_xlmr, out, num_train_epochs=1, learning_rate=3e-3)
    recipe.update(task="token-classification", max_length=32)
    result = train(recipe)
    assert "f1" in json.dumps(result.metrics["eval"])
    tagger = load_model(out)
    sentences = [["Peter", "Blackburn", "of", "the", "European", "Commission", "said", "in", "Brussels"],
                 "Москва — столица России , а Peter живёт в Reykjavík .".split()]
    results = tagger.predict_tokens(sentences)
    assert [len(r["tags"]) for r in results] == [len(s) for s in sentences]
    assert all(t == "O" or t[:2] in ("B-", "I-") for r in results for t in r["tags"])


def test_sequence_classification_trains_loads_and_predicts(sst2_toy, spm_xlmr, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_recipe(sst2_toy, spm_xlmr, out, num_train_epochs=1))
    assert 0.0 <= result.metrics["eval"]["accuracy"] <= 1.0
    model = load_model(out)
    predictions = model.predict(["a charming and moving film .", "dull , lifeless and far too long ."])
    assert [p["label"] in ("negative", "positive") for p in predictions] == [True, True]
    # the run folder's tokenizer is the converted one: it tokenizes exactly like the .model-only original
    saved, original = load_tokenizer(str(out)), load_tokenizer(str(spm_xlmr))
    text = "café naïve résumé : a film about Москва"
    assert saved(text)["input_ids"] == original(text)["input_ids"]
