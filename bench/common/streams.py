"""Concurrent chat streams: time to first token and tokens/s, the same way for every server.

A stream's tokens are its completion tokens (usage when the server sends it, else the content
chunks); its decode rate is (tokens - 1) / (last token time - first token time); the aggregate
rate of a round is all tokens of the round / the round's wall time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from bench.common.report import percentile

PROMPT = "Write a long story about a dragon who learns to bake bread in a small village."


def chat_body(model: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,  # llama.cpp: every stream decodes exactly max_tokens
        "stream": True,
        "stream_options": {"include_usage": True},
    }


class StreamStats:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = 0.0
        self.last = 0.0
        self.chunks = 0
        self.usage: int | None = None

    def on_event(self, obj: dict[str, Any]) -> None:
        now = time.perf_counter()
        if obj.get("usage") and obj["usage"].get("completion_tokens"):
            self.usage = int(obj["usage"]["completion_tokens"])
        for choice in obj.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                self.chunks += 1
                self.last = now
                if not self.first:
                    self.first = now

    @property
    def tokens(self) -> int:
        return self.usage or self.chunks

    def result(self) -> dict[str, float]:
        decode = self.last - self.first
        return {
            "ttft_s": (self.first or self.last) - self.start,
            "tokens": self.tokens,
            "decode_tps": (self.tokens - 1) / decode if decode > 0 else float("nan"),
            "end": self.last,
        }


async def one_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, float]:
    stats = StreamStats()
    async with session.post(url + "/chat/completions", json=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status} {(await resp.text())[:300]}")
        buf = b""
        async for data in resp.content.iter_any():
            buf += data.replace(b"\r\n", b"\n")  # sse-starlette (Xinference) ends lines CRLF
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.splitlines():
                    if line.startswith(b"data:"):
                        payload = line[5:].strip()
                        if payload and payload != b"[DONE]":
                            stats.on_event(orjson.loads(payload))
    return stats.result()


async def one_round(
    url: str, model: str, streams: int, max_tokens: int, headers: dict[str, str] | None = None
) -> tuple[list[dict[str, float]], float]:
    """`streams` concurrent streams; their results and the round's aggregate tokens/s."""
    body = chat_body(model, max_tokens)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(
        timeout=timeout, json_serialize=lambda o: orjson.dumps(o).decode()
    ) as s:
        t0 = time.perf_counter()
        got = await asyncio.gather(
            *(one_stream(s, url, headers or {}, body) for _ in range(streams))
        )
    wall = max(g["end"] for g in got) - t0
    return list(got), sum(g["tokens"] for g in got) / wall


def summarize(
    results: list[dict[str, float]], aggregate: list[float], streams: int
) -> dict[str, Any]:
    ttft = [r["ttft_s"] * 1000 for r in results]
    return {
        "streams": streams,
        "requests": len(results),
        "tokens_per_stream": sum(r["tokens"] for r in results) / max(1, len(results)),
        "aggregate_tps": sum(aggregate) / len(aggregate),
        "per_stream_tps": sum(r["decode_tps"] for r in results) / len(results),
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_max_ms": max(ttft),
    }
