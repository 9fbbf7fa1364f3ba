"""Static vectors: every file format, bad files, the cache, coverage, OOV rows, neighbours, the tokenizer, the CLI."""
from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nlp_transfer.cli import main
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.static import embedding_matrix, load_vectors, most_similar, words
from nlp_transfer.static.baselines import StaticEmbedding
from nlp_transfer.static.vectors import _cache_folder, analogy, cache_root, detect_format, vectors_name

WORDS = ["the", "cat", "dog", "well", "made", "king", "queen"]
VECTORS = np.array([[0.1, -0.2, 0.3], [1.5, 0.25, -0.125], [1.25, 0.5, 0.0], [0.0, 1.0, 0.5],
                    [0.5, 0.5, -1.0], [2.0, -1.0, 0.75], [-0.5, 3.0, 1e-3]], dtype=np.float32)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "vectors"


def text_rows(words=WORDS, vectors=VECTORS) -> str:
    return "".join(f"{w} {' '.join(repr(float(x)) for x in v)}\n" for w, v in zip(words, vectors))


def write_glove(path: Path, words=WORDS, vectors=VECTORS) -> Path:
    path.write_text(text_rows(words, vectors), encoding="utf-8")
    return path


def write_word2vec_binary(path: Path, words=WORDS, vectors=VECTORS) -> Path:
    with open(path, "wb") as handle:
        handle.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        handle.writelines(word.encode() + b" " + struct.pack(f"<{len(vector)}f", *vector) + b"\n"
                          for word, vector in zip(words, vectors))
    return path


def assert_same(kv, words=WORDS, vectors=VECTORS):
    assert kv.index_to_key == list(words)
    np.testing.assert_array_equal(np.asarray(kv.vectors), vectors)


# ---------------------------------------------------------------- formats

def test_glove_text_plain_and_gzip(tmp_path):
    plain = write_glove(tmp_path / "tiny.txt")
    packed = tmp_path / "tiny.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert detect_format(plain) == detect_format(packed) == "glove"
    assert_same(load_vectors(plain, cache=False, progress=False))
    assert_same(load_vectors(packed, cache=False, progress=False))


def test_word2vec_text_and_fasttext_vec_have_a_header(tmp_path):
    w2v = tmp_path / "tiny.w2v.txt"
    w2v.write_text(f"{len(WORDS)} 3\n" + text_rows(), encoding="utf-8")
    vec = tmp_path / "tiny.vec"
    vec.write_text(f"{len(WORDS)} 3\n" + text_rows(), encoding="utf-8")
    assert detect_format(w2v) == "word2vec" and detect_format(vec) == "fasttext"
    assert_same(load_vectors(w2v, cache=False, progress=False))
    assert_same(load_vectors(vec, format="fasttext", cache=False, progress=False))


def test_word2vec_binary_matches_gensim(tmp_path):
    from gensim.models import KeyedVectors

    path = write_word2vec_binary(tmp_path / "tiny.bin")
    ours = load_vectors(path, cache=False, progress=False)
    theirs = KeyedVectors.load_word2vec_format(str(path), binary=True)
    assert detect_format(path) == "word2vec-bin"
    assert_same(ours)
    np.testing.assert_array_equal(ours.vectors, theirs.vectors)
    assert load_vectors(path, limit=2, cache=False, progress=False).index_to_key == WORDS[:2]


def test_fasttext_bin_gives_subword_vectors_for_unseen_words(tmp_path):
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    sentences = [["the", "cat", "sat", "on", "the", "mat"], ["the", "dog", "ate", "the", "cat"]] * 5
    model = FastText(sentences, vector_size=8, min_count=1, epochs=2, bucket=200, seed=1, workers=1)
    path = tmp_path / "tiny.bin"
    save_facebook_model(model, str(path))
    vectors = load_vectors(path, progress=False)
    assert detect_format(path) == "fasttext-bin"
    np.testing.assert_allclose(vectors["cat"], model.wv["cat"], rtol=1e-6)
    embedding = embedding_matrix(Counter({"cat": 2, "cats": 1}), vectors, oov="zeros")
    assert embedding.coverage.hits == 2 and embedding.coverage.subword_hits == 1
    assert np.abs(embedding.matrix[embedding.word_to_index["cats"]]).sum() > 0


def test_words_with_spaces_and_undecodable_bytes(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_bytes(b"new york 0.5 0.25 1.0\nthe 0.1 0.2 0.3\ncaf\xe9 1.0 2.0 3.0\n")
    with pytest.raises(NLPTransferError, match=r"odd\.txt: line 3: bytes that are not valid UTF-8.*unicode_errors"):
        load_vectors(path, cache=False, progress=False)
    vectors = load_vectors(path, unicode_errors="replace", cache=False, progress=False)
    assert vectors.index_to_key == ["new york", "the", "caf\ufffd"]
    np.testing.assert_array_equal(vectors["new york"], np.array([0.5, 0.25, 1.0], dtype=np.float32))


def test_header_count_that_disagrees_with_the_rows_warns_and_uses_the_rows(tmp_path):
    path = tmp_path / "cut.vec"
    path.write_text("10 3\n" + text_rows(), encoding="utf-8")
    with pytest.warns(UserWarning, match=f"header says 10 vectors but the file holds {len(WORDS)}"):
        vectors = load_vectors(path, cache=False, progress=False)
    assert_same(vectors)


@pytest.mark.parametrize("row, message", [
    ("dog 1.0 2.0\n", r"line 3: 2 values after the word, expected 3"),
    ("dog 1.0 2.0 3.0 4.0\n", r"line 3: 4 values after the word, expected 3"),
    ("dog 1.0 abc 3.0\n", r"line 3: value 2 'abc' is not a number"),
])
def test_bad_row_names_the_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 1.0 1.0 1.0\n" + row + "king 1 2 3\n", encoding="utf-8")
    with pytest.raises(NLPTransferError, match=rf"bad\.txt: {message}") as error:
        load_vectors(path, cache=False, progress=False)
    assert "\n" not in str(error.value)


def test_missing_file_suggests_a_close_name(tmp_path):
    write_glove(tmp_path / "glove.6B.50d.txt")
    with pytest.raises(NLPTransferError, match=r"not found; did you mean '.*glove\.6B\.50d\.txt'\?"):
        load_vectors(tmp_path / "glove.6B.50.txt")


def test_cached_reload_equals_the_first_load_and_is_memory_mapped(tmp_path, cache):
    path = write_glove(tmp_path / "tiny.txt")
    first = load_vectors(path, progress=False)
    folders = list(cache.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("tiny-v2-")
    assert sorted(p.name for p in folders[0].iterdir()) == ["expando_count.npy", "meta.json", "vectors.npy",
                                                            "words.json"]
    assert not any(p.name.startswith(".") for p in cache.iterdir())  # the temp folder was renamed into place
    again = load_vectors(path, progress=False)
    assert isinstance(again.vectors, np.memmap)  # read from the cache, not parsed again
    assert again.index_to_key == first.index_to_key
    np.testing.assert_array_equal(np.asarray(again.vectors), first.vectors)
    assert cache_root() == cache
    limited = load_vectors(path, limit=3, progress=False)  # another key: its own cache entry
    assert limited.index_to_key == WORDS[:3] and len(list(cache.iterdir())) == 2


def test_a_changed_file_is_read_again(tmp_path):
    path = write_glove(tmp_path / "tiny.txt")
    load_vectors(path, progress=False)
    write_glove(path, WORDS[:2], VECTORS[:2] * 2)
    changed = load_vectors(path, progress=False)
    assert_same(changed, WORDS[:2], VECTORS[:2] * 2)


# ---------------------------------------------------------------- the cache holds no pickle

class Planted:
    """Unpickling this touches ``marker``: the side effect a planted pickle would have."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def planted_pickle(marker: Path) -> bytes:
    payload = pickle.dumps(Planted(marker))
    pickle.loads(payload)  # the payload is live: unpickling it does create the marker ...
    assert marker.is_file()
    marker.unlink()  # ... which the code under test must never do
    return payload


def plant_object_npy(path: Path, marker: Path) -> None:
    """A real .npy file whose data is a pickled object array (runs on ``np.load(allow_pickle=True)``)."""
    array = np.empty(1, dtype=object)
    array[0] = Planted(marker)
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=True)
    np.load(path, allow_pickle=True)  # live: an unsafe np.load would create the marker
    assert marker.is_file()
    marker.unlink()


def v1_cache_folder(path: Path, fmt: str = "glove", limit=None, unicode_errors: str = "strict") -> Path:
    """Where version 1 kept its gensim pickle (vectors.kv) for ``path``."""
    stat = path.stat()
    key = json.dumps({"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                      "format": fmt, "limit": limit, "unicode_errors": unicode_errors, "version": 1}, sort_keys=True)
    return cache_root() / f"{vectors_name(path)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def plant_everywhere(path: Path, marker: Path, fmt: str = "glove", words=WORDS, dim: int = 3) -> list[Path]:
    """Pickles at every cache path the loader could look at for ``path``: the version-1 pickle cache
    (vectors.kv + its vectors .npy), and in the current folder the old name plus every .npy name, beside a
    words.json / meta.json that look right, so the loader gets as far as the arrays."""
    payload = planted_pickle(marker)
    planted = []
    old, new = v1_cache_folder(path, fmt), _cache_folder(path, fmt, None, "strict")
    for folder in (old, new):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vectors.kv").write_bytes(payload)
        plant_object_npy(folder / "vectors.kv.vectors.npy", marker)
        planted += [folder / "vectors.kv", folder / "vectors.kv.vectors.npy"]
    (new / "meta.json").write_text(json.dumps({"cache_version": 2, "format": fmt, "words": len(words), "dim": dim,
                                               "expandos": ["count"], "min_n": 3, "max_n": 6, "bucket": 200}))
    (new / "words.json").write_text(json.dumps(list(words)))
    for name in ("vectors.npy", "expando_count.npy", "vectors_vocab.npy", "vectors_ngrams.npy"):
        plant_object_npy(new / name, marker)
        planted.append(new / name)
    return planted


def assert_plain_cache(folder: Path) -> None:
    """Every file is JSON or a .npy that loads without pickle; none is a pickle."""
    for file in folder.iterdir():
        assert file.suffix in (".npy", ".json"), file.name
        assert not file.read_bytes().startswith(b"\x80"), f"{file.name} is a pickle"
        if file.suffix == ".npy":
            assert np.load(file, allow_pickle=False).dtype.kind in "iuf"
        else:
            json.loads(file.read_text(encoding="utf-8"))


def test_planted_pickles_at_the_cache_paths_never_run(tmp_path, cache):
    marker = tmp_path / "marker"
    path = write_glove(tmp_path / "tiny.txt")
    planted = plant_everywhere(path, marker)
    with pytest.warns(UserWarning, match=r"ignored the vectors cache in .*tiny-v2-.*vectors\.npy is not a plain \.npy"):
        vectors = load_vectors(path, progress=False)
    assert not marker.exists()
    assert_same(vectors)
    folder = _cache_folder(path, "glove", None, "strict")
    assert_plain_cache(folder)  # rebuilt from the file, planted files gone
    again = load_vectors(path, progress=False)
    assert isinstance(again.vectors, np.memmap)
    assert_same(again)
    assert (v1_cache_folder(path) / "vectors.kv").is_file()  # the old pickle cache is simply never looked at
    assert not marker.exists() and len(planted) == 8


def test_planted_pickles_never_run_through_the_cli(royal, tmp_path, capsys):
    marker = tmp_path / "marker"
    names = ["man", "woman", "king", "queen", "other"]
    plant_everywhere(royal, marker, words=names)
    with pytest.warns(UserWarning, match="ignored the vectors cache"):
        assert main(["neighbours", str(royal), "man", "--topn", "2", "--analogy", "king", "man", "woman"]) == 0
    assert not marker.exists()
    out = capsys.readouterr().out
    assert out.split("king - man + woman:\n")[1].splitlines()[0].endswith("queen")
    assert_plain_cache(_cache_folder(royal, "glove", None, "strict"))
    plant_everywhere(royal, marker, words=names)  # again, over a good cache: still nothing runs
    with pytest.warns(UserWarning, match="ignored the vectors cache"):
        assert main(["neighbours", str(royal), "man", "--topn", "1"]) == 0
    assert not marker.exists() and capsys.readouterr().out.startswith("man:\n")


@pytest.mark.parametrize("name", ["vectors.npy", "expando_count.npy", "words.json", "meta.json"])
@pytest.mark.parametrize("kind", ["object-npy", "raw-pickle"])
def test_a_pickle_in_place_of_a_cache_file_is_ignored_and_rebuilt(tmp_path, name, kind):
    marker = tmp_path / "marker"
    path = write_glove(tmp_path / "tiny.txt")
    load_vectors(path, progress=False)
    folder = _cache_folder(path, "glove", None, "strict")
    target = folder / name
    assert target.is_file()
    if kind == "object-npy":
        plant_object_npy(target, marker)
    else:
        target.write_bytes(planted_pickle(marker))
    with pytest.warns(UserWarning, match=rf"ignored the vectors cache .*{name.replace('.', '[.]')}"):
        vectors = load_vectors(path, progress=False)
    assert not marker.exists()
    assert_same(vectors)
    assert isinstance(load_vectors(path, progress=False).vectors, np.memmap)  # rebuilt, read from the cache again
    assert_plain_cache(folder)


ODD_WORDS = ["new york", "naïve", "東京", "x\u2028y", "tab\tword", "🙂", "the"]


@pytest.mark.parametrize("fmt", ["glove", "word2vec", "word2vec-bin", "glove-surrogateescape"])
def test_cached_reload_returns_exactly_the_first_load(tmp_path, cache, fmt):
    words = list(ODD_WORDS)
    if fmt == "word2vec-bin":  # a binary word ends at its first space, but may hold a newline
        words = [word for word in words if " " not in word] + ["line\nbreak"]
    vectors = np.random.default_rng(0).normal(size=(len(words), 5)).astype(np.float32)
    unicode_errors = "strict"
    if fmt == "word2vec-bin":
        path = write_word2vec_binary(tmp_path / "odd.bin", words, vectors)
    elif fmt == "word2vec":
        path = tmp_path / "odd.w2v.txt"
        path.write_text(f"{len(words)} 5\n" + text_rows(words, vectors), encoding="utf-8")
    else:
        path = write_glove(tmp_path / "odd.txt", words, vectors)
        if fmt == "glove-surrogateescape":  # a word that is not UTF-8: a lone surrogate in Python
            path.write_bytes(path.read_bytes() + b"caf\xe9 1 2 3 4 5\n")
            words, vectors = words + ["caf\udce9"], np.vstack([vectors, np.arange(1, 6, dtype=np.float32)])
            unicode_errors = "surrogateescape"
    first = load_vectors(path, progress=False, unicode_errors=unicode_errors)
    again = load_vectors(path, progress=False, unicode_errors=unicode_errors)
    assert isinstance(again.vectors, np.memmap) and not again.vectors.flags.writeable
    assert again.index_to_key == first.index_to_key == words
    assert again.key_to_index == first.key_to_index
    assert np.array_equal(again.vectors, first.vectors) and np.array_equal(again.vectors, vectors)
    assert np.array_equal(again.expandos["count"], first.expandos["count"])
    assert again.most_similar("naïve", topn=3) == first.most_similar("naïve", topn=3)  # works on a read-only memmap
    assert_plain_cache(next(cache.iterdir()))


def test_fasttext_bin_is_cached_as_plain_arrays_and_reloads_exactly(tmp_path, cache):
    from gensim.models import FastText
    from gensim.models.fasttext import FastTextKeyedVectors, save_facebook_model

    sentences = [["the", "cat", "sat", "on", "the", "mat"], ["the", "dog", "ate", "the", "cat"]] * 5
    model = FastText(sentences, vector_size=8, min_count=1, epochs=2, bucket=200, seed=1, workers=1)
    path = tmp_path / "tiny.bin"
    save_facebook_model(model, str(path))
    first = load_vectors(path, progress=False)
    folder = _cache_folder(path, "fasttext-bin", None, "strict")
    assert sorted(p.name for p in folder.iterdir()) == [
        "expando_count.npy", "expando_sample_int.npy", "meta.json", "vectors.npy", "vectors_ngrams.npy",
        "vectors_vocab.npy", "words.json"]
    assert_plain_cache(folder)

    def assert_exact(again):
        assert isinstance(again, FastTextKeyedVectors) and isinstance(again.vectors_ngrams, np.memmap)
        assert again.index_to_key == first.index_to_key and again.key_to_index == first.key_to_index
        assert (again.min_n, again.max_n, again.bucket) == (first.min_n, first.max_n, first.bucket)
        for name in ("vectors", "vectors_vocab", "vectors_ngrams", "vectors_lockf", "vectors_vocab_lockf",
                     "vectors_ngrams_lockf"):
            assert np.array_equal(getattr(again, name), getattr(first, name)), name
        assert again.expandos.keys() == first.expandos.keys()
        assert all(np.array_equal(again.expandos[k], first.expandos[k]) for k in first.expandos)
        assert all(np.array_equal(a, b) for a, b in zip(again.buckets_word, first.buckets_word, strict=True))
        assert np.array_equal(again["cats"], first["cats"]) and "cats" not in again.key_to_index  # from n-grams
        assert np.array_equal(again["cat"], first["cat"])

    assert_exact(load_vectors(path, progress=False))
    marker = tmp_path / "marker"
    plant_object_npy(folder / "vectors_ngrams.npy", marker)
    (folder / "vectors.kv").write_bytes(planted_pickle(marker))
    with pytest.warns(UserWarning, match=r"vectors_ngrams\.npy is not a plain \.npy"):
        rebuilt = load_vectors(path, progress=False)
    assert not marker.exists()
    np.testing.assert_array_equal(rebuilt.vectors_ngrams, first.vectors_ngrams)
    assert_exact(load_vectors(path, progress=False))


@pytest.mark.parametrize("damage", ["words-short", "vectors-float64", "meta-version-1", "words-not-strings",
                                    "duplicate-words", "npz-archive", "missing-vectors"])
def test_a_malformed_cache_is_rebuilt(tmp_path, damage):
    path = write_glove(tmp_path / "tiny.txt")
    load_vectors(path, progress=False)
    folder = _cache_folder(path, "glove", None, "strict")
    if damage == "words-short":
        (folder / "words.json").write_text(json.dumps(WORDS[:-1]))
    elif damage == "vectors-float64":
        np.save(folder / "vectors.npy", VECTORS.astype(np.float64))
    elif damage == "meta-version-1":
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps(meta | {"cache_version": 1}))
    elif damage == "words-not-strings":
        (folder / "words.json").write_text(json.dumps(WORDS[:-1] + [7]))
    elif damage == "duplicate-words":
        (folder / "words.json").write_text(json.dumps(WORDS[:-1] + ["the"]))
    elif damage == "npz-archive":
        with open(folder / "vectors.npy", "wb") as handle:
            np.savez(handle, vectors=VECTORS)
    else:
        (folder / "vectors.npy").unlink()
    with pytest.warns(UserWarning, match="ignored the vectors cache"):
        assert_same(load_vectors(path, progress=False))
    assert_same(load_vectors(path, progress=False))
    assert_plain_cache(folder)


# ---------------------------------------------------------------- coverage and OOV rows

@pytest.fixture()
def tiny(tmp_path):
    return load_vectors(write_glove(tmp_path / "tiny.txt"), cache=False, progress=False)


def test_coverage_counts_types_tokens_and_the_most_frequent_misses(tiny):
    counts = Counter({"the": 10, "cat": 5, "Dog": 3, "well-made": 2, "zebra": 4, "yak": 1, "ox": 1})
    matrix, word_to_index, coverage = embedding_matrix(counts, tiny, oov="zeros")
    assert (coverage.hits, coverage.misses) == (4, 3)
    assert (coverage.lowercase_hits, coverage.compound_hits) == (1, 1)
    assert (coverage.hit_tokens, coverage.tokens) == (20, 26)
    assert coverage.top_missing == [("zebra", 4), ("ox", 1), ("yak", 1)]
    assert str(coverage) == "Converted 4 words (3 misses); 76.9% of tokens covered"
    np.testing.assert_array_equal(matrix[word_to_index["Dog"]], tiny["dog"])
    np.testing.assert_allclose(matrix[word_to_index["well-made"]], (tiny["well"] + tiny["made"]) / 2)
    assert np.all(matrix[0] == 0) and word_to_index["<pad>"] == 0 and word_to_index["<unk>"] == 1


def test_min_count_sends_rare_missing_words_to_the_unknown_row(tiny):
    embedding = embedding_matrix(Counter({"cat": 3, "zebra": 2, "yak": 1}), tiny, min_count=2)
    assert "zebra" in embedding.word_to_index and "yak" not in embedding.word_to_index
    assert embedding.lookup(["yak", "cat"]) == [1, embedding.word_to_index["cat"]]
    assert list(embedding.oov_rows) == [1, embedding.word_to_index["zebra"]]


def test_all_vectors_adds_every_other_word(tiny):
    embedding = embedding_matrix(Counter({"cat": 1}), tiny, all_vectors=True)
    assert set(WORDS) <= set(embedding.word_to_index)
    np.testing.assert_array_equal(embedding.matrix[embedding.word_to_index["queen"]], tiny["queen"])


def test_oov_zeros_and_random_rows(tmp_path):
    rng = np.random.default_rng(0)
    vectors = load_vectors(write_glove(tmp_path / "wide.txt", [f"w{i}" for i in range(500)],
                                       rng.normal(0, 0.4, (500, 50)).astype(np.float32)), cache=False, progress=False)
    counts = Counter({f"w{i}": 1 for i in range(10)} | {f"missing{i}": 1 for i in range(300)})
    zeros = embedding_matrix(counts, vectors, oov="zeros")
    assert np.all(zeros.matrix[zeros.oov_rows] == 0) and len(zeros.oov_rows) == 301
    random = embedding_matrix(counts, vectors, oov="random", seed=3)
    assert random.matrix[random.oov_rows].std() == pytest.approx(np.std(vectors.vectors), rel=0.05)
    again = embedding_matrix(counts, vectors, oov="random", seed=3)
    np.testing.assert_array_equal(again.matrix, random.matrix)  # seeded
    np.testing.assert_array_equal(random.matrix[random.word_to_index["w3"]], vectors["w3"])


def test_learned_oov_rows_are_the_only_trainable_rows(tiny):
    embedding = embedding_matrix(Counter({"cat": 2, "zebra": 2, "yak": 1}), tiny, oov="learned")
    layer = StaticEmbedding.from_matrix(embedding)
    trainable = [p for p in layer.parameters() if p.requires_grad]
    assert [p.shape for p in trainable] == [torch.Size([3, 3])]  # <unk>, zebra, yak
    before = layer.frozen.detach().clone()
    optimizer = torch.optim.AdamW(trainable, lr=0.1, weight_decay=0.1)
    ids = torch.tensor([embedding.lookup(["cat", "zebra", "yak", "unseen"])])
    layer(ids).pow(2).sum().backward()
    optimizer.step()
    assert torch.equal(layer.frozen, before)
    assert not torch.allclose(layer(ids)[0, 1], torch.as_tensor(embedding.matrix[embedding.word_to_index["zebra"]]))
    assert torch.equal(layer(ids)[0, 0], torch.tensor(np.array(tiny["cat"])))
    frozen_only = StaticEmbedding.from_matrix(embedding_matrix(Counter({"zebra": 1}), tiny, oov="random"))
    assert not any(p.requires_grad for p in frozen_only.parameters())


def test_bad_oov_option_suggests_the_closest(tiny):
    with pytest.raises(NLPTransferError, match="did you mean 'learned'"):
        embedding_matrix(Counter({"cat": 1}), tiny, oov="learn")


# ---------------------------------------------------------------- neighbours

@pytest.fixture()
def royal(tmp_path):
    names = ["man", "woman", "king", "queen", "other"]
    values = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float32)
    return write_glove(tmp_path / "royal.txt", names, values)


def test_most_similar_and_analogy_on_hand_made_vectors(royal):
    vectors = load_vectors(royal, progress=False)
    assert most_similar(vectors, "king", topn=1)[0][0] in ("man", "queen", "other")
    scores = dict(most_similar(vectors, "man", topn=4))
    assert scores["king"] == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    assert analogy(vectors, "king", "man", "woman", topn=1)[0][0] == "queen"
    assert most_similar(royal, ["king", "woman"], negative=["man"], topn=1)[0][0] == "queen"  # a path works too


def test_most_similar_unknown_word_suggests_a_close_one(royal):
    with pytest.raises(NLPTransferError, match=r"'kingg' is not in the vectors \(5 words\); did you mean 'king'\?"):
        most_similar(royal, "kingg")
    with pytest.raises(NLPTransferError, match="did you mean 'queen'.*lower-cased"):
        most_similar(royal, "Queen")


def test_cli_neighbours(royal, capsys):
    assert main(["neighbours", str(royal), "man", "--topn", "2", "--analogy", "king", "man", "woman"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("man:\n") and "king - man + woman:\n" in out
    assert out.split("king - man + woman:\n")[1].splitlines()[0].endswith("queen")
    assert main(["neighbours", str(royal), "man", "womann"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "did you mean 'woman'" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


# ---------------------------------------------------------------- tokenizer

@pytest.mark.parametrize("text, expected", [
    ("The movie's good.", ["the", "movie", "'s", "good", "."]),
    ("it 's a charming journey . ", ["it", "'s", "a", "charming", "journey", "."]),
    ("I don't, can't -- won't", ["i", "do", "n't", ",", "ca", "n't", "--", "wo", "n't"]),
    ("U.S. sales rose 3.5% to $1,000...", ["u.s.", "sales", "rose", "3.5", "%", "to", "$", "1,000", "..."]),
    ("a well-made, o'clock ``film''", ["a", "well-made", ",", "o'clock", "``", "film", "''"]),
    ("It’s", ["it", "'s"]),
])
def test_words_splits_like_glove_tokenization(text, expected):
    assert words(text) == expected


def test_words_can_keep_case():
    assert words("Paris in May!", lowercase=False) == ["Paris", "in", "May", "!"]
