"""The gateway's exception tree (the OpenAI body itself is modelport_wire.openai's).

    ModelportError                    -> {"error": {"message", "type", "param", "code"}}
    ├── InvalidRequest        400     invalid_request_error
    │   └── BodyTooLarge      413     request_too_large
    ├── AuthenticationFailed  401     invalid_api_key
    ├── PermissionDenied      403     permission_denied (model not allowed, subnet, disabled token)
    ├── NotFound              404     not_found
    │   └── ModelNotFound     404     model_not_found (says which models the caller can use)
    ├── RateLimited           429     rate_limit_exceeded (+ Retry-After)
    │   └── QuotaExceeded     429     insufficient_quota
    ├── UpstreamFailed        502     upstream_error (every endpoint tried failed)
    │   └── UpstreamTimeout   504     upstream_timeout
    └── Unavailable           503     no_available_endpoint / service_unavailable
        └── ModelNotReady     503     model_loading / model_failed (a launched model not serving)

The base is modelport_wire.errors.ModelportError (the engines' EngineError derives from it too).
Every message says what the caller can do about it. gateway.error_handlers maps these, FastAPI's
HTTPException and request-validation errors once per surface: the OpenAI body on /v1/*, One API's
envelope on /api/*.
"""

from __future__ import annotations

from typing import Any

from modelport_wire.errors import ModelportError

__all__ = [
    "AuthenticationFailed",
    "BodyTooLarge",
    "InvalidRequest",
    "ModelNotFound",
    "ModelNotReady",
    "ModelportError",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "Unavailable",
    "UpstreamFailed",
    "UpstreamTimeout",
]


class InvalidRequest(ModelportError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(ModelportError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ModelportError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ModelportError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RateLimited(ModelportError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, round(retry_after)))


class QuotaExceeded(RateLimited):
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamFailed(ModelportError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    # Which channel failed how (names, addresses): for the log and the admin's usage row only.
    # The message the caller reads never names a channel, a host or a URL.
    detail: str = ""


class UpstreamTimeout(UpstreamFailed):
    status = 504
    code = "upstream_timeout"


class Unavailable(ModelportError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class ModelNotReady(Unavailable):
    """A model the gateway knows but cannot route to: still loading (Retry-After), or failed.

    Never a 404: clients (FastGPT, SDKs) give up on "model not found", but retry a 503."""

    code = "model_loading"
