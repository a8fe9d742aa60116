"""/health (liveness) and /health/ready (readiness): what a replica can reach, for Kubernetes.

- `GET /health` always answers 200 while the process serves HTTP (restarting a pod cures
  nothing that lies outside it), with `status`: "ok", or "degraded" and `degraded: [...]` naming
  what is unreachable (`redis`, `database`) and why. Use it as the liveness probe.
- `GET /health/ready` answers 503 only when the database is unreachable (no token can be checked,
  nothing served), else 200 with the same body. Use it as the readiness probe. A replica without
  Redis stays ready: admin changes still reach it through the database change log (within a poll,
  0.25 s), its node heartbeats are stored in the database, and its RPM/TPM/concurrency limits
  count per replica until Redis is back. Taking every replica out of rotation because the one
  Redis is down would turn a degraded cluster into an outage.

Each check is bounded (1 s) so a probe never hangs on a dead dependency.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.services import services_of

CHECK_S = 1.0


class HealthChecks:
    def __init__(self, sessions: Any, redis_url: str) -> None:
        self._sessions = sessions
        self._redis: Redis | None = (
            Redis.from_url(redis_url, socket_timeout=CHECK_S, socket_connect_timeout=CHECK_S)
            if redis_url
            else None
        )

    async def _database(self) -> str | None:
        try:
            async with self._sessions() as session:
                await asyncio.wait_for(session.execute(text("SELECT 1")), CHECK_S)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            return f"unreachable: {type(exc).__name__}"
        return None

    async def _redis_problem(self) -> str | None:
        if self._redis is None:
            return None
        try:
            await asyncio.wait_for(self._redis.ping(), CHECK_S)
        except (RedisError, OSError, TimeoutError) as exc:
            return f"unreachable: {type(exc).__name__}"
        return None

    async def report(self) -> tuple[dict[str, Any], bool]:
        """(body, database reachable)."""
        database, redis = await asyncio.gather(self._database(), self._redis_problem())
        problems = {k: v for k, v in (("database", database), ("redis", redis)) if v}
        body: dict[str, Any] = {"status": "degraded" if problems else "ok"}
        if problems:
            body["degraded"] = sorted(problems)
            body.update(problems)
        return body, database is None

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


async def liveness(request: Request) -> JSONResponse:
    body, _ = await services_of(request).health_checks.report()
    return JSONResponse(body)


async def readiness(request: Request) -> JSONResponse:
    body, database_ok = await services_of(request).health_checks.report()
    return JSONResponse(body, status_code=200 if database_ok else 503)
