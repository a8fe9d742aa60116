"""API keys: generation, hashing and display.

Keys are 48 random characters from `secrets` behind `sk-` (One API's format). Only a SHA-256 digest
is stored: the keys carry ~285 bits of entropy, so a slow password hash would add latency to every
request and no security. Comparison happens by digest lookup, never by comparing plaintexts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 48


def generate_key() -> str:
    return "sk-" + "".join(secrets.choice(ALPHABET) for _ in range(KEY_LENGTH))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def canonical_key(key: str) -> str:
    """The `sk-` form that tokens are hashed in. One API stores keys without `sk-` and its
    TokenAuth strips the prefix (songquanpeng/one-api middleware/auth.go), so clients send
    either form; both name the same token here."""
    return key if key.startswith("sk-") else "sk-" + key


def display_prefix(key: str) -> str:
    return f"{key[:7]}…{key[-4:]}" if len(key) > 12 else "sk-…"


def parse_authorization(header: str | None) -> str | None:
    """`Bearer sk-...`, or the bare key (One API tolerates both); None when absent."""
    if not header:
        return None
    value = header.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or None


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
