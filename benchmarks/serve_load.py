"""Load test of `nlp-transfer serve`: requests/s and latency of the HTTP server next to `model.predict` in-process.

    python -m benchmarks.serve_load                          # runs/sst2-minilm, 400 requests of 1 text, 8 clients
    python -m benchmarks.serve_load RUN_DIR --requests 200 --concurrency 4 --texts-per-request 8 --no-record
    python -m benchmarks.serve_load --max-batch 1            # batching off: every request is its own model call

The server runs in this process (`nlp_transfer.export.serve.start_in_thread`, uvicorn, logs off) on a free localhost port;
the clients run in a second Python process (plain ``http.client``, one keep-alive connection per client thread), so
they do not compete with the server for this process's GIL. Each round is bounded twice: ``--requests`` in all, and
no new request after ``--max-seconds`` (the report says how many were sent). Texts are SST-2 dev sentences
(../shared/data/sst2/dev.tsv, else samples/sst2/dev.tsv), cycled. The peer is the same texts through
``model.predict([text])`` one call at a time in this process (bounded the same way): what a script without the server
would do per incoming text. Peer and server rounds alternate (``--rounds``, default 2) and each side's best round
counts, so a noisy neighbour hurts both alike. Torch uses ``--threads`` threads (default 1) in both.

Records ``serve/sst2/MODEL/cC[-tN][-bB]/...`` in benchmarks/results.json (requests_per_second, texts_per_second,
latency_p50_ms, latency_p95_ms, latency_p99_ms, errors, the in-process figures and the ratios) and writes the
"HTTP serving" section of benchmarks/RESULTS.md; ``--no-record`` only prints.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_FILES = (ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv", ROOT / "samples" / "sst2" / "dev.tsv")
DEFAULT_RUN = "runs/sst2-minilm"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- serve:start -->", "<!-- serve:end -->"


def dev_sentences() -> list[str]:
    """SST-2 dev sentences: the full dev split beside the checkout, else the shipped sample's."""
    source = next((path for path in DEV_FILES if path.is_file()), None)
    if source is None:
        raise SystemExit(f"no SST-2 dev file: looked for {' and '.join(map(str, DEV_FILES))}")
    return [line.rsplit("\t", 1)[0].strip() for line in source.read_text(encoding="utf-8").splitlines()[1:] if line]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---------------------------------------------------------------------------------------------- the client process

def run_clients(host: str, port: int, requests: int, texts_per_request: int, concurrency: int,
                max_seconds: float) -> dict:
    """Send up to ``requests`` POST /predict from ``concurrency`` threads, none started after ``max_seconds``."""
    sentences = dev_sentences()
    lock, state = threading.Lock(), {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + max_seconds

    def take() -> int | None:
        with lock:
            if state["next"] >= requests or time.perf_counter() >= deadline:
                return None
            state["next"] += 1
            return state["next"] - 1

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        while (index := take()) is not None:
            first = index * texts_per_request
            texts = [sentences[(first + i) % len(sentences)] for i in range(texts_per_request)]
            body = json.dumps({"texts": texts})
            sent = time.perf_counter()
            try:
                connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                took = time.perf_counter() - sent
                if response.status != 200:
                    errors.append(f"{response.status}: {answer[:200]!r}")
                elif len(json.loads(answer)["predictions"]) != texts_per_request:
                    errors.append("wrong number of predictions")
                else:
                    with lock:
                        latencies.append(took)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"sent": state["next"], "ok": len(latencies), "errors": len(errors), "first_errors": errors[:3],
            "wall_s": wall, "latencies_s": latencies, "time_bound_hit": state["next"] < requests}


def client_process(host: str, port: int, args) -> dict:
    """`run_clients` in a fresh Python process (stdlib only), its result read from stdout."""
    command = [sys.executable, "-m", "benchmarks.serve_load", "--client-of", f"{host}:{port}",
               "--requests", str(args.requests), "--texts-per-request", str(args.texts_per_request),
               "--concurrency", str(args.concurrency), "--max-seconds", str(args.max_seconds)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.max_seconds + 120)
    if done.returncode:
        raise SystemExit(f"the load-test clients failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- the measurement

def in_process(model, texts: list[str], max_seconds: float) -> dict:
    """The peer: ``model.predict([text])`` one text at a time, bounded in count and time."""
    latencies = []
    started = time.perf_counter()
    for text in texts:
        if time.perf_counter() - started >= max_seconds:
            break
        sent = time.perf_counter()
        model.predict([text])
        latencies.append(time.perf_counter() - sent)
    wall = time.perf_counter() - started
    return {"texts": len(latencies), "wall_s": wall, "latencies_s": latencies}


def resolve_run(run_dir: str | None) -> Path:
    """The run folder to serve; the default must have finished training (its metrics.json)."""
    if run_dir is not None:
        path = Path(run_dir)
        if not path.is_dir():
            raise SystemExit(f"{path}: no such run folder; pass a trained output directory")
        return path
    path = ROOT / DEFAULT_RUN
    if not (path / "metrics.json").is_file():
        state = "is still training or was interrupted (no metrics.json)" if path.is_dir() else "does not exist"
        raise SystemExit(f"{DEFAULT_RUN} {state}: train it with `nlp-transfer train recipes/sst2_minilm.yaml`, or "
                         f"pass another run folder: python -m benchmarks.serve_load RUN_DIR [--no-record]")
    return path


def model_key(run: Path) -> str:
    """results.json's name for the model: the run's recipe `model:` (an alias such as minilm-l6), else the folder's."""
    recipe = run / "recipe.yaml"
    if recipe.is_file():
        import yaml

        name = (yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}).get("model")
        if isinstance(name, str) and name:
            return Path(name).name if "/" in name else name
    return run.name


def measure(args) -> dict:
    import torch

    from nlp_transfer import load_model
    from nlp_transfer.export.serve import create_app, start_in_thread

    torch.set_num_threads(args.threads)
    run = resolve_run(args.run_dir)
    model = load_model(run, args.device)
    sentences = dev_sentences()
    model.predict(sentences[:32])  # warm-up
    total_texts = args.requests * args.texts_per_request
    texts = [sentences[i % len(sentences)] for i in range(total_texts)]
    app = create_app(model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     max_texts=max(64, args.texts_per_request), name=run.name)
    peer, load = None, None
    with start_in_thread(app, port=0) as server:
        warm = http.client.HTTPConnection(server.host, server.port, timeout=60)
        for text in sentences[:8]:  # warm-up through the whole stack
            warm.request("POST", "/predict", body=json.dumps([text]))
            warm.getresponse().read()
        warm.close()
        for _ in range(args.rounds):  # alternate, keep each side's best round: a noisy neighbour hurts both alike
            alone = in_process(model, texts, args.max_seconds)
            if peer is None or alone["texts"] / alone["wall_s"] > peer["texts"] / peer["wall_s"]:
                peer = alone
            before = app.state.counters()
            served = client_process(server.host, server.port, args)
            after = app.state.counters()
            served.update(batches=after["batches"] - before["batches"], texts=after["texts"] - before["texts"])
            if load is None or served["ok"] / served["wall_s"] > load["ok"] / load["wall_s"]:
                load = served
    ok, latencies = load["ok"], load["latencies_s"]
    figures = {
        "requests": args.requests, "sent": load["sent"], "ok": ok, "errors": load["errors"],
        "first_errors": load["first_errors"], "time_bound_hit": load["time_bound_hit"],
        "wall_s": load["wall_s"], "requests_per_second": ok / load["wall_s"],
        "texts_per_second": ok * args.texts_per_request / load["wall_s"],
        "latency_p50_ms": percentile(latencies, 50) * 1000, "latency_p95_ms": percentile(latencies, 95) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
        "batches": load["batches"], "rounds": args.rounds,
        "inprocess_texts": peer["texts"], "inprocess_time_bound_hit": peer["texts"] < total_texts,
        "inprocess_texts_per_second": peer["texts"] / peer["wall_s"],
        "inprocess_latency_p50_ms": percentile(peer["latencies_s"], 50) * 1000,
        "inprocess_latency_p95_ms": percentile(peer["latencies_s"], 95) * 1000,
    }
    figures["texts_per_batch"] = load["texts"] / max(figures["batches"], 1)
    figures["vs_inprocess_texts_per_second"] = figures["texts_per_second"] / figures["inprocess_texts_per_second"]
    figures["latency_p50_vs_inprocess"] = figures["latency_p50_ms"] / figures["inprocess_latency_p50_ms"]
    where = run.resolve()
    figures.update(run=str(where.relative_to(ROOT)) if where.is_relative_to(ROOT) else str(run),
                   model=model_key(run), device=str(getattr(model, "device", args.device)),
                   torch_threads=torch.get_num_threads(), torch_version=torch.__version__)
    return figures


# ---------------------------------------------------------------------------------------------- reporting

def command_line(args) -> str:
    parts = ["python -m benchmarks.serve_load"]
    if args.run_dir:
        parts.append(args.run_dir)
    defaults = build_parser().parse_args([])
    for name in ("requests", "texts_per_request", "concurrency", "max_seconds", "max_batch", "max_wait_ms", "rounds",
                 "threads", "device"):
        if getattr(args, name) != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    return " ".join(parts)


def key_of(figures: dict, args) -> str:
    suffix = f"-t{args.texts_per_request}" if args.texts_per_request != 1 else ""
    suffix += f"-b{args.max_batch}" if args.max_batch != 32 else ""
    return f"serve/sst2/{figures['model']}/c{args.concurrency}{suffix}"


def entries(figures: dict, args) -> dict[str, float]:
    key = key_of(figures, args)
    names = {"requests_per_second": 1, "texts_per_second": 1, "latency_p50_ms": 1, "latency_p95_ms": 1,
             "latency_p99_ms": 1, "errors": 0, "batches": 0, "inprocess_texts_per_second": 1,
             "inprocess_latency_p50_ms": 1, "vs_inprocess_texts_per_second": 2, "latency_p50_vs_inprocess": 2}
    return {f"{key}/{name}": round(float(figures[name]), digits) for name, digits in names.items()}


def table(figures: dict, args) -> str:
    f = figures
    bound = (f"; **time bound hit: {f['sent']} of {f['requests']} requests sent**" if f["time_bound_hit"] else "")
    rows = [
        "| measurement | server (HTTP, batched) | in-process `predict([text])` | ratio |",
        "|---|---:|---:|---:|",
        f"| texts/s | {f['texts_per_second']:.1f} | {f['inprocess_texts_per_second']:.1f} | "
        f"**{f['vs_inprocess_texts_per_second']:.2f}x** |",
        f"| requests/s | {f['requests_per_second']:.1f} | — | — |",
        f"| latency p50 (ms) | {f['latency_p50_ms']:.1f} | {f['inprocess_latency_p50_ms']:.1f} | "
        f"{f['latency_p50_vs_inprocess']:.2f}x |",
        f"| latency p95 (ms) | {f['latency_p95_ms']:.1f} | {f['inprocess_latency_p95_ms']:.1f} | — |",
        f"| latency p99 (ms) | {f['latency_p99_ms']:.1f} | — | — |",
        f"| model calls (texts per call) | {f['batches']} ({f['texts_per_batch']:.1f}) | {f['inprocess_texts']} (1) "
        f"| — |",
        f"| errors | {f['errors']} of {f['sent']} sent{bound} | — | — |",
    ]
    return "\n".join(rows)


def section(figures: dict, args) -> str:
    f = figures
    return "\n".join([
        START, "## HTTP serving: `nlp-transfer serve` under a bounded local load (issue 18)", "",
        f"`{command_line(args)}` on {date.today().isoformat()}: `{f['run']}` ({f['model']}), {args.requests} requests "
        f"of {args.texts_per_request} SST-2 dev sentence(s) from {args.concurrency} client threads (a second process, "
        f"keep-alive connections), at most {args.max_seconds:g} s, best of {args.rounds} rounds alternating with the "
        f"peer; server limits max_batch {args.max_batch}, "
        f"max_wait_ms {args.max_wait_ms:g}. Machine: {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"torch {f['torch_version']} with {f['torch_threads']} thread(s) on {f['device']}, Python "
        f"{platform.python_version()}; the clients share the same cores.", "",
        table(figures, args), "",
        f"Reading it: the server's texts/s is what {args.concurrency} concurrent callers get in all; the peer is one "
        "caller running `model.predict` on one text at a time, as a script without the server would per incoming "
        "text. A texts/s ratio above 1 is what batching concurrent requests gains (several texts per model call) net "
        "of the HTTP, JSON and thread hand-off costs (on a CPU a batch of random-length sentences is padded to its "
        "longest, which eats much of the gain; on a GPU batching gains more). The latency ratio is what a caller "
        "pays: when the callers keep the model busy, p50 latency is about callers / throughput (Little's law), i.e. "
        "waiting for the requests ahead, not server overhead; `--concurrency 1` measures the overhead itself (HTTP, "
        "JSON, thread hand-off, plus up to max_wait_ms), and `--max-batch 1` turns batching off. Figures are in "
        f"results.json under `{key_of(figures, args)}/...`.",
        END])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help=f"a trained run folder (default {DEFAULT_RUN}, which must have "
                                                   f"finished training)")
    parser.add_argument("--requests", type=int, default=400, help="requests in all (default 400)")
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="no new request after this many seconds (default 120); the in-process peer too")
    parser.add_argument("--max-batch", type=int, default=32, help="the server's max_batch (default 32)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's max_wait_ms (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the peer and the server; the "
                                                                "best of each counts (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-record", action="store_true", help="print only: no results.json, no RESULTS.md")
    parser.add_argument("--client-of", help=argparse.SUPPRESS)  # internal: run the clients against HOST:PORT
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("requests", "texts_per_request", "concurrency", "max_batch", "threads", "rounds"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.max_seconds <= 0:
        raise SystemExit(f"--max-seconds {args.max_seconds}: must be > 0")
    if args.client_of:
        host, port = args.client_of.rsplit(":", 1)
        result = run_clients(host, int(port), args.requests, args.texts_per_request, args.concurrency,
                             args.max_seconds)
        print(json.dumps(result))
        return 0
    figures = measure(args)
    print(table(figures, args))
    if figures["time_bound_hit"]:
        print(f"time bound: {figures['sent']} of {args.requests} requests sent within {args.max_seconds:g} s")
    if figures["inprocess_time_bound_hit"]:
        print(f"time bound: the in-process peer ran {figures['inprocess_texts']} texts within {args.max_seconds:g} s")
    if figures["errors"]:
        print(f"errors: {figures['errors']}, e.g. {figures['first_errors']}")
    if args.no_record:
        print("not recorded (--no-record)")
        return 0
    from benchmarks.record_run import record, replace_section

    figures_to_record = entries(figures, args)
    record(figures_to_record, command_line(args))
    replace_section(RESULTS_MD, START, END, section(figures, args))
    print(f"recorded {len(figures_to_record)} figures under {key_of(figures, args)}/ and the RESULTS.md section")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
