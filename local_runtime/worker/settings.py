"""What a worker process reads: one model's server, started by the supervisor.

The supervisor passes these to its child in the environment (local_runtime.supervisor.replicas);
the worker and its front processes read them here and nowhere else. Names stay the ones the
supervisor has always set. Command-line flags of `python -m local_runtime.worker` override them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from local_runtime.image_links import LINK_KEY_ENV, LINK_TTL_ENV
from local_runtime.keys import WORKER_SECRET_ENV


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELPORT_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        env_ignore_empty=True,
    )

    max_upload_bytes: int = 25 * 2**20  # OpenAI's own limit for audio
    files_dir: str | None = None  # where response_format=url images go (gateway serves it)
    public_url: str = "http://127.0.0.1:3000"
    # signs image links (the gateway's key)
    link_key: str | None = Field(default=None, repr=False, validation_alias=LINK_KEY_ENV)
    link_ttl_s: float = Field(default=3600.0, validation_alias=LINK_TTL_ENV)
    error_exit_grace_s: float = 10.0  # how long a failed load keeps /health readable
    engine_class: str | None = None  # "pkg.module:Class", overrides discovery
    # a node's per-worker key (worker.auth); calls without it are refused
    secret: str | None = Field(default=None, repr=False, validation_alias=WORKER_SECRET_ENV)

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkerSettings:
        """The environment, with the flags that were given (None: not given) on top."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})
