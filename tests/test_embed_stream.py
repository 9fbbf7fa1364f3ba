"""`embed` on inputs of any size (issue 29): any iterable read once chunk by chunk, resumable per chunk after a kill,
sharded under `accelerate launch` with the same array, and `nlp-transfer embed` streaming its --input / --data."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, SAMPLE_DEV, cli_error, write_sst2_card
from test_distributed import launch_env

from nlp_transfer import NLPTransferError, embed
from nlp_transfer.cli import main
from nlp_transfer.encoders import Encoder, load_embeddings


def sentences(count: int) -> list[str]:
    """``count`` SST-2 dev sentences (cycled, each numbered so that no two texts are the same)."""
    pool = [line.rsplit("\t", 1)[0].strip() for line in SAMPLE_DEV.read_text().splitlines()[1:]]
    return [f"{pool[i % len(pool)]} {i}" for i in range(count)]


@pytest.fixture(scope="module")
def encoder(tiny_bert):
    return Encoder(str(tiny_bert))


def test_a_generator_gives_the_array_a_list_gives(encoder, tmp_path):
    texts = sentences(300)
    from_list = embed(encoder, texts, tmp_path / "list", chunk_size=64, batch_size=8)
    from_generator = embed(encoder, (text for text in texts), tmp_path / "generator", chunk_size=64, batch_size=8)
    assert np.array_equal(np.asarray(from_list), np.asarray(from_generator))
    # in memory: one pass over all 300, so the length-sorted batches (and their padded widths) are not the chunks'
    # and the last bits may differ; the same chunks give the same bits, as above
    np.testing.assert_allclose(embed(encoder, iter(texts), batch_size=8), np.asarray(from_list), atol=1e-6)
    _, sidecar = load_embeddings(tmp_path / "generator")
    assert sidecar["count"] == 300 and sidecar["chunks"] == 5 and sidecar["resumed_chunks"] == 0
    assert sidecar == {**load_embeddings(tmp_path / "list")[1], "seconds": sidecar["seconds"]}  # the same input digest


def test_the_input_is_read_one_chunk_ahead_of_the_encoding_at_most(encoder, tmp_path, monkeypatch):
    pulled, seen_at_encode = [0], []

    def texts():
        for text in sentences(200):
            pulled[0] += 1
            yield text

    encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda part, *rest: seen_at_encode.append(pulled[0]) or encode(part, *rest))
    embed(encoder, texts(), tmp_path / "emb", chunk_size=50)
    assert seen_at_encode == [50, 100, 150, 200]  # each chunk encoded before the next one is read


def stopping(texts: list[str], after: int):
    """``texts`` until the one at ``after``, where reading stops as a reader stops at a bad row."""
    for number, text in enumerate(texts):
        if number == after:
            raise NLPTransferError(f"in.txt: line {number + 1}: a bad row")
        yield text


def test_changed_texts_reencode_only_their_chunks_and_other_settings_start_over(encoder, tmp_path, monkeypatch):
    texts = sentences(200)
    with pytest.raises(NLPTransferError, match="line 151: a bad row .the chunks embedded before it are kept"):
        embed(encoder, stopping(texts, 150), tmp_path / "emb", chunk_size=50)
    assert len(list((tmp_path / "emb" / ".chunks").glob("chunk-*.npy"))) == 3
    assert not (tmp_path / "emb" / "embeddings.npy").exists()
    encoded = []
    encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda part, *rest: encoded.append(part[0]) or encode(part, *rest))
    changed = texts[:60] + ["another text in the second chunk"] + texts[61:]
    array = embed(encoder, changed, tmp_path / "emb", chunk_size=50)
    assert encoded == [changed[50], changed[150]]  # the changed chunk and the one never finished
    assert load_embeddings(tmp_path / "emb")[1]["resumed_chunks"] == 2
    assert np.array_equal(np.asarray(array), np.asarray(embed(encoder, changed, tmp_path / "fresh", chunk_size=50)))

    with pytest.raises(NLPTransferError):
        embed(encoder, stopping(texts, 150), tmp_path / "other", chunk_size=50)
    encoded.clear()
    embed(encoder, texts, tmp_path / "other", chunk_size=50, normalize=True)  # other settings: every chunk again
    assert len(encoded) == 4 and load_embeddings(tmp_path / "other")[1]["resumed_chunks"] == 0


def test_a_killed_run_over_a_generator_resumes_to_an_identical_array(tiny_bert, tmp_path):
    texts = sentences(3000)
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    script = ("import sys\nfrom nlp_transfer import embed\n"
              "lines = (line.rstrip('\\n') for line in open(sys.argv[2], encoding='utf-8'))\n"
              "embed(sys.argv[1], lines, sys.argv[3], chunk_size=200, batch_size=8, device='cpu')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", script, str(tiny_bert), str(tmp_path / "texts.txt")]
    killed = subprocess.Popen(command + [str(tmp_path / "resumed")], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    chunks = tmp_path / "resumed" / ".chunks"
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None and len(list(chunks.glob("chunk-*.json"))) < 3:
        time.sleep(0.02)
    assert killed.poll() is None, "the run finished before it could be killed; give it more texts"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "resumed" / "embeddings.npy").exists()
    finished_before = len(list(chunks.glob("chunk-*.json")))
    assert 3 <= finished_before < 15  # 3,000 texts in 15 chunks

    for folder in ("resumed", "whole"):
        done = subprocess.run(command + [str(tmp_path / folder)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    resumed, sidecar = load_embeddings(tmp_path / "resumed")
    whole, _ = load_embeddings(tmp_path / "whole")
    assert sidecar["resumed_chunks"] >= finished_before and sidecar["count"] == 3000
    assert np.array_equal(np.asarray(resumed), np.asarray(whole))
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["embeddings.json", "embeddings.npy"]


def test_a_bad_row_late_in_the_file_names_its_line_and_the_rerun_resumes(tiny_bert, tmp_path, capsys):
    lines = [json.dumps({"text": text}) for text in sentences(300)]
    good = list(lines)
    lines[250] = json.dumps({"text": None})
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["embed", tiny_bert, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "emb", "--chunk-size", "100",
            "--device", "cpu"]
    message = cli_error(capsys, argv, progress_before=True)
    assert "in.jsonl: line 251: empty or missing text in column 'text'" in message
    assert "the chunks embedded before it are kept in" in message
    assert not (tmp_path / "emb" / "embeddings.npy").exists()
    assert len(list((tmp_path / "emb" / ".chunks").glob("chunk-*.npy"))) == 2  # the chunks before the bad one

    (tmp_path / "in.jsonl").write_text("\n".join(good) + "\n", encoding="utf-8")
    assert main([str(a) for a in argv]) == 0
    assert "resuming: 2 chunks" in capsys.readouterr().out
    array, sidecar = load_embeddings(tmp_path / "emb")
    assert sidecar["resumed_chunks"] == 2 and sidecar["count"] == 300
    fresh = embed(str(tiny_bert), sentences(300), tmp_path / "fresh", chunk_size=100, device="cpu")
    assert np.array_equal(np.asarray(array), np.asarray(fresh))


def test_cli_streams_a_data_card_split(tiny_bert, tmp_path):
    card = write_sst2_card(tmp_path / "data", train_rows=40, dev_rows=70)
    assert main(["embed", str(tiny_bert), "--data", str(card), "--split", "validation", "--output",
                 str(tmp_path / "emb"), "--chunk-size", "32", "--device", "cpu"]) == 0
    rows = (tmp_path / "data" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [row.rsplit("\t", 1)[0] for row in rows]
    array, sidecar = load_embeddings(tmp_path / "emb")
    assert sidecar["count"] == 70 and sidecar["chunks"] == 3
    fresh = embed(str(tiny_bert), texts, tmp_path / "fresh", chunk_size=32, device="cpu")
    assert np.array_equal(np.asarray(array), np.asarray(fresh))


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_write_the_same_array_as_one(tiny_bert, tmp_path):
    texts = sentences(900)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    args = ["-m", "nlp_transfer", "embed", str(tiny_bert), "--input", str(tmp_path / "in.txt"), "--chunk-size", "64",
            "--batch-size", "8", "--device", "cpu"]
    # the same threads per process in both runs (a matrix product may sum in another order on another thread count)
    env = {**launch_env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "--output", str(tmp_path / "one")], capture_output=True, text=True,
                         env=env, timeout=600, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args,
              "--output", str(tmp_path / "two")]
    two = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "embedding on 2 processes" in two.stdout  # really two ranks, not one (accelerate's --cpu pitfall)
    assert two.stdout.count("nlp-transfer: wrote 900 x 32 float32 embeddings") == 1  # the main process joined them
    (a, one_sidecar), (b, two_sidecar) = load_embeddings(tmp_path / "one"), load_embeddings(tmp_path / "two")
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert one_sidecar["input_sha256"] == two_sidecar["input_sha256"] and two_sidecar["chunks"] == 15
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["embeddings.json", "embeddings.npy"]
