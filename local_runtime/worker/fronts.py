"""HTTP front processes for a worker (`engine_options.http_fronts: N`): the model process's side.

Why: one Python process tops out at ~1,500-1,800 HTTP requests/s (~0.6 ms of CPU each: HTTP,
JSON, one answer built per request), while a GPU embeds ~11,000 single sentences/s in batches.
With `http_fronts: N` (embeddings and rerank engines; 4-8 on a GPU host, at most the cores left
after the model's own threads) the worker process, which loads the model and runs the
micro-batcher, also starts N front processes (`python -m local_runtime.worker.front`). They accept
HTTP on the worker's own port, parse and check embeddings/rerank requests, send only the texts
over a Unix socketpair each (local_runtime.worker.ipc), and build the OpenAI answer from the
float32 vectors and token counts that come back. The model process batches across all fronts.
Every other request (/health, /v1/models, unsupported routes, anything before the model is ready)
is proxied by the front to the model process's own app, unchanged, on a private abstract Unix
socket: the supervisor and the gateway see the same worker as before.

The port: the worker binds N listening sockets to host:port with SO_REUSEPORT, one per front, so
the kernel spreads connections evenly (a single shared socket lets whichever front wakes first
take a burst of them). The worker keeps its copies: the port stays the worker's even while a
front restarts, and connections that arrive then wait in that front's queue.

Process hygiene: fronts stay in the worker's process group (the supervisor signals the group),
get SIGKILL if the worker dies (PR_SET_PDEATHSIG), and exit when their link closes. A front that
dies is restarted at once with the same socket; if fronts die more than
`MAX_FRONT_EXITS_PER_MINUTE` times in a minute the worker gives up and exits with status 4 (after
a `modelport-worker:` line), and the supervisor restarts the whole worker with its own backoff.
SIGTERM: the worker's server stops, then the fronts get SIGTERM and finish their requests (the
batcher still runs), then the model unloads.

/health gains `fronts: [{index, pid, requests, restarts}]` (`requests`: answered through that
front's link) and counts link requests in `inflight`; fronts add `x-modelport-front: <index>` to
every response.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import orjson

from local_runtime.batching import MicroBatcher
from local_runtime.engines.base import Engine, EngineError
from local_runtime.engines.rerank import CrossEncoderEngine
from local_runtime.engines.sentence_transformers import SentenceTransformersEngine
from local_runtime.worker import ipc

log = logging.getLogger("modelport.worker.fronts")

MAX_FRONTS = 64
MAX_FRONT_EXITS_PER_MINUTE = 5
STOP_GRACE_S = 10.0  # a front's own graceful shutdown is 5 s
EXIT_FRONTS_FAILED = 4


def front_count(options: dict[str, Any]) -> int:
    """`engine_options.http_fronts` as a count, or ValueError saying what is wrong."""
    value = options.get("http_fronts", 0) or 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"engine_options.http_fronts must be a whole number, not {value!r}")
    try:
        count = int(value)
    except ValueError:
        raise ValueError(
            f"engine_options.http_fronts must be a whole number, not {value!r}"
        ) from None
    if not 0 <= count <= MAX_FRONTS:
        raise ValueError(f"engine_options.http_fronts must be between 0 and {MAX_FRONTS}")
    return count


def check_engine(engine: Engine) -> None:
    """Fronts answer from vectors or scores; only these engines produce them for a link."""
    if not isinstance(engine, SentenceTransformersEngine | CrossEncoderEngine):
        raise ValueError(
            "engine_options.http_fronts is supported by the sentence_transformers embedding and "
            f"rerank engines, not by {engine.name} ({engine.spec.model_type}); remove it"
        )


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on host:port, sharing the port through SO_REUSEPORT."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # SO_REUSEPORT would also let a second worker join a port already in use and take half of
    # its connections: a plain bind first fails, as the single-process worker does, if taken.
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()  # port 0: the one the probe got
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(2048)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _die_with_worker() -> Callable[[], None] | None:
    """A preexec_fn: the front gets SIGKILL when the worker dies, even by SIGKILL (Linux).

    The supervisor does the same for workers (local_runtime.supervisor.process); not imported
    from there, because that package pulls the gateway's database layer into every worker.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: nothing to load after it
    worker = os.getpid()

    def preexec() -> None:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != worker:  # the worker died before prctl took effect
            os._exit(1)

    return preexec


@dataclass(frozen=True)
class _Adapter:
    """How link calls become batcher items, and batcher results become a RESULT frame."""

    info: bytes  # the INFO frame fronts need before they answer by themselves
    batcher: MicroBatcher[Any, Any]
    items: Callable[[dict[str, Any]], list[Any]]
    pack: Callable[[list[Any]], bytes]


def _adapter(engine: Engine) -> _Adapter:
    if isinstance(engine, SentenceTransformersEngine):
        assert engine.info is not None and engine.batcher is not None
        info = {"route": "/v1/embeddings", **asdict(engine.info)}
        return _Adapter(
            info=ipc.frame(0, ipc.INFO, orjson.dumps(info)),
            batcher=engine.batcher,
            items=lambda call: call["texts"],
            pack=lambda results: ipc.pack_result(
                [count for _, count in results], np.stack([vector for vector, _ in results])
            ),
        )
    assert isinstance(engine, CrossEncoderEngine) and engine.batcher is not None
    info = {"route": "/v1/rerank", "uid": engine.spec.uid}
    return _Adapter(
        info=ipc.frame(0, ipc.INFO, orjson.dumps(info)),
        batcher=engine.batcher,
        items=lambda call: [(call["query"], document) for document in call["documents"]],
        pack=lambda results: ipc.pack_result(
            [count for _, count in results],
            np.array([score for score, _ in results], dtype=np.float32).reshape(-1, 1),
        ),
    )


@dataclass
class _Front:
    index: int
    sock: socket.socket  # the listening socket this front accepts on
    proc: asyncio.subprocess.Process | None = None
    link: _ModelSide | None = None
    requests: int = 0
    restarts: int = 0


class _ModelSide(ipc.FramedProtocol):
    """The model process's end of one front's link."""

    def __init__(self, pool: FrontPool, front: _Front) -> None:
        super().__init__()
        self.pool = pool
        self.front = front

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.pool.adapter is not None:
            self.send(self.pool.adapter.info)

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        if kind == ipc.CALL:
            self.front.requests += 1
            self.pool.call(self, request_id, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.front.link is self:
            self.front.link = None


class FrontPool:
    """Owns the port's sockets, the front processes and the model side of their links."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        count: int,
        on_fatal: Callable[[str], None],
        log_level: str = "info",
    ) -> None:
        self._fronts = [
            _Front(index, sock) for index, sock in enumerate(listen_sockets(host, port, count))
        ]
        self._on_fatal = on_fatal
        self._log_level = log_level
        # The model process's own app listens here (abstract: no file to leave behind).
        self.internal_name = f"modelport-worker-{os.getpid()}-{secrets.token_hex(6)}"
        self.internal_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.internal_socket.bind("\0" + self.internal_name)
        self.internal_socket.listen(256)
        self.adapter: _Adapter | None = None
        self.inflight = 0
        self._exits: deque[float] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        for front in self._fronts:
            self._tasks.append(asyncio.create_task(self._keep(front), name=f"front-{front.index}"))

    def serve(self, engine: Engine) -> None:
        """The model is loaded: fronts may answer by themselves from now on."""
        self.adapter = _adapter(engine)
        for front in self._fronts:
            if front.link is not None:
                front.link.send(self.adapter.info)

    async def stop(self) -> None:
        """SIGTERM the fronts, let them finish their requests, then close everything."""
        self._stopping = True
        for front in self._fronts:
            self._signal(front, signal.SIGTERM)
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_GRACE_S)
            if late:
                log.warning(
                    "%d front(s) did not stop in %gs; killing them", len(late), STOP_GRACE_S
                )
                for front in self._fronts:
                    self._signal(front, signal.SIGKILL)
                await asyncio.wait(late)
        for front in self._fronts:
            if front.link is not None and front.link.transport is not None:
                front.link.transport.close()
            front.sock.close()
        self.internal_socket.close()

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "index": front.index,
                "pid": front.proc.pid if front.proc is not None else None,
                "requests": front.requests,
                "restarts": front.restarts,
            }
            for front in self._fronts
        ]

    # --- link calls ----------------------------------------------------------------------
    def call(self, link: _ModelSide, request_id: int, payload: bytes) -> None:
        adapter = self.adapter
        assert adapter is not None, "fronts call only after INFO"
        self.inflight += 1
        try:
            adapter.batcher.enqueue(
                adapter.items(orjson.loads(payload)), partial(self._answer, link, request_id)
            )
        except EngineError as exc:  # overloaded (429) or shutting down (503)
            self.inflight -= 1
            link.send(ipc.failure(request_id, exc.status, exc.message, exc.code))

    def _answer(
        self, link: _ModelSide, request_id: int, outcome: list[Any] | BaseException
    ) -> None:
        self.inflight -= 1
        assert self.adapter is not None
        if isinstance(outcome, EngineError):
            link.send(ipc.failure(request_id, outcome.status, outcome.message, outcome.code))
        elif isinstance(outcome, BaseException):
            log.error("batch failed", exc_info=outcome)
            message = f"internal error: {type(outcome).__name__}: {outcome}"
            link.send(ipc.failure(request_id, 500, message, "internal_error"))
        else:
            link.send(ipc.frame(request_id, ipc.RESULT, self.adapter.pack(outcome)))

    # --- processes -----------------------------------------------------------------------
    async def _keep(self, front: _Front) -> None:
        """Run one front; restart it when it dies, unless fronts keep dying."""
        while True:
            try:
                await self._spawn(front)
            except OSError as exc:
                self._on_fatal(f"cannot start HTTP front {front.index}: {exc}")
                return
            assert front.proc is not None
            status = await front.proc.wait()
            if self._stopping:
                return
            front.proc = None  # /health shows no pid until the new one runs
            now = time.monotonic()
            self._exits.append(now)
            while self._exits[0] < now - 60:
                self._exits.popleft()
            if len(self._exits) > MAX_FRONT_EXITS_PER_MINUTE:
                self._on_fatal(
                    f"HTTP front processes keep dying ({len(self._exits)} exits in a minute; "
                    f"front {front.index} exited with status {status}); see the log above"
                )
                return
            front.restarts += 1
            log.warning("HTTP front %d exited with status %s; restarting it", front.index, status)

    async def _spawn(self, front: _Front) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        listen_fd, link_fd = front.sock.fileno(), theirs.fileno()
        try:
            front.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "local_runtime.worker.front",
                "--index", str(front.index),
                "--listen-fd", str(listen_fd),
                "--link-fd", str(link_fd),
                "--internal", self.internal_name,
                "--log-level", self._log_level,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(listen_fd, link_fd),
                preexec_fn=_die_with_worker(),
            )  # fmt: skip
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        _, link = await loop.connect_accepted_socket(partial(_ModelSide, self, front), sock=ours)
        front.link = link
        if self._stopping:  # stop() ran while this one was starting
            self._signal(front, signal.SIGTERM)

    @staticmethod
    def _signal(front: _Front, sig: signal.Signals) -> None:
        if front.proc is not None and front.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                front.proc.send_signal(sig)
