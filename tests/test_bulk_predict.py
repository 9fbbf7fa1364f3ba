"""`nlp-transfer predict` on files of any size (issue 29): read and predicted chunk by chunk, resumable after a kill,
marked partial until complete, and split across processes under `accelerate launch` with the same output."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, cli_error, tiny_recipe, write_sst2_card
from test_distributed import launch_env

from nlp_transfer.cli import main

WORDS = ("a gorgeous , witty film", "the plot is nothing but boilerplate", "charming and moving", "dull , flat , tedious",
         "an ambitious mess", "the best film of the year")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert):
    from nlp_transfer import train

    folder = tmp_path_factory.mktemp("bulk")
    card = write_sst2_card(folder, train_rows=96, dev_rows=32)
    train(tiny_recipe(card, tiny_bert, folder / "run", max_steps=4))
    return folder / "run"


def texts_file(path, count: int):
    """``count`` generated texts, one per line, every 7th line blank (skipped, as predict skips blank lines)."""
    lines = [("" if i % 7 == 6 else f"{WORDS[i % len(WORDS)]} number {i}") for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [line for line in lines if line]


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def command(*args) -> list[str]:
    return [sys.executable, "-m", "nlp_transfer", "predict", *map(str, args)]


def test_chunks_give_the_same_rows_as_one_pass_in_input_order(classifier, tmp_path, capsys):
    texts = texts_file(tmp_path / "in.txt", 700)
    assert main(["predict", str(classifier), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "a.jsonl"),
                 "--chunk-size", "64", "--device", "cpu"]) == 0
    assert main(["predict", str(classifier), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "b.jsonl"),
                 "--chunk-size", "100000", "--device", "cpu"]) == 0
    a, b = rows(tmp_path / "a.jsonl"), rows(tmp_path / "b.jsonl")
    assert [r["text"] for r in a] == texts
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert all(abs(x["score"] - y["score"]) < 1e-5 for x, y in zip(a, b))
    assert not list(tmp_path.glob("*.partial*"))  # nothing left beside a complete output


def test_a_killed_predict_resumes_with_every_row_once_in_order(classifier, tmp_path):
    texts = texts_file(tmp_path / "in.txt", 6000)
    output, state = tmp_path / "out.jsonl", tmp_path / "out.jsonl.partial.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = command(classifier, "--input", tmp_path / "in.txt", "--output", output, "--chunk-size", "50",
                   "--batch-size", "8", "--device", "cpu")
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and len(json.loads(state.read_text()).get("chunks", [])) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed; give it more rows"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists() and (tmp_path / "out.jsonl.partial").is_file()  # partial, never the final name
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after" in done.stdout
    got = rows(output)
    assert [r["text"] for r in got] == texts  # exactly one row per input line, in order
    assert not state.exists() and not (tmp_path / "out.jsonl.partial").exists()


def test_a_bad_row_late_in_the_file_stops_with_its_line_and_keeps_the_output_partial(classifier, tmp_path, capsys):
    lines = [json.dumps({"text": f"{WORDS[i % len(WORDS)]} {i}"}) for i in range(300)]
    lines[250] = json.dumps({"text": None})
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = cli_error(capsys, ["predict", classifier, "--input", tmp_path / "in.jsonl", "--output",
                                 tmp_path / "p.jsonl", "--chunk-size", "100", "--device", "cpu"], progress_before=True)
    assert "in.jsonl: line 251: empty or missing text in column 'text'" in message
    assert "p.jsonl.partial, which is not complete" in message
    assert not (tmp_path / "p.jsonl").exists()
    assert len(rows(tmp_path / "p.jsonl.partial")) == 200  # the chunks before the bad one


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_write_the_same_output_as_one(classifier, tmp_path):
    texts = texts_file(tmp_path / "in.txt", 900)
    one = tmp_path / "one.jsonl"
    assert main(["predict", str(classifier), "--input", str(tmp_path / "in.txt"), "--output", str(one),
                 "--chunk-size", "64", "--device", "cpu"]) == 0
    two = tmp_path / "two.jsonl"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "nlp_transfer",
              "predict", str(classifier), "--input", str(tmp_path / "in.txt"), "--output", str(two),
              "--chunk-size", "64", "--device", "cpu"]
    env = {**launch_env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("nlp-transfer: wrote 772 predictions") == 1  # the main process joined both parts
    a, b = rows(one), rows(two)
    assert [r["text"] for r in b] == texts == [r["text"] for r in a]
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert all(abs(x["score"] - y["score"]) < 1e-5 for x, y in zip(a, b))
    assert not list(tmp_path.glob("two.jsonl.partial*"))
