"""Embedding extraction: pooling, layers, order, agreement with sentence-transformers, resumable output."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import SAMPLE_DEV

from nlp_transfer import NLPTransferError, embed
from nlp_transfer.encoders import Encoder, load_embeddings

TEXTS = ["a gorgeous , witty , seductive movie .", "bad", "the plot is nothing but boilerplate clichés from start to end",
         "it 's a charming and often affecting journey .", "Москва — столица России", "東京は日本の首都です"]


def dev_sentences(count: int) -> list[str]:
    return [line.rsplit("\t", 1)[0].strip() for line in SAMPLE_DEV.read_text().splitlines()[1:count + 1]]


@pytest.fixture(scope="module")
def encoder(tiny_xlmr):
    return Encoder(str(tiny_xlmr))


def manual(encoder, text, layers, pooling):
    batch = encoder.tokenizer([text], return_tensors="pt").to(next(encoder.model.parameters()).device)  # CUDA on a GPU
    with torch.inference_mode():
        states = encoder.model(**batch, output_hidden_states=True).hidden_states
    hidden = torch.stack([states[layer] for layer in layers]).mean(0)[0]
    return {"cls": hidden[0], "mean": hidden.mean(0), "max": hidden.max(0).values}[pooling].cpu().numpy()


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
@pytest.mark.parametrize("layers", [[-1], [-2, -1], [0]])
def test_pooling_over_layers_matches_a_single_unpadded_pass(encoder, pooling, layers):
    vectors = embed(encoder, TEXTS, pooling=pooling, layers=layers, batch_size=4)  # batches padded to the longest
    for text, vector in zip(TEXTS, vectors):
        np.testing.assert_allclose(vector, manual(encoder, text, layers, pooling), atol=1e-5)


def test_results_come_back_in_input_order_and_normalized(encoder):
    vectors = embed(encoder, TEXTS, normalize=True, batch_size=2)
    one_by_one = np.stack([embed(encoder, [t], normalize=True)[0] for t in TEXTS])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embed(encoder, TEXTS, dtype="float16").dtype == np.float16


def test_bad_settings_are_clear_errors(encoder):
    with pytest.raises(NLPTransferError, match="layer 7 does not exist"):
        embed(encoder, TEXTS, layers=7)
    with pytest.raises(NLPTransferError, match="pooling 'avg' is not one of cls, mean, max"):
        embed(encoder, TEXTS, pooling="avg")


def test_minilm_mean_normalized_matches_sentence_transformers_on_200_sentences():
    from sentence_transformers import SentenceTransformer

    from nlp_transfer.models import resolve

    sentences = dev_sentences(200)
    ours = embed("minilm-l6", sentences, pooling="mean", normalize=True)
    reference = SentenceTransformer(resolve("minilm-l6"), device="cpu").encode(sentences, normalize_embeddings=True)
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() >= 0.9999


def test_disk_output_in_chunks_equals_in_memory_and_has_a_sidecar(encoder, tmp_path):
    sentences = dev_sentences(50)
    on_disk = embed(encoder, sentences, tmp_path / "emb", chunk_size=16, batch_size=8)
    in_memory = embed(encoder, sentences, batch_size=8)
    np.testing.assert_allclose(np.asarray(on_disk), in_memory, atol=1e-6)
    array, sidecar = load_embeddings(tmp_path / "emb")
    assert array.shape == (50, encoder.dim) and sidecar["count"] == 50 and sidecar["chunks"] == 4
    assert sidecar["pooling"] == "mean" and sidecar["dim"] == encoder.dim and len(sidecar["input_sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["embeddings.json", "embeddings.npy"]


def test_killed_embedding_run_resumes_to_an_identical_array(tiny_bert, tmp_path):
    sentences = [line.rsplit("\t", 1)[0].strip() for line in SAMPLE_DEV.read_text().splitlines()[1:]] * 3
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(sentences) + "\n")
    command = [sys.executable, "-m", "nlp_transfer", "embed", str(tiny_bert), "--input", str(source),
               "--chunk-size", "256", "--batch-size", "8"]
    killed = subprocess.Popen(command + ["--output", str(tmp_path / "resumed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    chunks = tmp_path / "resumed" / ".chunks"
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None and len(list(chunks.glob("chunk-*.npy"))) < 2:
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "resumed" / "embeddings.npy").exists()
    finished_before = len(list(chunks.glob("chunk-*.npy")))
    assert 2 <= finished_before < 11  # 2,616 texts in 11 chunks

    subprocess.run(command + ["--output", str(tmp_path / "resumed")], check=True, capture_output=True)
    subprocess.run(command + ["--output", str(tmp_path / "whole")], check=True, capture_output=True)
    resumed, sidecar = load_embeddings(tmp_path / "resumed")
    whole, _ = load_embeddings(tmp_path / "whole")
    assert sidecar["resumed_chunks"] >= finished_before
    assert np.array_equal(np.asarray(resumed), np.asarray(whole))
