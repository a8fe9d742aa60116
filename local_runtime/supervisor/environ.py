"""What a worker process may inherit of the gateway's environment.

A worker runs third-party model code (engines, tokenizers, custom code in model repositories), so
it must not hold what would let it act as the gateway: the admin token, the secret key that
decrypts channel keys, the database and Redis URLs (with their passwords), the cluster secret,
node tokens, declared channels and tokens, provider API keys. Everything else (PATH, CUDA, Hugging
Face settings, proxies) is kept, because engines need it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

GATEWAY_SECRETS = frozenset(
    {
        "MODELPORT_ADMIN_TOKEN",
        "MODELPORT_ADMIN_PASSWORD",
        "MODELPORT_SECRET_KEY",
        "MODELPORT_OLD_SECRET_KEYS",
        "MODELPORT_DATABASE_URL",
        "MODELPORT_REDIS_URL",
        "MODELPORT_CLUSTER_SECRET",
        "MODELPORT_NODE_TOKEN",
        "MODELPORT_CHANNELS",
        "MODELPORT_TOKENS",
        "DATABASE_URL",
        "REDIS_URL",
    }
)
# provider credentials (OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY, ...) and any MODELPORT_* credential
_CREDENTIAL = re.compile(
    r"(_API_KEY$|SECRET|PASSWORD|^MODELPORT_.*(TOKEN|_KEY)|^AWS_SESSION_TOKEN$)", re.IGNORECASE
)


def worker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the gateway's secrets."""
    return {
        name: value
        for name, value in environ.items()
        if name.upper() not in GATEWAY_SECRETS and not _CREDENTIAL.search(name)
    }
