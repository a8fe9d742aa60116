"""A raw-socket HTTP/1.1 client for the body-size attacks: it sends the request head, then the
body only while the server has not answered, and counts the body bytes that went out before the
answer -- an upper bound on what the server read before deciding."""

from __future__ import annotations

import selectors
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


@dataclass
class RawAnswer:
    status: int
    body: bytes
    body_bytes_sent: int  # body bytes the client had sent when the answer arrived

    def json(self) -> dict:  # type: ignore[type-arg]
        return orjson.loads(self.body)  # type: ignore[no-any-return]


def readable(sock: socket.socket, wait_s: float) -> bool:
    """Whether the server said something within `wait_s` (epoll, not select(): a long suite
    holds more than FD_SETSIZE descriptors and select() refuses those above 1024)."""
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(wait_s))


def post_head_first(
    url: str,
    path: str,
    headers: dict[str, str],
    *,
    declared_length: int,
    wait_s: float = 60.0,
) -> RawAnswer:
    """Send only the head (with Content-Length `declared_length`) and wait for the answer, up to
    `wait_s`: a server that decides from the headers answers with no body byte sent; one that
    reads the body first never answers, and this raises TimeoutError."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=wait_s) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {declared_length}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if not readable(sock, wait_s):
            raise TimeoutError(f"no answer within {wait_s}s: the server waits for the body")
        return _read_answer(sock, body_bytes_sent=0)


def post_counting(
    url: str, path: str, headers: dict[str, str], body: bytes, *, chunk: int = 256 * 1024
) -> RawAnswer:
    """Send the body in chunks, stopping as soon as the server answers (for before/after
    figures: on a server that reads everything first this is the whole body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        sent = 0
        while sent < len(body):
            if readable(sock, 0.2):
                break
            try:
                sent += sock.send(body[sent : sent + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break
        return _read_answer(sock, body_bytes_sent=sent)


def _read_answer(sock: socket.socket, *, body_bytes_sent: int) -> RawAnswer:
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        if not got:
            raise ConnectionError(f"connection closed before an answer: {data!r}")
        data += got
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(rest) < length:
        got = sock.recv(65536)
        if not got:
            break
        rest += got
    return RawAnswer(status, rest[:length], body_bytes_sent)
