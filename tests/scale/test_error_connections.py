"""An unhandled error must not leave a keep-alive client with a dead connection (issue 20): the
500 either keeps the connection usable or says `Connection: close`, so a proxy or client does not
send its next request into a reset (a 502 behind nginx)."""

from __future__ import annotations

import socket

from fastapi import FastAPI

from tests.conftest import Gateway


def _boom() -> None:
    raise RuntimeError("a bug nobody expected")


def _request(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def test_an_unhandled_500_says_connection_close_or_keeps_the_connection(make_gateway):
    gw: Gateway = make_gateway()
    app: FastAPI = gw.app
    app.add_api_route("/api/test-boom", _boom)  # any route with a bug
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = _request(sock, "/api/test-boom")
        assert head.startswith(b"HTTP/1.1 500"), head
        says_close = b"connection: close" in head.lower()
        if not says_close:  # then the same connection must still work
            head = _request(sock, "/health")
            assert head.startswith(b"HTTP/1.1 200"), head
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        assert _request(sock, "/health").startswith(b"HTTP/1.1 200")
