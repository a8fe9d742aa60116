"""How many requests/s the load generator itself can make: bench/gpu/harness.load against an HTTP
server that answers at once (a raw asyncio server, no framework). If a GPU figure is near this,
the client was the limit, not modelport.

    python bench/gpu/client_capacity.py [--procs 1,4] [--concurrency 64] [--servers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.harness import free_port, load

BODY = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"usage":{}}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


async def _serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_port=True)
    async with server:
        await server.serve_forever()


def _server_process(port: int) -> None:
    asyncio.run(_serve(port))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", default="1", help="load-generator processes, comma-separated")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--servers", type=int, default=1, help="server processes (SO_REUSEPORT)")
    ap.add_argument("--duration", type=float, default=6.0)
    args = ap.parse_args()
    port = free_port()
    servers = [
        multiprocessing.Process(target=_server_process, args=(port,), daemon=True)
        for _ in range(args.servers)
    ]
    for proc in servers:
        proc.start()
    time.sleep(1.0)
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    print(
        "| client processes | concurrency | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|"
    )
    for procs in (int(p) for p in args.procs.split(",")):
        row = load(
            url,
            "bench.gpu.embeddings:body_one",
            concurrency=args.concurrency,
            duration=args.duration,
            procs=procs,
        ).row()
        print(
            f"| {procs} | {args.concurrency} | {row['rps']:,.0f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} |",
            flush=True,
        )
    for proc in servers:
        proc.terminate()


if __name__ == "__main__":
    main()
