"""Rows -> model inputs: tokenization without padding, dynamic padding, length-sorted batches and
sliding windows for inference, checked on both tiny tokenizers (WordPiece BERT, Unigram XLM-R).

Everything uses the real tokenizers built in conftest and real sentences from the shipped SST-2 sample.
"""
from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from conftest import REPO

from nlp_transfer.data.adapters import (
    DynamicPaddingCollator,
    encode_for_prediction,
    length_sorted_batches,
    tokenize_dataset,
)
from nlp_transfer.data.readers import load_data

DEV_TSV = REPO / "samples/sst2/dev.tsv"
MULTI_SCRIPT = [
    "café naïve résumé",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "مرحبا بالعالم",
    "Der Hund läuft schnell über die Straße.",
]


@pytest.fixture(scope="module", params=["bert", "xlmr"])
def tok(request):
    """(kind, tokenizer) for each of the two tokenizer families."""
    from transformers import AutoTokenizer

    path = request.getfixturevalue("tiny_bert" if request.param == "bert" else "tiny_xlmr")
    return request.param, AutoTokenizer.from_pretrained(path)


def dev_sentences(count: int) -> list[str]:
    lines = DEV_TSV.read_text(encoding="utf-8").splitlines()[1:]
    return [line.rsplit("\t", 1)[0].strip() for line in lines[:count]]


def expected_columns(kind: str) -> set[str]:
    inputs = {"input_ids", "attention_mask"} | ({"token_type_ids"} if kind == "bert" else set())
    return inputs | {"labels", "length"}


def specials(kind: str, tokenizer) -> tuple[int, int]:
    """(first, separator) token ids: [CLS]/[SEP] for BERT, <s>/</s> for XLM-R."""
    if kind == "bert":
        return tokenizer.convert_tokens_to_ids("[CLS]"), tokenizer.convert_tokens_to_ids("[SEP]")
    return tokenizer.convert_tokens_to_ids("<s>"), tokenizer.convert_tokens_to_ids("</s>")


def content_ids(tokenizer, text: str) -> list[int]:
    """The text's token ids without any special tokens and without truncation."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------ tokenize_dataset

def test_tokenize_dataset_keeps_only_model_inputs_labels_and_length(tok):
    kind, tokenizer = tok
    texts = dev_sentences(6)
    ds = datasets.Dataset.from_dict({"text": texts, "label": [1, 0, 1, 1, 0, 0], "line": list(range(2, 8))})
    out = tokenize_dataset(ds, tokenizer, max_length=64)
    assert set(out.column_names) == expected_columns(kind)
    assert out["labels"] == [1, 0, 1, 1, 0, 0]
    assert len(out) == len(texts)


def test_tokenize_dataset_does_not_pad_and_length_counts_tokens(tok):
    kind, tokenizer = tok
    texts = ["good", "a much longer sentence about a charming and often affecting journey ."]
    ds = datasets.Dataset.from_dict({"text": texts, "label": [1, 0], "line": [2, 3]})
    out = tokenize_dataset(ds, tokenizer, max_length=64)
    ids = out["input_ids"]
    assert len(ids[0]) < len(ids[1])
    assert out["length"] == [len(ids[0]), len(ids[1])]
    assert tokenizer.pad_token_id not in ids[0] and tokenizer.pad_token_id not in ids[1]
    assert all(all(m == 1 for m in mask) for mask in out["attention_mask"])


def test_tokenize_dataset_truncates_to_max_length_and_frames_with_special_tokens(tok):
    kind, tokenizer = tok
    long_text = " ".join(dev_sentences(8))
    short_text = dev_sentences(1)[0]
    ds = datasets.Dataset.from_dict({"text": [long_text, short_text], "label": [0, 1], "line": [2, 3]})
    out = tokenize_dataset(ds, tokenizer, max_length=16)
    first, sep = specials(kind, tokenizer)
    assert len(content_ids(tokenizer, long_text)) > 16
    long_ids, short_ids = out["input_ids"]
    assert len(long_ids) == 16 and out["length"][0] == 16
    for ids in (long_ids, short_ids):
        assert ids[0] == first and ids[-1] == sep
        assert ids.count(first) == 1 and ids.count(sep) == 1
    # truncation keeps the beginning of the text
    assert long_ids[1:-1] == content_ids(tokenizer, long_text)[:14]


def test_tokenize_dataset_encodes_both_segments_of_a_pair(tok):
    kind, tokenizer = tok
    ds = datasets.Dataset.from_dict({
        "text": ["the movie was good", "bleak"], "text_pair": ["i liked it", "and desperate"],
        "label": [1, 0], "line": [2, 3]})
    out = tokenize_dataset(ds, tokenizer, max_length=64)
    assert set(out.column_names) == expected_columns(kind)
    first, sep = specials(kind, tokenizer)
    for i, (a, b) in enumerate(zip(ds["text"], ds["text_pair"])):
        ids = out["input_ids"][i]
        a_ids, b_ids = content_ids(tokenizer, a), content_ids(tokenizer, b)
        if kind == "bert":
            assert ids == [first, *a_ids, sep, *b_ids, sep]
            types = out["token_type_ids"][i]
            assert types == [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1)
        else:
            assert ids == [first, *a_ids, sep, sep, *b_ids, sep]
        assert out["length"][i] == len(ids)


def test_tokenize_dataset_on_real_sst2_split(tok, sst2_toy):
    kind, tokenizer = tok
    split = load_data(sst2_toy).splits["validation"]
    out = tokenize_dataset(split, tokenizer, max_length=32)
    assert set(out.column_names) == expected_columns(kind)
    assert out["labels"] == split["label"]
    assert all(n == len(ids) <= 32 for n, ids in zip(out["length"], out["input_ids"]))
    assert len(set(out["length"])) > 3  # real sentences vary in length: nothing was padded


# ------------------------------------------------------------------ DynamicPaddingCollator

def features(tokenizer, texts, labels):
    rows = []
    for text, label in zip(texts, labels):
        enc = dict(tokenizer(text, truncation=True, max_length=64))
        rows.append({**enc, "labels": label, "length": len(enc["input_ids"])})
    return rows


def test_collator_pads_to_longest_row_in_batch_and_masks_padding(tok):
    kind, tokenizer = tok
    texts = ["good", "unflinchingly bleak and desperate", "it 's a charming and often affecting journey ."]
    rows = features(tokenizer, texts, [1, 0, 1])
    longest = max(r["length"] for r in rows)
    batch = DynamicPaddingCollator(tokenizer)(rows)
    assert "length" not in batch
    assert batch["input_ids"].shape == (3, longest)  # longest in the batch, not max_length=64
    for i, row in enumerate(rows):
        n = row["length"]
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
        assert batch["input_ids"][i, n:].eq(tokenizer.pad_token_id).all()
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (longest - n)
    assert ("token_type_ids" in batch) == (kind == "bert")
    assert batch["labels"].tolist() == [1, 0, 1]
    assert batch["labels"].dtype == torch.long


def test_collator_keeps_multi_hot_float_labels(tok):
    _, tokenizer = tok
    rows = features(tokenizer, ["good fun", "bleak"], [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    batch = DynamicPaddingCollator(tokenizer)(rows)
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_collator_rounds_length_up_to_multiple_of_8(tok):
    _, tokenizer = tok
    # pick a real sentence whose token count is not already a multiple of 8
    long_text = next(t for t in dev_sentences(20) if len(tokenizer(t)["input_ids"]) % 8 != 0)
    rows = features(tokenizer, ["good", long_text], [1, 0])
    longest = max(r["length"] for r in rows)
    assert longest % 8 != 0
    batch = DynamicPaddingCollator(tokenizer, pad_to_multiple_of=8)(rows)
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and longest < width < longest + 8
    assert batch["attention_mask"].sum(dim=1).tolist() == [r["length"] for r in rows]


def test_collator_on_real_sentences_gives_a_batch_the_model_accepts(tok, tiny_bert, tiny_xlmr):
    from transformers import AutoModel

    kind, tokenizer = tok
    rows = features(tokenizer, dev_sentences(5), [0, 1, 0, 1, 1])
    batch = DynamicPaddingCollator(tokenizer)(rows)
    model = AutoModel.from_pretrained(tiny_bert if kind == "bert" else tiny_xlmr)
    labels = batch.pop("labels")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[:2] == batch["input_ids"].shape and labels.shape == (5,)


# ------------------------------------------------------------------ length_sorted_batches

def test_length_sorted_batches_cover_every_index_once_longest_first():
    lengths = [5, 17, 3, 17, 9, 1, 12, 12, 4, 30, 2]
    batches = length_sorted_batches(lengths, batch_size=3)
    flat = np.concatenate(batches).tolist()
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= 3 for b in batches)
    assert [len(b) for b in batches] == [3, 3, 3, 2]
    ordered = [lengths[i] for i in flat]
    assert ordered == sorted(lengths, reverse=True)
    for earlier, later in zip(batches, batches[1:]):
        assert min(lengths[i] for i in earlier) >= max(lengths[i] for i in later)


def test_length_sorted_batches_on_real_token_lengths(tok):
    _, tokenizer = tok
    lengths = [len(ids) for ids in tokenizer(dev_sentences(50))["input_ids"]]
    batches = length_sorted_batches(lengths, batch_size=8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(50))
    assert all(len(b) <= 8 for b in batches)
    ordered = [lengths[i] for b in batches for i in b]
    assert all(a >= b for a, b in zip(ordered, ordered[1:]))


# ------------------------------------------------------------------ encode_for_prediction

def check_windows(tokenizer, kind, windows, text, max_length, stride):
    """Windows of one text: framed by special tokens, <= max_length, consecutive ones sharing
    exactly `stride` tokens, and together covering the whole text in order."""
    first, sep = specials(kind, tokenizer)
    full = content_ids(tokenizer, text)
    contents = []
    for w in windows:
        ids = w["input_ids"]
        assert len(ids) <= max_length
        assert ids[0] == first and ids[-1] == sep
        contents.append(ids[1:-1])
    for previous, current in zip(contents, contents[1:]):
        assert previous[-stride:] == current[:stride]
    rebuilt = contents[0] + [t for c in contents[1:] for t in c[stride:]]
    assert rebuilt == full


def test_windows_split_a_long_text_with_stride_overlap_and_map_back_to_their_text(tok):
    kind, tokenizer = tok
    max_length, stride = 16, 4
    sentences = dev_sentences(12)
    short_a, short_b = sentences[1], sentences[6]  # "unflinchingly bleak and desperate", ...
    assert len(tokenizer(short_a)["input_ids"]) <= max_length and len(tokenizer(short_b)["input_ids"]) <= max_length
    long_text = " ".join(sentences)
    assert len(content_ids(tokenizer, long_text)) >= 3 * max_length
    rows, owner = encode_for_prediction(tokenizer, [short_a, long_text, short_b], None, max_length,
                                        window=True, stride=stride)
    assert len(rows) == len(owner)
    assert owner.tolist() == sorted(owner.tolist())
    counts = np.bincount(owner, minlength=3).tolist()
    assert counts[0] == 1 and counts[2] == 1 and counts[1] >= 3
    assert rows[0]["input_ids"] == tokenizer(short_a)["input_ids"]
    assert rows[-1]["input_ids"] == tokenizer(short_b)["input_ids"]
    check_windows(tokenizer, kind, [r for r, o in zip(rows, owner) if o == 1], long_text, max_length, stride)
    keys = {"input_ids", "attention_mask"} | ({"token_type_ids"} if kind == "bert" else set())
    assert all(set(r) == keys for r in rows)
    assert all(len(r["attention_mask"]) == len(r["input_ids"]) for r in rows)


def test_windows_stride_is_capped_at_half_of_max_length(tok):
    kind, tokenizer = tok
    max_length = 12
    long_text = " ".join(dev_sentences(6))
    rows, owner = encode_for_prediction(tokenizer, [long_text], None, max_length, window=True, stride=64)
    assert len(rows) > 1 and set(owner.tolist()) == {0}
    check_windows(tokenizer, kind, rows, long_text, max_length, max_length // 2)


def test_windows_on_texts_in_several_scripts(tiny_xlmr):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_xlmr)
    max_length, stride = 40, 5
    assert all(len(tokenizer(t)["input_ids"]) <= max_length for t in MULTI_SCRIPT)
    long_texts = [" ".join([t] * 20) for t in MULTI_SCRIPT]
    texts = [x for pair in zip(MULTI_SCRIPT, long_texts) for x in pair]  # short, long, short, long, ...
    rows, owner = encode_for_prediction(tokenizer, texts, None, max_length, window=True, stride=stride)
    unk = tokenizer.unk_token_id
    for i, text in enumerate(texts):
        mine = [r for r, o in zip(rows, owner) if o == i]
        if i % 2 == 0:
            assert len(mine) == 1 and mine[0]["input_ids"] == tokenizer(text)["input_ids"]
        else:
            assert len(content_ids(tokenizer, text)) >= 3 * max_length
            assert len(mine) >= 3
            check_windows(tokenizer, "xlmr", mine, text, max_length, stride)
        assert unk not in mine[0]["input_ids"]  # every script is covered by the vocabulary
    decoded = tokenizer.decode(rows[0]["input_ids"], skip_special_tokens=True)
    assert decoded == MULTI_SCRIPT[0]


def test_windows_for_pairs_repeat_the_first_text_and_slide_over_the_second(tok):
    kind, tokenizer = tok
    max_length, stride = 24, 4
    question = "was it good ?"
    passage = " ".join(dev_sentences(8))
    rows, owner = encode_for_prediction(tokenizer, [question], [passage], max_length, window=True, stride=stride)
    assert len(rows) >= 3 and set(owner.tolist()) == {0}
    q_ids, p_ids = content_ids(tokenizer, question), content_ids(tokenizer, passage)
    first, sep = specials(kind, tokenizer)
    head = [first, *q_ids, sep] + ([sep] if kind == "xlmr" else [])
    parts = []
    for r in rows:
        ids = r["input_ids"]
        assert len(ids) <= max_length
        assert ids[:len(head)] == head and ids[-1] == sep
        parts.append(ids[len(head):-1])
        if kind == "bert":
            assert r["token_type_ids"] == [0] * len(head) + [1] * (len(ids) - len(head))
    for previous, current in zip(parts, parts[1:]):
        assert previous[-stride:] == current[:stride]
    assert parts[0] + [t for p in parts[1:] for t in p[stride:]] == p_ids


def test_windows_for_pairs_shrink_the_stride_to_fit_beside_a_long_first_text(tok):
    """max_length // 2 is not always below the room the second text has; the stride must shrink
    for that pair only (the tokenizer used to panic with a Rust PanicException here)."""
    kind, tokenizer = tok
    max_length = 48
    long_first, short_first = dev_sentences(3)[2], "was it good ?"  # ~37 tokens vs 4-5 tokens
    passage = " ".join(dev_sentences(6))
    head_len = len(content_ids(tokenizer, long_first)) + tokenizer.num_special_tokens_to_add(pair=True)
    room = max_length - head_len
    assert 1 < room < max_length // 2
    rows, owner = encode_for_prediction(tokenizer, [short_first, long_first], [passage, passage], max_length,
                                        window=True, stride=64)
    p_ids = content_ids(tokenizer, passage)
    first, sep = specials(kind, tokenizer)
    for index, (question, stride) in enumerate(((short_first, max_length // 2), (long_first, room - 1))):
        mine = [r["input_ids"] for r, o in zip(rows, owner) if o == index]
        assert len(mine) > 1 and all(len(ids) <= max_length for ids in mine)
        head = [first, *content_ids(tokenizer, question), sep] + ([sep] if kind == "xlmr" else [])
        parts = [ids[len(head):-1] for ids in mine]
        assert all(ids[:len(head)] == head for ids in mine)
        assert parts[0] + [t for p in parts[1:] for t in p[stride:]] == p_ids
    assert owner.tolist() == sorted(owner.tolist())  # input order, whatever the stride grouping


def test_windows_for_pairs_reject_a_first_text_that_fills_max_length(tok):
    from nlp_transfer.errors import NLPTransferError

    _, tokenizer = tok
    long_first = " ".join(dev_sentences(6))
    with pytest.raises(NLPTransferError, match=r"text 2: .*first text of the pair.*max_length=32"):
        encode_for_prediction(tokenizer, ["short", long_first], ["a passage", "a passage"], 32, window=True)


def test_without_window_each_text_gives_one_row_truncated_to_max_length(tok):
    kind, tokenizer = tok
    max_length = 16
    texts = [dev_sentences(1)[0], " ".join(dev_sentences(10)), *MULTI_SCRIPT[:2]]
    rows, owner = encode_for_prediction(tokenizer, texts, None, max_length, window=False)
    assert owner.tolist() == list(range(len(texts)))
    first, sep = specials(kind, tokenizer)
    for row, text in zip(rows, texts):
        full = content_ids(tokenizer, text)
        ids = row["input_ids"]
        assert len(ids) == min(len(full) + 2, max_length)
        assert ids[0] == first and ids[-1] == sep and ids[1:-1] == full[:len(ids) - 2]


@pytest.mark.parametrize("labels", ["single", "multi", "regression", "tokens"])
@pytest.mark.parametrize("multiple", [None, 8])
def test_the_padding_collator_gives_what_transformers_collators_give(tok, labels, multiple):
    """DynamicPaddingCollator fills arrays itself (no tokenizer.pad per batch); its batches equal those of
    transformers' DataCollatorWithPadding / DataCollatorForTokenClassification, right and left padding."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    kind, tokenizer = tok
    texts = dev_sentences(12)
    encoded = tokenizer(texts, truncation=True, max_length=40)
    features = []
    for i in range(len(texts)):
        row = {k: encoded[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded}
        if labels == "single":
            row["labels"] = i % 3
        elif labels == "multi":
            row["labels"] = [float(i % 2), 1.0, 0.0]
        elif labels == "regression":
            row["labels"] = i / 7
        else:
            row["labels"] = [(i + j) % 5 for j in range(len(row["input_ids"]))]
        features.append(row)
    for side in ("right", "left"):
        tokenizer.padding_side = side
        try:
            ours = DynamicPaddingCollator(tokenizer, multiple, token_labels=labels == "tokens")(
                [{**f, "length": 3} for f in features])
            theirs = (DataCollatorForTokenClassification if labels == "tokens" else DataCollatorWithPadding)(
                tokenizer, padding="longest", pad_to_multiple_of=multiple)([dict(f) for f in features])
        finally:
            tokenizer.padding_side = "right"
        assert set(ours) == set(theirs)
        for key in ours:
            assert ours[key].dtype == theirs[key].dtype, key
            assert torch.equal(ours[key], theirs[key]), (side, key)
