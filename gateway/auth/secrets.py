"""Channel keys encrypted at rest with Fernet; rotation through MultiFernet.

The key comes from MODELPORT_SECRET_KEY, else from <home>/secret.key, generated once with mode 0600.
Old keys listed in MODELPORT_OLD_SECRET_KEYS still decrypt, and `rotate()` re-encrypts with the
current key, so an operator can roll the key without losing channels.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from gateway.settings import Settings


def _as_fernet_key(secret: str) -> bytes:
    """Accept a Fernet key as is; derive one from any other passphrase."""
    raw = secret.encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def load_or_create_key(home: Path) -> str:
    path = home / "secret.key"
    if path.is_file():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def secret_key(settings: Settings) -> str:
    """MODELPORT_SECRET_KEY, else <home>/secret.key (created once)."""
    configured = settings.secret_key
    return configured.get_secret_value() if configured else load_or_create_key(settings.home)


class SecretBox:
    def __init__(self, current: str, old: list[str] | None = None) -> None:
        keys = [Fernet(_as_fernet_key(current))] + [Fernet(_as_fernet_key(k)) for k in old or []]
        self._fernet = MultiFernet(keys)

    def encrypt(self, plaintext: str) -> str:
        if not plaintext:
            return ""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        if not ciphertext:
            return ""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "a stored channel key cannot be decrypted: MODELPORT_SECRET_KEY changed; "
                "put the previous key in MODELPORT_OLD_SECRET_KEYS"
            ) from exc

    def rotate(self, ciphertext: str) -> str:
        return self._fernet.rotate(ciphertext.encode()).decode() if ciphertext else ""
