"""Frames on the link between an HTTP front process and its worker's model process.

Why not HTTP again between them: the point of the fronts is to take the per-request CPU (HTTP,
JSON, validation, response building) off the one process that feeds the model, so what crosses
the link must be cheaper to handle than a request. A front sends only the texts (orjson); the
model process answers with raw float32 vectors and token counts. The link is a Unix socketpair
per front, inherited at spawn, so nothing else can connect to it.

Frame: u32 length of what follows | u32 request id | u8 kind | payload (little-endian).

    INFO     model -> front, once the model is ready: orjson {"route", "uid", ...}
    CALL     front -> model: orjson {"texts"} (embeddings) or {"query", "documents"} (rerank)
    RESULT   model -> front: u32 n, u32 width, n x u32 token counts, n x width float32 values
    FAILURE  model -> front: orjson {"status", "message", "code"}

Writes are coalesced: everything sent during one turn of the event loop leaves in one writev,
so a batch of 256 answers costs one system call per front, not 256.
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

import numpy as np
import orjson

INFO = 1
CALL = 2
RESULT = 3
FAILURE = 4

_LENGTH = struct.Struct("<I")
_HEADER = struct.Struct("<IIB")  # length, request id, kind
_SHAPE = struct.Struct("<II")  # rows, width


def frame(request_id: int, kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload) + 5, request_id, kind) + payload


def failure(request_id: int, status: int, message: str, code: str | int | None) -> bytes:
    body = {"status": status, "message": message, "code": code}
    return frame(request_id, FAILURE, orjson.dumps(body))


def pack_result(counts: list[int], values: np.ndarray) -> bytes:
    """`values` is rows x width; rows match `counts`."""
    rows, width = values.shape
    return (
        _SHAPE.pack(rows, width)
        + np.asarray(counts, dtype="<u4").tobytes()
        + np.ascontiguousarray(values, dtype="<f4").tobytes()
    )


def unpack_result(payload: bytes) -> tuple[list[int], np.ndarray]:
    rows, width = _SHAPE.unpack_from(payload)
    counts = np.frombuffer(payload, dtype="<u4", count=rows, offset=_SHAPE.size)
    values = np.frombuffer(payload, dtype="<f4", count=rows * width, offset=_SHAPE.size + 4 * rows)
    return counts.tolist(), values.reshape(rows, width)


class FramedProtocol(asyncio.Protocol):
    """Splits the byte stream into frames for `frame_received`; `send` coalesces writes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._outbox: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if end - start - 4 < length:
                break
            _, request_id, kind = _HEADER.unpack_from(buffer, start)
            payload = bytes(buffer[start + _HEADER.size : start + 4 + length])
            start += 4 + length
            self.frame_received(request_id, kind, payload)
        del buffer[:start]

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # the other side has gone; connection_lost deals with what was pending
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(data)

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(self._outbox)
        self._outbox = []
