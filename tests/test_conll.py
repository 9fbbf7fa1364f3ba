"""CoNLL column files and token JSONL -> sentences, tag schemes, conversions, repairs, labels.

Every file is real and written into tmp_path; every error is checked for its file, line and fix.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from nlp_transfer.data.conll import (
    SCHEMES, TagRepairWarning, column_index, detect_scheme, from_iob2, label_list, normalise, read_conll,
    read_token_jsonl, repair_iob2, scheme_name, to_iob2, validate_tags,
)
from nlp_transfer.errors import NLPTransferError

CONLL_TRAIN = Path("/work/shared/data/conll2003/train.txt")
CONLL_LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]

FOUR_COLUMNS = """\
EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def write(tmp_path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))  # no newline translation: CRLF stays CRLF
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(NLPTransferError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- reading CoNLL

def test_space_separated_four_columns_give_tokens_last_column_tags_and_lines(tmp_path):
    sentences, stats = read_conll(write(tmp_path, "train.txt", FOUR_COLUMNS))
    assert sentences == [
        {"tokens": ["EU", "rejects", "German", "call"], "tags": ["B-ORG", "O", "B-MISC", "O"], "line": 1,
         "token_lines": [1, 2, 3, 4]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"], "line": 6, "token_lines": [6, 7]},
    ]
    assert stats == {"sentences": 2, "tokens": 6, "columns": 4, "documents": 0}


def test_tab_separated_tokens_keep_inner_spaces_and_non_ascii_spaces(tmp_path):
    path = write(tmp_path, "de.txt", "als\tO\nNew York\tB-LOC\nSalomé\tI-PER\n\nx\u00a0y\tO\n")
    sentences, stats = read_conll(path)
    assert [s["tokens"] for s in sentences] == [["als", "New York", "Salomé"], ["x\u00a0y"]]
    assert sentences[0]["tags"] == ["O", "B-LOC", "I-PER"]
    assert stats["columns"] == 2


def test_space_separated_token_with_no_break_space_stays_one_token(tmp_path):
    sentences, _ = read_conll(write(tmp_path, "a.txt", "10\u00a0000 O\nEuro B-MISC\n"))
    assert sentences[0]["tokens"] == ["10\u00a0000", "Euro"]


def test_runs_of_spaces_are_one_separator(tmp_path):
    sentences, _ = read_conll(write(tmp_path, "a.txt", "EU    NNP  B-ORG  \n  Paris NNP B-LOC\n"))
    assert sentences[0]["tokens"] == ["EU", "Paris"] and sentences[0]["tags"] == ["B-ORG", "B-LOC"]


def test_extra_columns_pick_the_tag_column_by_index(tmp_path):
    sentences, _ = read_conll(write(tmp_path, "train.txt", FOUR_COLUMNS), tag_column=2)
    assert sentences[0]["tags"] == ["B-NP", "B-VP", "B-NP", "I-NP"]
    sentences, _ = read_conll(write(tmp_path, "train.txt", FOUR_COLUMNS), tag_column=-4, token_column=1)
    assert sentences[0]["tokens"] == ["NNP", "VBZ", "JJ", "NN"] and sentences[0]["tags"][0] == "EU"


def test_extra_columns_pick_the_tag_column_by_name(tmp_path):
    path = write(tmp_path, "train.txt", FOUR_COLUMNS)
    columns = ["token", "pos", "chunk", "ner"]
    sentences, _ = read_conll(path, tag_column="ner", token_column="token", columns=columns)
    assert sentences[1]["tags"] == ["B-PER", "I-PER"]
    sentences, _ = read_conll(path, tag_column="pos", columns=columns)
    assert sentences[1]["tags"] == ["NNP", "NNP"]


def test_docstart_lines_and_the_blank_line_after_them_are_skipped(tmp_path):
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\n"
    sentences, stats = read_conll(write(tmp_path, "a.txt", text))
    assert [s["tokens"] for s in sentences] == [["EU", "rejects"], ["Peter"]]
    assert [s["line"] for s in sentences] == [3, 8]
    assert stats["documents"] == 2 and stats["columns"] == 4


def test_docstart_without_a_blank_line_before_it_still_ends_the_sentence(tmp_path):
    text = "EU B-ORG\n-DOCSTART-\tO\nPeter B-PER\n"
    sentences, _ = read_conll(write(tmp_path, "a.txt", text))
    assert [s["tokens"] for s in sentences] == [["EU"], ["Peter"]]


def test_trailing_and_repeated_blank_lines_make_no_empty_sentences(tmp_path):
    text = "\n\nEU B-ORG\n\n\n  \n\t\nPeter B-PER\n\n\n\n"
    sentences, stats = read_conll(write(tmp_path, "a.txt", text))
    assert [s["tokens"] for s in sentences] == [["EU"], ["Peter"]]
    assert [s["line"] for s in sentences] == [3, 8]
    assert stats["sentences"] == 2


def test_last_sentence_without_final_newline_is_read(tmp_path):
    sentences, _ = read_conll(write(tmp_path, "a.txt", "EU B-ORG\n\nPeter B-PER"))
    assert sentences[-1]["tokens"] == ["Peter"]


def test_crlf_line_endings_leave_no_carriage_returns_and_keep_line_numbers(tmp_path):
    path = write(tmp_path, "a.txt", FOUR_COLUMNS.replace("\n", "\r\n"))
    sentences, _ = read_conll(path)
    assert sentences[0]["tags"] == ["B-ORG", "O", "B-MISC", "O"]
    assert sentences[1]["tags"] == ["B-PER", "I-PER"] and sentences[1]["token_lines"] == [6, 7]
    tab = write(tmp_path, "b.txt", "EU\tB-ORG\r\nPeter\tB-PER\r\n\r\n")
    assert read_conll(tab)[0][0]["tags"] == ["B-ORG", "B-PER"]


def test_byte_order_mark_is_not_part_of_the_first_token(tmp_path):
    sentences, _ = read_conll(write(tmp_path, "a.txt", b"\xef\xbb\xbfEU B-ORG\n"))
    assert sentences[0]["tokens"] == ["EU"]


def test_other_encodings_are_read_when_named(tmp_path):
    path = write(tmp_path, "a.txt", "Müller B-PER\n".encode("latin-1"))
    assert read_conll(path, encoding="latin-1")[0][0]["tokens"] == ["Müller"]


# ---------------------------------------------------------------- CoNLL errors

def test_missing_file_names_the_path(tmp_path):
    message = error_of(read_conll, tmp_path / "nope.txt")
    assert "nope.txt" in message and "not found" in message and "check the" in message


def test_undecodable_bytes_name_the_line_and_the_encoding_fix(tmp_path):
    path = write(tmp_path, "a.txt", b"EU B-ORG\n\nM\xfcller B-PER\n")
    message = error_of(read_conll, path)
    assert message.startswith(f"{path}: line 3: bytes that are not valid utf-8")
    assert "re-save the file as utf-8" in message


def test_line_with_fewer_columns_than_the_first_names_both_counts(tmp_path):
    path = write(tmp_path, "a.txt", FOUR_COLUMNS.replace("Blackburn NNP I-NP I-PER", "Blackburn NNP I-PER"))
    message = error_of(read_conll, path)
    assert message.startswith(f"{path}: line 7: expected 4 columns (like line 1), found 3")
    assert "same columns" in message


def test_line_with_more_columns_than_the_first_is_an_error(tmp_path):
    path = write(tmp_path, "a.txt", "EU B-ORG\nNew York B-LOC\n")
    assert error_of(read_conll, path).startswith(f"{path}: line 2: expected 2 columns (like line 1), found 3")


def test_tag_column_beyond_the_columns_says_which_columns_exist(tmp_path):
    path = write(tmp_path, "a.txt", "\n" + FOUR_COLUMNS)
    message = error_of(read_conll, path, tag_column=5)
    assert message.startswith(f"{path}: line 2: tag column 5 needs at least 6 columns, found 4")
    assert "set the tag column to one of 0..3 (or -1 for the last)" in message
    assert "needs at least 5 columns" in error_of(read_conll, path, tag_column=-5)


def test_token_only_file_has_no_tag_column(tmp_path):
    path = write(tmp_path, "a.txt", "EU\nrejects\n")
    message = error_of(read_conll, path)
    assert message.startswith(f"{path}: line 1: the token and the tag are both column 0 of 1")
    assert "separate tag column" in message


def test_empty_tag_in_a_tab_file_names_the_line(tmp_path):
    path = write(tmp_path, "a.txt", "EU\tB-ORG\nParis\t\t\n")
    # "Paris\t\t" strips to "Paris" (one column), so the column count catches it first
    assert error_of(read_conll, path).startswith(f"{path}: line 2: expected 2 columns")
    path = write(tmp_path, "b.txt", "EU\tNNP\tB-ORG\nParis\t\tB-LOC\n")
    message = error_of(read_conll, path, tag_column=1)
    assert message.startswith(f"{path}: line 2: empty tag (column 1)") and "stray tab" in message


@pytest.mark.parametrize("content", ["", "\n\n  \n", "-DOCSTART- -X- -X- O\n\n"])
def test_file_without_sentences_is_an_error(tmp_path, content):
    path = write(tmp_path, "a.txt", content)
    message = error_of(read_conll, path)
    assert message.startswith(f"{path}: no sentences") and "empty line between sentences" in message


def test_unknown_column_name_suggests_the_closest(tmp_path):
    message = error_of(column_index, ["token", "pos", "chunk", "ner"], "nerr", "data_cards/conll.md")
    assert message.startswith("data_cards/conll.md: no column 'nerr'; did you mean 'ner'?")
    assert "(columns: token, pos, chunk, ner)" in message and "fix the column name" in message
    assert column_index(["token", "ner"], "ner", "x") == 1
    assert column_index(["token", "ner"], -1, "x") == -1


def test_unknown_tag_column_name_is_reported_by_read_conll(tmp_path):
    path = write(tmp_path, "a.txt", FOUR_COLUMNS)
    message = error_of(read_conll, path, tag_column="nre", columns=["token", "pos", "chunk", "ner"])
    assert message.startswith(f"{path}: no column 'nre'; did you mean 'ner'?")


def test_named_tag_column_needs_a_columns_list(tmp_path):
    path = write(tmp_path, "a.txt", FOUR_COLUMNS)
    message = error_of(read_conll, path, tag_column="ner")
    assert "no 'columns:' list" in message and "columns: [token, pos, chunk, ner]" in message


def test_columns_list_must_match_the_file(tmp_path):
    path = write(tmp_path, "a.txt", FOUR_COLUMNS)
    message = error_of(read_conll, path, tag_column="ner", columns=["token", "ner"])
    assert message.startswith(f"{path}: line 1: expected 2 columns (token, ner) as listed in 'columns:', found 4")


# ---------------------------------------------------------------- token JSONL

def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def test_token_jsonl_reads_sentences_with_their_lines(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}, "",
                                            {"tokens": ["Peter"], "tags": ["B-PER"], "id": 7}))
    sentences, stats = read_token_jsonl(path)
    assert sentences == [
        {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "line": 1, "token_lines": [1, 1]},
        {"tokens": ["Peter"], "tags": ["B-PER"], "line": 3, "token_lines": [3]},
    ]
    assert stats == {"sentences": 2, "tokens": 3}


def test_token_jsonl_other_keys(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"words": ["EU"], "ner": ["B-ORG"]}))
    assert read_token_jsonl(path, tokens_key="words", tags_key="ner")[0][0]["tags"] == ["B-ORG"]


def test_token_jsonl_invalid_json_names_the_line(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": ["EU"], "tags": ["B-ORG"]}, '{"tokens": ["x"], "tags": '))
    message = error_of(read_token_jsonl, path)
    assert message.startswith(f"{path}: line 2: not valid JSON") and "one JSON object" in message


def test_token_jsonl_missing_key_suggests_the_closest(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": ["EU"], "tag": ["B-ORG"]}))
    message = error_of(read_token_jsonl, path)
    assert message.startswith(f"{path}: line 1: no tags key 'tags'; did you mean 'tag'?")
    assert "(keys: tokens, tag)" in message and "fix the key name" in message


def test_token_jsonl_tokens_and_tags_of_different_lengths(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": ["EU"], "tags": ["B-ORG"]},
                                            {"tokens": ["EU", "rejects"], "tags": ["B-ORG"]}))
    message = error_of(read_token_jsonl, path)
    assert message == f"{path}: line 2: 2 tokens but 1 tags; give every token exactly one tag"


def test_token_jsonl_empty_sentence(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": [], "tags": []}))
    assert error_of(read_token_jsonl, path) == f"{path}: line 1: empty sentence (no tokens); remove the line"


def test_token_jsonl_label_ids_instead_of_tag_names(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": ["EU"], "tags": [3]}))
    message = error_of(read_token_jsonl, path)
    assert message.startswith(f"{path}: line 1: 'tags' must be a list of strings, found int")
    assert "not label ids" in message


def test_token_jsonl_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl(["EU", "B-ORG"]))
    assert error_of(read_token_jsonl, path).startswith(f"{path}: line 1: expected a JSON object")


def test_token_jsonl_empty_token_and_empty_file(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": ["EU", " "], "tags": ["B-ORG", "O"]}))
    assert error_of(read_token_jsonl, path).startswith(f"{path}: line 1: token 2 is empty")
    empty = write(tmp_path, "b.jsonl", "\n\n")
    assert error_of(read_token_jsonl, empty).startswith(f"{empty}: no sentences")
    assert "not found" in error_of(read_token_jsonl, tmp_path / "missing.jsonl")


# ---------------------------------------------------------------- schemes: conversions and round trips

# The same two sentences in every scheme. Sentence 1: adjacent same-type entities (PER PER),
# a multi-token entity, a single-token one, and an entity of another type right after one.
# Sentence 2: entity at the start and at the end, of different types back to back.
SENTENCE_IOB2 = [["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG", "O", "B-MISC"],
                 ["B-ORG", "B-LOC", "I-LOC", "O", "B-PER"]]
SENTENCE = {
    "IOB2": SENTENCE_IOB2,
    "IOB1": [["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "I-ORG", "O", "I-MISC"],
             ["I-ORG", "I-LOC", "I-LOC", "O", "I-PER"]],
    "BIOES": [["B-PER", "E-PER", "S-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG", "O", "S-MISC"],
              ["S-ORG", "B-LOC", "E-LOC", "O", "S-PER"]],
}
# IO without adjacent same-type entities (IO cannot represent those)
IO_SENTENCES = [["I-PER", "I-PER", "O", "I-LOC", "I-ORG", "I-ORG", "O"], ["I-ORG", "I-LOC", "I-LOC"]]
IO_AS_IOB2 = [["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "O"], ["B-ORG", "B-LOC", "I-LOC"]]
EXTRA = {  # more valid sequences per scheme for the round trips
    "IOB2": [[], ["O"], ["B-X", "B-X", "B-X"], ["B-A", "I-A", "B-A", "I-A", "I-A"], ["B-long-type", "I-long-type"]],
    "IOB1": [[], ["O"], ["I-X", "B-X", "B-X"], ["I-A", "I-A", "B-A", "I-A"], ["O", "I-A", "I-B", "B-B", "O"]],
    "BIOES": [[], ["O"], ["S-X", "S-X", "S-X"], ["B-A", "I-A", "I-A", "E-A", "S-A"], ["B-A", "E-A", "B-A", "E-A"]],
    "IO": [[], ["O"], ["I-X"], ["I-A", "I-B", "I-A", "O", "I-A"]],
}


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_each_scheme_converts_to_the_same_iob2(scheme):
    assert [to_iob2(tags, scheme) for tags in SENTENCE[scheme]] == SENTENCE_IOB2


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_iob2_converts_to_each_scheme(scheme):
    assert [from_iob2(tags, scheme) for tags in SENTENCE_IOB2] == SENTENCE[scheme]


def test_io_converts_to_iob2_and_back():
    assert [to_iob2(tags, "IO") for tags in IO_SENTENCES] == IO_AS_IOB2
    assert [from_iob2(tags, "IO") for tags in IO_AS_IOB2] == IO_SENTENCES


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip_through_iob2_keeps_every_valid_sequence(scheme):
    sequences = SENTENCE.get(scheme, IO_SENTENCES) + EXTRA[scheme]
    for tags in sequences:
        assert from_iob2(to_iob2(tags, scheme), scheme) == tags, tags


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_iob2_survives_a_trip_through_every_scheme_but_io(scheme):
    for tags in SENTENCE_IOB2 + EXTRA["IOB2"]:
        assert to_iob2(from_iob2(tags, scheme), scheme) == tags, tags


def test_io_merges_adjacent_same_type_entities():
    assert from_iob2(["B-PER", "I-PER", "B-PER", "O"], "IO") == ["I-PER", "I-PER", "I-PER", "O"]
    assert to_iob2(["I-PER", "I-PER", "I-PER", "O"], "IO") == ["B-PER", "I-PER", "I-PER", "O"]


def test_bioes_single_token_entities_are_s_tags():
    assert from_iob2(["B-LOC", "B-LOC", "O", "B-PER"], "BIOES") == ["S-LOC", "S-LOC", "O", "S-PER"]
    assert to_iob2(["S-LOC", "S-LOC", "O", "S-PER"], "BIOES") == ["B-LOC", "B-LOC", "O", "B-PER"]


def test_from_iob2_reads_an_entity_starting_i_tag_as_a_start():
    assert from_iob2(["O", "I-PER", "I-PER"], "BIOES") == ["O", "B-PER", "E-PER"]
    assert from_iob2(["I-PER", "I-LOC"], "IOB2") == ["B-PER", "B-LOC"]


def test_scheme_names_are_case_insensitive_and_bio_is_iob2():
    assert scheme_name("iob2") == "IOB2" and scheme_name("BIO") == "IOB2" and scheme_name("bioes") == "BIOES"
    message = error_of(scheme_name, "BIOSE")
    assert message.startswith("tag scheme 'BIOSE' is not one of IOB1, IOB2, BIOES, IO; did you mean 'BIOES'?")


def test_tag_of_another_scheme_names_the_scheme_that_has_it():
    message = error_of(to_iob2, ["B-PER", "E-PER"], "IOB2")
    assert message == "position 1: tag 'E-PER' is not an IOB2 tag (IOB2 uses O and B-, I-); set the tag scheme to BIOES"
    assert "set the tag scheme to IOB1 or IOB2 or BIOES" in error_of(to_iob2, ["B-PER"], "IO")


def test_malformed_and_bilou_tags_say_how_to_write_them():
    assert "not 'O' or PREFIX-TYPE" in error_of(to_iob2, ["PER"], "IOB2")
    assert "not 'O' or PREFIX-TYPE" in error_of(to_iob2, ["B-"], "IOB2")
    assert "rename L- to E- and U- to S-" in error_of(to_iob2, ["U-PER"], "BIOES")
    assert "unknown prefix 'X-'" in error_of(detect_scheme, [["X-PER"]])


# ---------------------------------------------------------------- scheme detection

@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_detect_scheme_recognises_each_scheme(scheme):
    assert detect_scheme(SENTENCE[scheme]) == scheme


def test_detect_scheme_iob1_needs_no_adjacent_entities():
    assert detect_scheme([["I-PER", "I-PER", "O", "I-LOC"], ["O"]]) == "IOB1"


def test_detect_scheme_calls_io_iob1_and_both_give_the_same_iob2():
    assert detect_scheme(IO_SENTENCES) == "IOB1"
    assert [to_iob2(tags, "IOB1") for tags in IO_SENTENCES] == [to_iob2(tags, "IO") for tags in IO_SENTENCES]


def test_detect_scheme_b_only_between_same_type_entities_is_iob1():
    assert detect_scheme([["I-PER", "B-PER", "O", "I-LOC", "I-LOC", "B-LOC"]]) == "IOB1"


def test_detect_scheme_b_starting_an_entity_after_o_is_iob2():
    assert detect_scheme([["O", "B-PER", "I-PER"], ["I-LOC"]]) == "IOB2"  # noisy IOB2: I-LOC is a repair


def test_detect_scheme_bioes_wins_on_any_e_or_s_tag():
    assert detect_scheme([["B-PER", "I-PER"], ["O", "S-LOC"]]) == "BIOES"
    assert detect_scheme([["B-PER", "E-PER"]]) == "BIOES"


def test_detect_scheme_all_o_or_empty_is_iob2():
    assert detect_scheme([["O", "O"], []]) == "IOB2"
    assert detect_scheme([]) == "IOB2"


def test_detect_scheme_accepts_a_generator():
    assert detect_scheme(tags for tags in SENTENCE["BIOES"]) == "BIOES"


# ---------------------------------------------------------------- repairs, normalising, validating, labels

def test_repair_iob2_turns_entity_starting_i_tags_into_b_and_counts_them():
    tags = ["I-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG", "O", "B-MISC", "I-MISC"]
    repaired, count = repair_iob2(tags)
    assert repaired == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-ORG", "I-ORG", "O", "B-MISC", "I-MISC"]
    assert count == 3
    assert tags[0] == "I-PER"  # the input is left alone


def test_repair_iob2_leaves_valid_iob2_alone():
    for tags in SENTENCE_IOB2 + EXTRA["IOB2"]:
        assert repair_iob2(tags) == (tags, 0)


def test_normalise_repairs_and_warns_once_per_file_with_the_count(tmp_path):
    text = "EU B-ORG\nrejects O\nGerman I-MISC\n\nPeter I-PER\nBlackburn I-PER\nin O\nBRUSSELS B-LOC\nand O\nParis I-LOC\n"
    path = write(tmp_path, "noisy.txt", text)
    sentences, _ = read_conll(path)
    with pytest.warns(TagRepairWarning) as record:
        count = normalise(sentences, "IOB2", path)
    assert count == 3 and len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{path}: repaired 3 I- tags that followed O")
    assert "first at line 3" in message
    assert sentences[0]["tags"] == ["B-ORG", "O", "B-MISC"]
    assert sentences[1]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "O", "B-LOC"]


def test_normalise_valid_file_returns_zero_without_a_warning(tmp_path):
    sentences, _ = read_conll(write(tmp_path, "a.txt", FOUR_COLUMNS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert normalise(sentences, "IOB2", "a.txt") == 0


@pytest.mark.parametrize("scheme", ["IOB1", "BIOES"])
def test_normalise_converts_a_file_to_iob2_with_the_detected_scheme(tmp_path, scheme):
    text = "\n\n".join("\n".join(f"w{i} {tag}" for i, tag in enumerate(tags)) for tags in SENTENCE[scheme])
    path = write(tmp_path, f"{scheme}.txt", text + "\n")
    sentences, _ = read_conll(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert normalise(sentences, "auto", path) == 0
    assert [s["tags"] for s in sentences] == SENTENCE_IOB2


def test_normalise_counts_invalid_bioes_as_repairs(tmp_path):
    sentences = [{"tokens": ["a", "b", "c"], "tags": ["O", "I-PER", "E-PER"], "line": 4, "token_lines": [4, 5, 6]}]
    with pytest.warns(TagRepairWarning, match="repaired 1 I- tag that followed O.*first at line 5"):
        assert normalise(sentences, "BIOES", "x.txt") == 1
    assert sentences[0]["tags"] == ["O", "B-PER", "I-PER"]


def test_normalise_names_the_line_of_a_tag_outside_the_scheme(tmp_path):
    path = write(tmp_path, "a.txt", "EU B-ORG\n\nPeter B-PER\nBlackburn E-PER\n")
    sentences, _ = read_conll(path)
    message = error_of(normalise, sentences, "IOB2", path)
    assert message.startswith(f"{path}: line 4: tag 'E-PER' is not an IOB2 tag")
    assert message.endswith("set the tag scheme to BIOES")
    assert "scheme 'IOB3' is not one of" in error_of(normalise, sentences, "IOB3", path)


def test_normalise_auto_names_the_line_of_a_malformed_tag(tmp_path):
    path = write(tmp_path, "a.txt", "EU B-ORG\nPeter PER\n")
    sentences, _ = read_conll(path)
    assert error_of(normalise, sentences, None, path).startswith(f"{path}: line 2: tag 'PER' is not 'O' or PREFIX-TYPE")


def test_validate_tags_names_the_file_line_token_and_closest_label(tmp_path):
    path = write(tmp_path, "a.txt", FOUR_COLUMNS.replace("Blackburn NNP I-NP I-PER", "Blackburn NNP I-NP I-PRE"))
    sentences, _ = read_conll(path)
    message = error_of(validate_tags, sentences, CONLL_LABELS, path)
    assert message == (f"{path}: line 7: tag 'I-PRE' (token 'Blackburn') is not one of the labels "
                       f"[{', '.join(CONLL_LABELS)}]; did you mean 'I-PER'?; fix the tag or add it to 'labels:' in the data card")
    validate_tags(sentences[:1], set(CONLL_LABELS), path)  # a set works too; no error


def test_validate_tags_in_jsonl_names_the_record_line(tmp_path):
    path = write(tmp_path, "a.jsonl", jsonl({"tokens": ["EU"], "tags": ["B-ORG"]}, {"tokens": ["x"], "tags": ["B-FOO"]}))
    sentences, _ = read_token_jsonl(path)
    assert error_of(validate_tags, sentences, CONLL_LABELS, path).startswith(f"{path}: line 2: tag 'B-FOO' (token 'x')")


def test_label_list_is_o_then_b_and_i_per_sorted_type():
    sentences = [{"tags": ["B-PER", "I-PER", "O"]}, {"tags": ["B-LOC"]}, {"tags": ["I-MISC"]}]
    assert label_list(sentences) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]
    assert label_list([{"tags": ["O"]}]) == ["O"]


def test_label_list_of_a_normalised_bioes_file_is_iob2(tmp_path):
    sentences = [{"tokens": ["a"] * len(tags), "tags": list(tags), "line": 1} for tags in SENTENCE["BIOES"]]
    normalise(sentences, "BIOES", "x")
    assert label_list(sentences) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


# ---------------------------------------------------------------- real data

@pytest.mark.skipif(not CONLL_TRAIN.is_file(), reason="CoNLL-2003 copy not in /work/shared/data")
def test_real_conll2003_head_is_iob2_with_the_nine_labels(tmp_path):
    with CONLL_TRAIN.open("rb") as source:
        head = b"".join(source.readline() for _ in range(2000))
    path = write(tmp_path, "train-head.txt", head)
    sentences, stats = read_conll(path)
    assert stats["columns"] == 4 and stats["documents"] == 0
    assert sentences[0]["tokens"][:2] == ["EU", "rejects"] and sentences[0]["tags"][:2] == ["B-ORG", "O"]
    assert stats["tokens"] == sum(1 for line in head.decode("utf-8").splitlines() if line.strip())
    assert detect_scheme(s["tags"] for s in sentences) == "IOB2"
    assert label_list(sentences) == CONLL_LABELS
    validate_tags(sentences, CONLL_LABELS, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert normalise(sentences, "auto", path) == 0
