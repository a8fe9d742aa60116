"""The installation's namespace in a shared Redis.

Two installations may share one Redis server, told apart only by database number (`/0`, `/1`),
but Redis pub/sub ignores database numbers: without a namespace, installation A's "drop channel 3"
disabled installation B's channel 3. Every key and pub/sub channel name therefore starts with
`<redis_prefix>:<installation>`, where the installation is `installation_id` when set, else a hash
of where the database lives (host, port, database name; not the driver, user or password, so
replicas that spell the URL differently, or rotate the password, still agree). Replicas of one
installation share a database, so they agree on it without configuration.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from gateway.settings import Settings


def installation(settings: Settings) -> str:
    if settings.installation_id:
        return settings.installation_id
    try:
        url = make_url(settings.db_url)
        where = f"{url.get_backend_name()}:{url.host or ''}:{url.port or ''}/{url.database or ''}"
    except ArgumentError:
        where = settings.db_url
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def namespace(settings: Settings) -> str:
    """The prefix of every Redis key and channel of this installation."""
    return f"{settings.redis_prefix}:{installation(settings)}"
