"""Worker keys: every worker answers only callers that send its own key.

A supervisor starts each worker with a key in MODELPORT_WORKER_SECRET; the key is
`worker_key(root, node, key_id)`, an HMAC of a random per-start `key_id` under a root that only the
supervisor and the gateways hold, so a gateway that knows the root and reads the `key_id` (in a
node's heartbeat, in the host's record) derives the key without it ever travelling. The derivation
lives here because both halves compute it: the runtime to start a worker, the gateway to call one
(gateway.cluster.secret says where the roots come from).
"""

from __future__ import annotations

import hashlib
import hmac

# how a supervisor hands each worker its own key
WORKER_SECRET_ENV = "MODELPORT_WORKER_SECRET"  # noqa: S105 - a variable name, not a secret


def worker_key(root: str, node: str, key_id: str) -> str:
    """The bearer key of one worker launch; only holders of `root` can compute it."""
    message = f"modelport-worker-key:{node}:{key_id}".encode()
    return hmac.new(root.encode(), message, hashlib.sha256).hexdigest()
