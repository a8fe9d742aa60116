"""A running modelport with the starter models answers a chat, an embedding and a transcription.

Standard library only, so it runs in a venv that has nothing but modelport's serving extras:

    python scripts/smoke.py --url http://127.0.0.1:3000 --admin-token TOKEN [--wait 300]

Creates a token through the admin API, waits until the three starter models are ready, sends one
request to each, checks what comes back and deletes the token. Exit status 0 when all passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

STARTERS = ("smollm2", "all-minilm", "whisper-tiny.en")
SPEECH = Path(__file__).resolve().parent / "smoke-hello.wav"  # espeak-ng: "hello, world. ..."


def call(
    url: str, *, key: str, body: bytes | None = None, ctype: str = "application/json"
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Authorization": key})  # noqa: S310
    if body is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - our own server
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def wait_ready(base: str, admin: str, deadline: float) -> None:
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, body = call(f"{base}/api/runtime/instances", key=admin)
        except (urllib.error.URLError, ConnectionError) as exc:
            last = exc
        else:
            last = body
            rows = body.get("data", []) if isinstance(body, dict) else []
            ready = {r["uid"] for r in rows if r.get("status") == "ready"}
            failed = {r["uid"]: r.get("error") for r in rows if r.get("status") == "error"}
            if failed:
                sys.exit(f"smoke: starter models failed to load: {failed}")
            if status == 200 and ready >= set(STARTERS):
                return
        time.sleep(1.0)
    sys.exit(f"smoke: starter models not ready in time; last answer: {last}")


def multipart(fields: dict[str, str], file_field: str, path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{path.name}"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
        + path.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def check(ok: bool, what: str, got: Any) -> None:
    if not ok:
        sys.exit(f"smoke: {what} failed: {str(got)[:500]}")
    print(f"smoke: {what} ok")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the starters")
    args = ap.parse_args()
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        sys.exit("smoke: --url must be an http(s) URL")
    wait_ready(base, args.admin_token, time.monotonic() + args.wait)

    status, body = call(
        f"{base}/api/token/",
        key=args.admin_token,
        body=json.dumps({"name": "smoke", "unlimited_quota": True}).encode(),
    )
    check(status == 200 and body.get("success"), "token create", body)
    key = "Bearer " + body["data"]["key"]
    try:
        status, body = call(
            f"{base}/v1/chat/completions",
            key=key,
            body=json.dumps(
                {
                    "model": "smollm2",
                    "messages": [{"role": "user", "content": "What is the capital of France?"}],
                    "max_tokens": 16,
                }
            ).encode(),
        )
        check(
            status == 200 and body["choices"][0]["message"]["content"].strip() != "",
            "chat (smollm2)",
            body,
        )
        status, body = call(
            f"{base}/v1/embeddings",
            key=key,
            body=json.dumps({"model": "all-minilm", "input": "hello world"}).encode(),
        )
        check(
            status == 200 and len(body["data"][0]["embedding"]) == 384,
            "embedding (all-minilm, 384 dimensions)",
            body,
        )
        form, ctype = multipart({"model": "whisper-tiny.en"}, "file", SPEECH)
        status, body = call(f"{base}/v1/audio/transcriptions", key=key, body=form, ctype=ctype)
        check(
            status == 200 and "hello" in str(body.get("text", "")).lower(),
            "transcription (whisper-tiny.en heard 'hello')",
            body,
        )
    finally:
        status, tokens = call(f"{base}/api/token/?keyword=smoke", key=args.admin_token)
        for row in tokens.get("data", []) if isinstance(tokens, dict) else []:
            if isinstance(row, dict) and row.get("name") == "smoke":
                req = urllib.request.Request(  # noqa: S310
                    f"{base}/api/token/{row['id']}",
                    method="DELETE",
                    headers={"Authorization": args.admin_token},
                )
                urllib.request.urlopen(req, timeout=30).close()  # noqa: S310


if __name__ == "__main__":
    main()
