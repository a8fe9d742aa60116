"""Expiring image links: `response_format=url` images are files the gateway serves for a while.

A local worker writes each image under `<home>/files/images/` with a name that carries its expiry
(`<unix expiry>-<random>.png`) and returns `<public_url>/files/images/<name>?sig=<hmac>`. The
signature is an HMAC-SHA256 of the name under a key derived from the gateway's secret key, so
a link cannot be forged or have its expiry extended, and every gateway process (`--workers N`,
replicas sharing the secret) can check it without shared state. Workers receive only the derived
key (`MODELPORT_FILES_KEY`), never the secret that encrypts channel keys.

Expired links answer 410 and their files are deleted, by the request that finds them and by a
sweep of the folder (`gateway.relay.images.files`), so disk use is bounded by what one TTL of
traffic writes. It lives with the runtime, stdlib only, because the worker signs with it; the gateway
checks and sweeps with the same module (the arrow is gateway -> runtime).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path

# how the supervisor hands the signing key and the lifetime to its workers
LINK_KEY_ENV = "MODELPORT_FILES_KEY"
LINK_TTL_ENV = "MODELPORT_FILES_TTL_S"

NAME_RE = re.compile(r"^(?P<expires>\d{1,12})-[A-Za-z0-9_-]{16,64}\.png$")


def derive_key(secret: str) -> str:
    """The link-signing key: bound to the gateway secret, useless for anything else."""
    return hmac.new(secret.encode(), b"modelport-image-links", hashlib.sha256).hexdigest()


def new_name(now: float, ttl_s: float) -> str:
    """An unguessable file name that states when it expires."""
    return f"{int(now + ttl_s)}-{secrets.token_urlsafe(24)}.png"


def signature(key: str, name: str) -> str:
    return hmac.new(key.encode(), name.encode(), hashlib.sha256).hexdigest()


def link(base_url: str, key: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/files/images/{name}?sig={signature(key, name)}"


def expires_at(name: str) -> int | None:
    """The expiry a well-formed name carries; None for anything else (not ours: never served)."""
    match = NAME_RE.match(name)
    return int(match["expires"]) if match else None


def valid_signature(key: str, name: str, sig: str) -> bool:
    return hmac.compare_digest(signature(key, name), sig)


def sweep(folder: Path, now: float) -> int:
    """Delete every expired image (and leftovers that are not ours); return how many went."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.name.startswith("."):  # a write in progress (media._write_image)
            continue
        expiry = expires_at(path.name)
        if expiry is None or expiry <= now:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
