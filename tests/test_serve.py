"""`nlp-transfer serve`: a real uvicorn server on localhost (a free port) serving tiny models trained here.

Covers /health, /predict against `load_model(...).predict`, concurrent requests sharing batches, a request larger than
max_batch, the 413 and 400 answers, a model error isolated to its own request, clean shutdown (in thread and of the
CLI process under SIGTERM) and the CLI's option checks."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from conftest import CONLL_DIR, REPO, cli_error, take_sentences, tiny_recipe, write_card, write_sst2_card

from nlp_transfer import NLPTransferError, load_model, train
from nlp_transfer.export.serve import create_app, start_in_thread

TEXTS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés",
         "an utterly charming and hilarious film", "it 's a dull , lifeless mess", "not bad at all",
         "Angela Merkel visited Paris on Monday .", "one of the worst films of the year",
         "a masterpiece of quiet emotion", "tedious and overlong", "funny , smart and moving"]


def call(server, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    """One request on its own connection: (status, JSON answer)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        if body is not None and not isinstance(body, (bytes, str)) and not hasattr(body, "__next__"):
            body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers or {},
                           encode_chunked=hasattr(body, "__next__"))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("serve-classifier")
    train(tiny_recipe(write_sst2_card(folder / "data"), tiny_bert, folder / "run", num_train_epochs=1))
    return folder / "run"


@pytest.fixture(scope="module")
def classifier(classifier_dir):
    return load_model(classifier_dir, "cpu")


@pytest.fixture(scope="module")
def server(classifier):
    """max_wait_ms=50 so that requests sent together share a batch even on a busy machine."""
    with start_in_thread(create_app(classifier, max_texts=10, max_bytes=4000, max_batch=4, max_wait_ms=50,
                                    name="tiny-sst2"), port=0) as running:
        yield running


def test_health_names_the_model_task_labels_and_counters(server):
    status, health = call(server, "GET", "/health")
    assert status == 200
    assert health["status"] == "ok" and health["model"] == "tiny-sst2"
    assert health["task"] == "sequence-classification" and health["labels"] == ["negative", "positive"]
    assert {"requests", "texts", "batches", "errors"} <= set(health)
    assert health["limits"] == {"max_texts": 10, "max_bytes": 4000, "max_batch": 4, "max_wait_ms": 50}


def test_predict_gives_what_load_model_predicts_in_request_order(server, classifier):
    expected = classifier.predict(TEXTS)
    status, answer = call(server, "POST", "/predict", {"texts": TEXTS})  # 10 texts: 3 batches of max_batch 4
    assert status == 200
    assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in expected]
    for got, want in zip(answer["predictions"], expected):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
    status, bare = call(server, "POST", "/predict", TEXTS[:2])  # a bare JSON list works too
    assert status == 200 and [p["label"] for p in bare["predictions"]] == [p["label"] for p in expected[:2]]


def test_concurrent_requests_are_answered_correctly_and_share_batches(server, classifier):
    expected = [p["label"] for p in classifier.predict(TEXTS)]
    before = call(server, "GET", "/health")[1]
    barrier, answers = threading.Barrier(8), [None] * 8

    def client(index: int) -> None:
        barrier.wait()
        answers[index] = call(server, "POST", "/predict", {"texts": [TEXTS[index], TEXTS[index + 1]]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for index, (status, answer) in enumerate(answers):
        assert status == 200
        assert [p["label"] for p in answer["predictions"]] == expected[index:index + 2]
    after = call(server, "GET", "/health")[1]
    assert after["requests"] - before["requests"] == 8 and after["texts"] - before["texts"] == 16
    assert after["batches"] - before["batches"] < 8  # 16 texts at max_batch 4: 4 batches when all arrive together


@pytest.mark.parametrize("body, status, words", [
    ("{\"texts\": [\"a\"", 400, "malformed JSON"),
    (b'["\xff"]', 400, "not UTF-8"),
    ({"texts": ["fine", 3]}, 400, "texts[1] is a JSON number, not a string"),
    ({"texts": []}, 400, "empty list"),
    ({"texts": ["fine", "  "]}, 400, "texts[1] is empty"),
    ({"text": ["fine"]}, 400, "did you mean 'texts'"),
    ({"texts": "fine"}, 400, "not a list of strings"),
    ({"texts": ["short"] * 11}, 413, "11 texts in one request, the limit is 10"),
    (json.dumps(["x" * 5000]), 413, "over the limit of 4000 bytes"),
    (iter([b'["', b"x" * 3000, b"x" * 3000, b'"]']), 413, "over the limit of 4000 bytes"),  # chunked: no length
])
def test_bad_requests_are_answered_with_a_one_line_error(server, body, status, words):
    got, answer = call(server, "POST", "/predict", body)
    assert got == status, answer
    assert set(answer) == {"error"} and words in answer["error"] and "\n" not in answer["error"]


def test_unknown_paths_and_methods_answer_json_errors(server):
    assert call(server, "GET", "/nothing")[0] == 404
    status, answer = call(server, "GET", "/predict")
    assert status == 405 and "POST /predict" in answer["error"]


class Stub:
    """A predictor that refuses texts containing 'boom' the way a model does (NLPTransferError), slowly."""

    task = "sequence-classification"
    label_names = ["a", "b"]

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls = delay, []

    def predict(self, texts):
        self.calls.append(list(texts))
        time.sleep(self.delay)
        if any("boom" in t for t in texts):
            raise NLPTransferError("text 'boom' cannot be predicted; leave it out")
        return [{"label": "a", "length": len(t)} for t in texts]


def test_a_model_error_answers_400_to_its_request_only():
    stub = Stub(delay=0.05)
    with start_in_thread(create_app(stub, max_wait_ms=200), port=0) as running:
        answers = {}

        def client(text: str) -> None:
            answers[text] = call(running, "POST", "/predict", [text])

        threads = [threading.Thread(target=client, args=(t,)) for t in ("fine", "boom", "also fine")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert answers["boom"] == (400, {"error": "text 'boom' cannot be predicted; leave it out"})
    assert answers["fine"] == (200, {"predictions": [{"label": "a", "length": 4}]})
    assert answers["also fine"][0] == 200
    assert len(stub.calls[0]) == 3  # one shared batch first, then each request alone to find the bad one


def test_a_keep_alive_request_takes_milliseconds_not_a_delayed_ack():
    """Without TCP_NODELAY on the accepted connections, the response's second write waits for the client's delayed
    ACK: about 40 ms per request."""
    with start_in_thread(create_app(Stub(), max_wait_ms=0), port=0) as running:
        connection = http.client.HTTPConnection(running.host, running.port, timeout=30)
        took = []
        for _ in range(21):
            started = time.perf_counter()
            connection.request("POST", "/predict", body=b'["fast"]')
            assert connection.getresponse().read()
            took.append(time.perf_counter() - started)
        connection.close()
    assert sorted(took)[10] < 0.025, took


def test_stop_finishes_the_request_in_flight_then_frees_the_port():
    stub = Stub(delay=0.5)
    app = create_app(stub, max_wait_ms=0)
    running = start_in_thread(app, port=0)
    answer = {}
    client = threading.Thread(target=lambda: answer.update(result=call(running, "POST", "/predict", ["slow"])))
    client.start()
    time.sleep(0.2)  # the prediction is running
    running.stop()
    client.join(10)
    assert answer["result"] == (200, {"predictions": [{"label": "a", "length": 4}]})
    assert not running.running and app.state.counters()["status"] == "stopped"  # batching task ended
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((running.host, running.port), timeout=5)
    with socket.socket() as again:  # a new server can listen on the port again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind((running.host, running.port))


def test_closing_the_batcher_answers_what_is_still_waiting_with_503():
    import asyncio

    from nlp_transfer.export.serve import Batcher, RequestError

    async def scenario():
        batcher = Batcher(Stub(delay=0.3).predict, max_batch=2, max_wait_ms=0)
        batcher.start()
        running = asyncio.ensure_future(batcher.predict(["first", "second"]))  # a full batch: runs at once
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.predict(["third"]))
        await asyncio.sleep(0.01)
        await batcher.close()  # the running call finishes in its thread; nobody is left waiting
        with pytest.raises(RequestError, match="starting or shutting down"):
            await batcher.predict(["late"])
        return await asyncio.gather(running, queued, return_exceptions=True)

    answers = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert all(isinstance(a, RequestError) and a.status == 503 for a in answers), answers


def test_ner_tagger_answers_entity_lists(tmp_path_factory, tiny_bert):
    if not CONLL_DIR.is_dir():
        pytest.skip("../shared/data/conll2003 is not beside this checkout")
    folder = tmp_path_factory.mktemp("serve-ner")
    for name, count in (("train.txt", 200), ("valid.txt", 30)):
        take_sentences(CONLL_DIR / name, folder / name, count)
    card = write_card(folder, "conll-toy", task="token-classification",
                      splits={"train": "train.txt", "validation": "valid.txt"}, format="conll",
                      columns=["token", "pos", "chunk", "ner"], tags="ner")
    recipe = tiny_recipe(card, tiny_bert, folder / "run", num_train_epochs=2, learning_rate=3e-3)
    recipe.update(task="token-classification", max_length=32)
    train(recipe)
    tagger = load_model(folder / "run", "cpu")
    texts = ["Peter Blackburn visited Brussels on Thursday .", "EU rejects German call to boycott British lamb ."]
    with start_in_thread(create_app(tagger), port=0) as running:
        health = call(running, "GET", "/health")[1]
        status, answer = call(running, "POST", "/predict", {"texts": texts})
    assert health["task"] == "token-classification"
    assert status == 200 and len(answer["predictions"]) == 2
    expected = tagger.predict(texts)
    for text, got, want in zip(texts, answer["predictions"], expected):
        assert [(e["type"], e["start"], e["end"]) for e in got] == [(e["type"], e["start"], e["end"]) for e in want]
        assert all(text[e["start"]:e["end"]] == e["text"] for e in got)


@pytest.mark.parametrize("argv, words", [
    (["--port", "70000"], "--port 70000: must be between 0 and 65535"),
    (["--max-batch", "0"], "--max-batch 0: must be a whole number >= 1"),
    (["--max-texts", "-1"], "--max-texts -1"),
    (["--max-bytes", "0"], "--max-bytes 0"),
    (["--max-wait-ms", "-5"], "--max-wait-ms -5.0: must be between 0"),
])
def test_cli_checks_the_options_before_loading_the_model(capsys, tmp_path, argv, words):
    line = cli_error(capsys, ["serve", tmp_path / "no-such-run", *argv])  # the model would fail to load
    assert words in line


def test_cli_reports_a_taken_port_and_missing_packages_in_one_line(capsys, tmp_path, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = cli_error(capsys, ["serve", tmp_path / "no-such-run", "--port", port])
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the extra were not installed
    line = cli_error(capsys, ["serve", tmp_path / "no-such-run"])
    assert line == "error: nlp-transfer serve needs FastAPI and uvicorn: pip install 'nlp_transfer[serve]'"


def test_cli_serves_then_shuts_down_cleanly_on_sigterm(classifier_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "nlp_transfer", "serve", str(classifier_dir), "--port", "0",
                                "--device", "cpu"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert first.startswith(f"nlp-transfer: serving {classifier_dir} on http://127.0.0.1:"), first
        address = SimpleNamespace(host="127.0.0.1", port=int(first.split("http://127.0.0.1:")[1].split()[0]))
        status, answer = call(address, "POST", "/predict", {"texts": TEXTS[:3]})
        assert status == 200 and len(answer["predictions"]) == 3
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped serving" in out and "1 requests, 3 texts" in out
    assert "Traceback" not in err and "Application shutdown complete" in err


def test_the_load_benchmark_runs_bounded_on_a_tiny_model(classifier_dir):
    from benchmarks import serve_load

    args = serve_load.build_parser().parse_args([str(classifier_dir), "--requests", "24", "--concurrency", "4",
                                                 "--rounds", "1", "--no-record"])
    figures = serve_load.measure(args)
    assert figures["ok"] == figures["sent"] == 24 and figures["errors"] == 0 and not figures["time_bound_hit"]
    assert figures["batches"] <= 24 and figures["inprocess_texts"] == 24
    assert figures["latency_p50_ms"] <= figures["latency_p95_ms"] <= figures["latency_p99_ms"]
    recorded = serve_load.entries(figures, args)
    key = f"serve/sst2/{figures['model']}/c4"
    assert f"{key}/requests_per_second" in recorded and f"{key}/latency_p95_ms" in recorded
    text = serve_load.section(figures, args)
    assert text.startswith(serve_load.START) and text.endswith(serve_load.END) and "| texts/s |" in text
