"""A small HTTP prediction server for any folder `load_model` opens (FastAPI + uvicorn, the ``serve`` extra).

    nlp-transfer serve runs/sst2-demo --port 8000          # pip install 'nlp_transfer[serve]'
    curl -s localhost:8000/predict -d '{"texts": ["a gorgeous, witty film", "a dull mess"]}'
    # {"predictions": [{"label": "positive", "score": 0.97, ...}, {"label": "negative", ...}]}
    curl -s localhost:8000/health
    # {"status": "ok", "model": "sst2-demo", "task": "sequence-classification", "labels": [...], "requests": 1, ...}

From Python (tests, benchmarks, notebooks):

    from nlp_transfer import load_model
    from nlp_transfer.export.serve import create_app, start_in_thread

    server = start_in_thread(create_app(load_model("runs/sst2-demo")), port=0)   # port 0: any free port
    print(server.url)          # http://127.0.0.1:PORT
    server.stop()              # clean shutdown: in-flight requests finish, the batching task ends, the port is freed

``POST /predict`` takes ``{"texts": ["...", ...]}`` (or a bare JSON list of strings) and answers
``{"predictions": [...]}`` in request order: what ``model.predict(texts)`` returns, one item per text (a label dict
for a classifier, a list of entity dicts for an NER tagger). Every error is ``{"error": "<what; the fix>"}``: 413
for a body over ``max_bytes`` or more than ``max_texts`` texts, 400 for malformed JSON, a wrong shape or an error the
model raises on the input, 503 while the server is stopping.

Batching: each request's texts go on one asyncio queue; a background task takes up to ``max_batch`` texts, waiting
at most ``max_wait_ms`` after the first for more, runs ONE ``model.predict`` on them in a worker thread (the event
loop keeps accepting requests meanwhile) and hands each request its slice. A request larger than ``max_batch`` is
split over several batches. ``GET /health`` counts requests, texts and batches, so concurrent requests sharing a
batch show as fewer batches than requests.
"""

import asyncio
import json
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import NLPTransferError, did_you_mean

INSTALL = "nlp-transfer serve needs FastAPI and uvicorn: pip install 'nlp_transfer[serve]'"
LIMITS = {"max_texts": 64, "max_bytes": 1_000_000, "max_batch": 32, "max_wait_ms": 5.0}
OPTIONS = {"max_texts": "--max-texts", "max_bytes": "--max-bytes", "max_batch": "--max-batch",
           "max_wait_ms": "--max-wait-ms"}
log = logging.getLogger(__name__)


def require_server_packages() -> None:
    """Raise the one-line install hint when FastAPI or uvicorn is missing (they are the ``serve`` extra)."""
    import importlib

    try:
        for package in ("fastapi", "uvicorn"):
            importlib.import_module(package)
    except ImportError:
        raise NLPTransferError(INSTALL) from None


def check_limits(max_texts: int = 64, max_bytes: int = 1_000_000, max_batch: int = 32, max_wait_ms: float = 5.0,
                 port: int | None = None) -> None:
    """One-line errors, named as the CLI options, for limits that cannot work (counts >= 1, a wait >= 0 ms,
    a port 0-65535; port 0 picks any free one)."""
    for key, value in (("max_texts", max_texts), ("max_bytes", max_bytes), ("max_batch", max_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NLPTransferError(f"{OPTIONS[key]} {value}: must be a whole number >= 1, e.g. "
                                   f"{OPTIONS[key]} {LIMITS[key]}")
    if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) or not 0 <= max_wait_ms <= 60_000:
        raise NLPTransferError(f"--max-wait-ms {max_wait_ms}: must be between 0 (no waiting for more requests) and "
                               f"60000 ms, e.g. --max-wait-ms 5")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise NLPTransferError(f"--port {port}: must be between 0 and 65535 (0: any free port), e.g. --port 8000")


class RequestError(Exception):
    """An answer other than 200: the HTTP status and a one-line message (what went wrong and the fix)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Piece:
    """Up to max_batch texts of one request, and the future its predictions arrive on."""
    texts: list[str]
    future: asyncio.Future


@dataclass
class Batcher:
    """Runs ``predict`` on the texts of concurrent requests together: at most ``max_batch`` texts per call, waiting
    at most ``max_wait_ms`` after the first text for more. One worker thread runs the calls, one at a time.

        batcher = Batcher(model.predict, max_batch=32, max_wait_ms=5)
        batcher.start()                                  # inside the running event loop
        predictions = await batcher.predict(["a witty film", "a dull mess"])
        await batcher.close()
    """
    predict_fn: Callable[[list[str]], list]
    max_batch: int = 32
    max_wait_ms: float = 5.0
    batches: int = 0            # model.predict calls run
    queue: asyncio.Queue | None = field(default=None, repr=False)
    task: asyncio.Task | None = field(default=None, repr=False)
    executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    held: list = field(default_factory=list, repr=False)  # pieces taken off the queue and not yet answered

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlp-transfer-predict")
        self.task = asyncio.get_running_loop().create_task(self._collect(), name="nlp-transfer-batcher")

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def predict(self, texts: list[str]) -> list:
        """The predictions of ``texts`` in order, computed in batches shared with other requests."""
        if not self.running:
            raise RequestError(503, "the server is starting or shutting down; retry in a moment")
        loop = asyncio.get_running_loop()
        pieces = [_Piece(texts[i:i + self.max_batch], loop.create_future())
                  for i in range(0, len(texts), self.max_batch)]
        for piece in pieces:
            self.queue.put_nowait(piece)
        results = await asyncio.gather(*(piece.future for piece in pieces), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [prediction for part in results for prediction in part]

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        carried: _Piece | None = None  # a piece that did not fit the last batch starts the next one
        while True:
            first = carried or await self.queue.get()
            carried, batch, size = None, [first], len(first.texts)
            self.held = batch
            deadline = loop.time() + self.max_wait_ms / 1000
            while size < self.max_batch:
                try:
                    piece = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        piece = await asyncio.wait_for(self.queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if size + len(piece.texts) > self.max_batch:
                    carried = piece
                    self.held = batch + [carried]
                    break
                batch.append(piece)
                size += len(piece.texts)
            try:
                await self._run(batch)
            except Exception as exc:  # a bug here must not leave requests waiting forever
                log.exception("batching failed")
                for piece in batch:
                    _settle(piece.future, exception=exc)

    async def _run(self, batch: list[_Piece]) -> None:
        batch = [piece for piece in batch if not piece.future.done()]  # a cancelled request's texts are skipped
        if not batch:
            return
        try:
            results = await self._call([text for piece in batch for text in piece.texts])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exception=exc)
                return
            for piece in batch:  # one request's bad input must not fail the others: each alone, to find it
                try:
                    _settle(piece.future, await self._call(piece.texts))
                except Exception as alone:
                    _settle(piece.future, exception=alone)
            return
        start = 0
        for piece in batch:
            _settle(piece.future, results[start:start + len(piece.texts)])
            start += len(piece.texts)

    async def _call(self, texts: list[str]) -> list:
        self.batches += 1
        results = await asyncio.get_running_loop().run_in_executor(self.executor, self.predict_fn, texts)
        if not isinstance(results, list) or len(results) != len(texts):
            raise RuntimeError(f"model.predict returned {type(results).__name__} of "
                               f"{len(results) if hasattr(results, '__len__') else '?'} items for {len(texts)} texts")
        return results

    async def close(self) -> None:
        """Stop collecting, answer what is still queued with 503 and wait for a prediction in progress."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        pending = list(self.held)
        while self.queue is not None and not self.queue.empty():
            pending.append(self.queue.get_nowait())
        for piece in pending:  # normally none: uvicorn lets the requests in flight finish before the app shuts down
            _settle(piece.future, exception=RequestError(503, "the server is shutting down; retry on a running server"))
        self.held = []
        if self.executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)
        self.task = None


def _settle(future: asyncio.Future, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the request went away meanwhile
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def parse_texts(body: bytes, max_texts: int) -> list[str]:
    """The texts of a /predict body: ``{"texts": [...]}`` or a bare list of non-empty strings. Raises RequestError
    (400 for malformed JSON or a wrong shape, 413 for more than ``max_texts`` texts)."""
    example = 'send {"texts": ["first text", "second text"]}'
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 ({exc.reason} at byte {exc.start}); send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; {example}") \
            from None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"texts"})
        if unknown:
            hint = did_you_mean(unknown[0], ["texts"]) or f"; {example}"
            raise RequestError(400, f"unknown key '{unknown[0]}' in the JSON object{hint}")
        if "texts" not in data:
            raise RequestError(400, f"the JSON object has no 'texts' key; {example}")
        data = data["texts"]
        where = "texts"
    else:
        where = "the body"
    if not isinstance(data, list):
        raise RequestError(400, f"{where} is a JSON {_json_type(data)}, not a list of strings; {example}")
    if not data:
        raise RequestError(400, f"{where} is an empty list; {example}")
    if len(data) > max_texts:
        raise RequestError(413, f"{len(data)} texts in one request, the limit is {max_texts}; split them into "
                                f"several requests (or start the server with --max-texts {len(data)})")
    for index, text in enumerate(data):
        if not isinstance(text, str):
            raise RequestError(400, f"texts[{index}] is a JSON {_json_type(text)}, not a string; {example}")
        if not text.strip():
            raise RequestError(400, f"texts[{index}] is empty; send text to predict on, or leave the item out")
    return data


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


async def read_body(request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is over ``max_bytes``: by its Content-Length before reading,
    else while reading (chunked uploads)."""
    too_big = (f"the request body is over the limit of {max_bytes} bytes; send fewer or shorter texts per request "
               f"(or start the server with a larger --max-bytes)")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise RequestError(400, f"Content-Length '{length}' is not a number of bytes; send a valid header")
        if int(length) > max_bytes:
            raise RequestError(413, too_big)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(413, too_big)
    return bytes(body)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def create_app(model, *, max_texts: int = 64, max_bytes: int = 1_000_000, max_batch: int = 32,
               max_wait_ms: float = 5.0, name: str | None = None):
    """A FastAPI app serving ``model`` (what `nlp_transfer.load_model` returns: anything with ``predict(texts)``
    giving one JSON-able item per text, and a ``task``). Run it with `start_in_thread`, `serve` or any ASGI server.

        app = create_app(load_model("runs/sst2-demo"), max_batch=16)
        uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    check_limits(max_texts, max_bytes, max_batch, max_wait_ms)
    require_server_packages()
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from starlette.exceptions import HTTPException

    batcher = Batcher(model.predict, max_batch, float(max_wait_ms))
    stats = {"requests": 0, "texts": 0, "errors": 0}
    labels = getattr(model, "label_names", None)
    name = name or getattr(model, "name", None) or type(model).__name__

    def reply(content: Any, status: int = 200) -> Response:
        body = json.dumps(content, ensure_ascii=False, default=_json_default)
        return Response(body, status_code=status, media_type="application/json")

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await batcher.close()  # the batching task is cancelled and awaited, the worker thread joined

    body_schema = {"oneOf": [
        {"type": "object", "required": ["texts"],
         "properties": {"texts": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                  "maxItems": max_texts}}},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": max_texts}]}
    app = FastAPI(title="nlp-transfer", summary=f"predictions of {name}", lifespan=lifespan, docs_url=None,
                  redoc_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # 404, 405, ... as {"error": ...} like every other answer
        return reply({"error": f"{exc.detail}: {request.method} {request.url.path}; the server answers "
                               f"POST /predict and GET /health"}, exc.status_code)

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": body_schema}}}})
    async def predict(request: Request):
        """Predict on ``{"texts": [...]}`` (or a bare list): ``{"predictions": [...]}`` in request order."""
        try:
            texts = parse_texts(await read_body(request, max_bytes), max_texts)
            predictions = await batcher.predict(texts)
        except RequestError as exc:
            stats["errors"] += 1
            return reply({"error": exc.message}, exc.status)
        except NLPTransferError as exc:  # the model refused the input
            stats["errors"] += 1
            return reply({"error": str(exc)}, 400)
        except Exception as exc:
            stats["errors"] += 1
            log.exception("prediction failed")
            first = (str(exc).strip().splitlines() or [""])[0]
            return reply({"error": f"prediction failed ({type(exc).__name__}: {first}); see the server's log"}, 500)
        stats["requests"] += 1
        stats["texts"] += len(texts)
        return reply({"predictions": predictions})

    def counters() -> dict[str, Any]:
        return {"status": "ok" if batcher.running else "stopped", "model": name, "task": getattr(model, "task", None),
                **({"labels": list(labels)} if labels else {}), "requests": stats["requests"], "texts": stats["texts"],
                "batches": batcher.batches, "errors": stats["errors"],
                "limits": {"max_texts": max_texts, "max_bytes": max_bytes, "max_batch": max_batch,
                           "max_wait_ms": max_wait_ms}}

    @app.get("/health")
    async def health():
        """Liveness, the model served and the counters (requests, texts, batches run, errors)."""
        return reply(counters())

    app.state.counters = counters  # what /health answers, also after the server stopped
    return app


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening socket on host:port (port 0: any free port; ``sock.getsockname()[1]`` says which), with a
    one-line error when the address is taken or not this machine's."""
    check_limits(port=port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NLPTransferError(f"--host {host}: cannot resolve it ({exc.strerror}); use 127.0.0.1 (this machine) "
                               f"or 0.0.0.0 (every interface)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)  # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY on each connection
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise NLPTransferError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port (0: any free "
                               f"one) or stop the program using it") from None
    sock.listen(2048)  # connections made from now on wait in the backlog until the server accepts them
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ServerHandle:
    """A uvicorn server running in a background thread (`start_in_thread`); ``stop()`` shuts it down cleanly."""

    def __init__(self, server, thread: threading.Thread, host: str, port: int):
        self.server, self.thread, self.host, self.port = server, thread, host, port
        self.url = _url(host, port)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting connections, let in-flight requests finish, run the app's shutdown (the batching task
        ends) and join the thread; after ``timeout`` seconds the shutdown is forced."""
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(5.0)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_in_thread(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                    access_log: bool = False, timeout: float = 30.0) -> ServerHandle:
    """Run ``app`` under uvicorn in a daemon thread and return once it accepts connections.

        with start_in_thread(create_app(model), port=0) as server:    # port 0: a free port, server.port says which
            urllib.request.urlopen(server.url + "/health")
        # leaving the block stops it: server.stop()
    """
    require_server_packages()
    import uvicorn

    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=bound_port, log_level=log_level, access_log=access_log,
                            lifespan="on", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"nlp-transfer-serve-{bound_port}")
    thread.start()
    waited = 0.0
    while not server.started and thread.is_alive() and waited < timeout:
        thread.join(0.02)
        waited += 0.02
    if not server.started:
        server.should_exit = True
        thread.join(5.0)
        sock.close()
        raise NLPTransferError(f"the server on {_url(host, bound_port)} did not start within {timeout:.0f} s; "
                               f"see the log above")
    return ServerHandle(server, thread, host, bound_port)


class _Terminated(Exception):
    """SIGTERM reached the server (after uvicorn's clean shutdown)."""


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          precision: str = "float32", log_level: str = "info", **limits) -> dict:
    """Serve a run folder until Ctrl-C or SIGTERM (both shut down cleanly); return the final counters.

        nlp_transfer.export.serve.serve("runs/sst2-demo", port=8000, max_batch=16)   # the CLI: nlp-transfer serve
    """
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise NLPTransferError(f"serve() got an unknown option '{unknown[0]}'{did_you_mean(unknown[0], LIMITS)}")
    limits = {**LIMITS, **limits}
    check_limits(**limits, port=port)
    require_server_packages()
    import signal

    import uvicorn

    from ..inference import load_model

    sock = bind(host, port)  # a taken port fails before the model loads
    try:
        model = load_model(run_dir, device, precision=precision)
        app = create_app(model, name=Path(run_dir).name, **limits)
    except BaseException:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=bound_port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    print(f"nlp-transfer: serving {run_dir} on {_url(host, bound_port)} (POST /predict, GET /health)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"nlp-transfer: note: --host {host} lets other machines reach the server, which has no "
              f"authentication; put it behind a proxy that has", flush=True)

    def terminated(signum, frame):
        raise _Terminated()

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if main_thread else None
    try:  # uvicorn catches SIGINT / SIGTERM, shuts down cleanly, then raises the signal again: it ends up here
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
    final = app.state.counters()
    print(f"nlp-transfer: stopped serving {run_dir} ({final['requests']} requests, {final['texts']} texts, "
          f"{final['batches']} batches, {final['errors']} errors)", flush=True)
    return final
