"""Splits on disk (data_storage: arrow, issue 29): the same rows as in memory, written once per content and read
back by later runs without the text, line-numbered errors, nothing half-written; a shuffle with no permutation list;
masked-LM and classification training from the cache."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_recipe, topic_card, write_card
from safetensors.torch import load_file

from nlp_transfer import NLPTransferError, train
from nlp_transfer.data import readers
from nlp_transfer.data.order import ScatteredOrder
from nlp_transfer.data.readers import load_data


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


def _same_splits(a, b) -> None:
    assert a.label_names == b.label_names and a.problem_type == b.problem_type and a.files == b.files
    for split in b.splits:
        assert a.splits[split].features == b.splits[split].features
        assert a.splits[split].to_list() == b.splits[split].to_list()


def test_arrow_rows_equal_memory_rows_for_every_kind_of_data(sst2_toy, tmp_path, cache):
    regression = tmp_path / "reg"
    regression.mkdir()
    (regression / "train.csv").write_text("text,score\n" + "".join(f"row {i},{i / 4}\n" for i in range(30)))
    cards = [
        sst2_toy,  # single-label, names from the card
        write_card(sst2_toy.parent, "inferred", splits={"train": "train.tsv", "validation": "dev.tsv"}, format="tsv",
                   text="sentence", label="label"),  # names inferred from the rows
        topic_card(tmp_path),  # multi-label JSONL lists
        write_card(regression, "reg", splits={"train": "train.csv"}, label="score", problem_type="regression"),
        write_card(sst2_toy.parent, "text", task="text", splits={"train": "train.tsv"}, format="tsv", text="sentence"),
    ]
    for card in cards:
        on_disk, in_memory = load_data(card, storage="arrow"), load_data(card, storage="memory")
        _same_splits(on_disk, in_memory)
        assert all(split.cache_files for split in on_disk.splits.values())
        assert not any(split.cache_files for split in in_memory.splits.values())
    assert len(list(cache.glob("*.arrow"))) >= len(cards)
    assert len(list((cache / "digests").iterdir())) == 5  # each of the 5 data files hashed once


def test_a_second_run_opens_the_cache_without_reading_the_text(sst2_toy, monkeypatch, cache):
    first = load_data(sst2_toy, storage="arrow")
    files = sorted(cache.iterdir())
    lines_read = []
    real = readers.decoded_lines

    def counting(*args, **kwargs):
        for line in real(*args, **kwargs):
            lines_read.append(line)
            yield line

    monkeypatch.setattr(readers, "decoded_lines", counting)
    second = load_data(sst2_toy, storage="arrow")
    assert sorted(cache.iterdir()) == files  # nothing new written
    assert lines_read == []  # the text files were hashed, not parsed
    load_data(sst2_toy, storage="memory")
    assert len(lines_read) == 160 + 64 + 2  # (the spy sees reading when it happens)
    _same_splits(second, first)


def test_an_edited_file_gets_a_new_cache_entry(sst2_toy):
    before = load_data(sst2_toy, storage="arrow").splits["train"]
    train_file = sst2_toy.parent / "train.tsv"
    lines = train_file.read_text().splitlines(keepends=True)
    train_file.write_text("".join(lines[:-1]))  # one row fewer
    after = load_data(sst2_toy, storage="arrow").splits["train"]
    assert len(after) == len(before) - 1 and after.cache_files != before.cache_files


def test_a_bad_row_late_in_the_file_names_its_line_and_leaves_no_cache_file(tmp_path, cache):
    rows = [f"text {i}\tpositive" for i in range(25_000)] + ["\tnegative"] + ["more\tnegative"] * 10
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    card = write_card(tmp_path, "late", splits={"train": "train.tsv"}, format="tsv")
    with pytest.raises(NLPTransferError, match=r"train.tsv: line 25002: empty or missing text in column 'text'"):
        load_data(card, storage="arrow")
    assert [p.name for p in cache.iterdir()] == ["digests"]  # no cache file, no partial one


def test_an_unknown_label_in_a_cached_eval_split_names_its_line(sst2_toy):
    dev = sst2_toy.parent / "dev.tsv"
    dev.write_text(dev.read_text() + "an odd one\tneutral\n")
    with pytest.raises(NLPTransferError, match=r"dev.tsv: line 66: .*neutral"):
        load_data(sst2_toy, storage="arrow")


def test_storage_choices_and_what_cannot_be_cached(sst2_toy, conll_toy, monkeypatch):
    with pytest.raises(NLPTransferError, match="did you mean 'arrow'"):
        load_data(sst2_toy, storage="arow")
    with pytest.raises(NLPTransferError, match="token-classification sentences are read into memory"):
        load_data(conll_toy, storage="arrow")
    assert not load_data(sst2_toy, storage="auto").splits["train"].cache_files  # a small file stays in memory
    monkeypatch.setattr(readers, "ARROW_FROM_BYTES", 1)
    assert load_data(sst2_toy, storage="auto").splits["train"].cache_files


def test_scattered_order_is_a_seeded_permutation_per_epoch():
    for size in (0, 1, 2, 3, 17, 1000, 4097):
        assert sorted(ScatteredOrder(size, 5)) == list(range(size))
    order = ScatteredOrder(500, 5)
    first = list(order)
    assert list(ScatteredOrder(500, 5)) == first  # the same seed, the same order
    assert first != list(range(500)) and list(ScatteredOrder(500, 6)) != first
    order.set_epoch(1)
    assert list(order) != first and sorted(order) == list(range(500))


def test_masked_lm_trains_from_a_cached_corpus_on_the_fly(sst2_toy, tiny_bert, tmp_path):
    card = write_card(sst2_toy.parent, "text", task="text", splits={"train": "train.tsv", "validation": "dev.tsv"},
                      format="tsv", text="sentence")
    recipe = tiny_recipe(card, tiny_bert, tmp_path / "mlm", max_steps=12, num_train_epochs=1)
    recipe.update(task="masked-lm", data_storage="arrow")
    metrics = train(recipe).metrics
    assert metrics["train"]["global_step"] == 12
    assert metrics["eval"]["perplexity"] > 0 and "perplexity" in metrics["eval_before"]


def test_classification_from_the_cache_trains_to_the_same_weights(sst2_toy, tiny_bert, tmp_path):
    """The rows, their order and the length-grouped batches are the same, so the run is too (bit for bit)."""
    weights, scores = [], []
    for storage in ("memory", "arrow"):
        recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / storage, num_train_epochs=1)
        recipe["data_storage"] = storage
        scores.append(train(recipe).metrics["eval"])
        weights.append(load_file(tmp_path / storage / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert scores[0]["accuracy"] == scores[1]["accuracy"] and scores[0]["loss"] == scores[1]["loss"]
    saved = json.dumps(__import__("yaml").safe_load((tmp_path / "arrow" / "recipe.yaml").read_text()))
    assert '"data_storage": "arrow"' in saved


def _mapped_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    import os

    total, inside = 0, False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
                inside = len(fields) >= 6 and fields[5] == os.path.realpath(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/smaps"), reason="reads Linux's /proc")
def test_pages_read_from_the_cache_are_handed_back(tmp_path):
    """Rows read from a cached split map pages of its file into the process; MappedPages unmaps them, and the rows
    read the same afterwards."""
    from nlp_transfer.data.arrow_cache import MappedPages

    rows = [f"row {i} " + "words " * 150 for i in range(20_000)]  # about 18 MB
    (tmp_path / "train.tsv").write_text("text\n" + "\n".join(rows) + "\n")
    card = write_card(tmp_path, "big", task="text", splits={"train": "train.tsv"}, format="tsv")
    split = load_data(card, storage="arrow").splits["train"]
    path = split.cache_files[0]["filename"]
    picked = list(ScatteredOrder(len(split), 1))[:300]
    before = [split[i]["text"] for i in picked]
    assert _mapped_kb(path) > 1000
    MappedPages(split).release()
    assert _mapped_kb(path) == 0
    assert [split[i]["text"] for i in picked] == before == [rows[i].strip() for i in picked]
