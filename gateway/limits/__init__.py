"""Per-token RPM/TPM/concurrency limits and a global concurrency cap.

`make_limiter(settings)` picks the backend: Redis (counters shared by every gateway replica) when
`settings.redis_url` is set, process memory otherwise. Both enforce the same rules, defined once in
`gateway.limits.base`.
"""

from __future__ import annotations

from gateway.limits.base import Lease, Limiter, make_limiter

__all__ = ["Lease", "Limiter", "make_limiter"]
