"""An HTTP/1.1 load generator cheap enough to share 2 cores with what it measures.

Raw asyncio (uvloop) connections with keep-alive, one pre-encoded request, httptools to frame the
response. Per request it records the time to the first body byte (for SSE: the first event, the
"time to first byte" of a stream) and the time to the end of the response.

Two modes:
- closed loop (`rate` 0): every connection sends its next request as soon as the last one ends;
  gives the saturation throughput (requests/s). Latency then is mostly queueing: conns / rate.
- paced (`rate` > 0): the requests are scheduled at `rate` per second spread over the
  connections, and latency is counted from the scheduled time (no coordinated omission, as wrk2
  does), so at a load the server can carry the latency is the service time, the figure that
  "added latency" means.

    python -m bench.common.httpload URL --conns 50 --duration 10 [--rate 500] [--body FILE]
        [--header 'Authorization: Bearer sk-..'] -> one JSON line on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import uvloop

from bench.common.report import percentile


@dataclass
class Sample:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] | None = None
        self.first: float = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        if not self.first:
            self.first = time.perf_counter()

    def on_message_complete(self) -> None:
        if self.done and not self.done.done():
            self.done.set_result(None)

    async def request(self, raw: bytes) -> tuple[int, float]:
        self.first = 0.0
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(raw)  # type: ignore[attr-defined]
        await self.done
        return self.parser.get_status_code(), self.first


def build_request(url: str, body: bytes, headers: list[str]) -> tuple[str, int, bytes]:
    u = urlsplit(url)
    head = [
        f"POST {u.path or '/'} HTTP/1.1",
        f"Host: {u.hostname}:{u.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return u.hostname or "127.0.0.1", u.port or 80, ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def run(
    url: str,
    body: bytes,
    headers: list[str],
    conns: int,
    duration: float,
    warmup: float,
    rate: float,
) -> dict[str, object]:
    host, port, raw = build_request(url, body, headers)
    loop = asyncio.get_running_loop()
    sample = Sample()
    start = time.perf_counter() + 0.2
    measure_from = start + warmup
    stop_at = measure_from + duration
    counted = 0

    async def connect() -> _Conn | None:
        for _ in range(50):
            try:
                _, conn = await loop.create_connection(_Conn, host, port)
                return conn
            except OSError:
                sample.errors += 1
                await asyncio.sleep(0.1)
        return None

    async def worker(i: int) -> None:
        nonlocal counted
        conn = await connect()
        n = 0
        try:
            while conn is not None:
                if rate > 0:
                    t0 = start + (n * conns + i) / rate
                    n += 1
                    if t0 >= stop_at:
                        return
                    delay = t0 - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    t0 = time.perf_counter()
                    if t0 >= stop_at:
                        return
                try:
                    status, first = await conn.request(raw)
                except (ConnectionError, httptools.HttpParserError):
                    sample.errors += 1
                    conn.transport.close()
                    conn = await connect()
                    continue
                end = time.perf_counter()
                if t0 >= measure_from and end <= stop_at + 5:
                    counted += 1
                    sample.statuses[status] = sample.statuses.get(status, 0) + 1
                    if status != 200:
                        sample.errors += 1
                        continue
                    sample.total.append(end - t0)
                    sample.ttfb.append((first or end) - t0)
        finally:
            if conn is not None:
                conn.transport.close()

    await asyncio.gather(*(worker(i) for i in range(conns)))
    ms = 1000.0
    return {
        "conns": conns,
        "rate_target": rate,
        "duration_s": duration,
        "requests": len(sample.total),
        "rps": len(sample.total) / duration,
        "errors": sample.errors,
        "statuses": {str(k): v for k, v in sample.statuses.items()},
        "p50_ms": percentile(sample.total, 50) * ms,
        "p90_ms": percentile(sample.total, 90) * ms,
        "p99_ms": percentile(sample.total, 99) * ms,
        "ttfb_p50_ms": percentile(sample.ttfb, 50) * ms,
        "ttfb_p99_ms": percentile(sample.ttfb, 99) * ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=0.0, help="requests/s in all; 0 = closed loop")
    ap.add_argument("--body", default="", help="file with the JSON body")
    ap.add_argument("--header", action="append", default=[])
    a = ap.parse_args()
    body = Path(a.body).read_bytes() if a.body else b"{}"
    out = uvloop.run(run(a.url, body, a.header, a.conns, a.duration, a.warmup, a.rate))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
