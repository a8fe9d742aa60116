"""One Settings class: defaults < config/modelport.yaml (or $MODELPORT_CONFIG) < MODELPORT_* env.

Every setting is documented in config/modelport.yaml; keep the two in step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# config/modelport.yaml of the checkout, shipped in the package (a symlink the wheel resolves)
DEFAULT_CONFIG = Path(__file__).resolve().parent / "modelport.yaml"


class ChannelDecl(BaseModel):
    """A channel declared in the YAML config; created or updated at start (matched by name)."""

    name: str
    type: int = 50
    base_url: str = ""
    key: str = ""
    models: list[str] = Field(default_factory=list)
    model_mapping: dict[str, str] = Field(default_factory=dict)
    group: str = "default"
    priority: int = 0
    weight: int = 1
    config: dict[str, Any] = Field(default_factory=dict)


class TokenDecl(BaseModel):
    """A token declared in the YAML config; created at first start with exactly this key."""

    name: str
    key: SecretStr
    models: list[str] = Field(default_factory=list)
    unlimited_quota: bool = True
    remain_quota: int = 0


class PriceDecl(BaseModel):
    input: float = 0.0  # USD per 1M prompt tokens
    output: float = 0.0  # USD per 1M completion tokens


class YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by $MODELPORT_CONFIG, else the packaged config/modelport.yaml."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("MODELPORT_CONFIG", DEFAULT_CONFIG))
        if not path.is_file():
            return {}
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings at the top level")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELPORT_", extra="ignore")

    # where state lives
    home: Path = Path("~/.modelport")
    database_url: str = ""  # empty: SQLite at <home>/modelport.db
    redis_url: str = ""  # empty: in-process counters and caches

    # serving
    host: str = "127.0.0.1"
    port: int = 3000
    public_url: str = (
        ""  # how clients reach us (FastGPT export, image links); default http://host:port
    )
    env: str = "local"  # "local" or "production"; production refuses missing secrets
    image_link_ttl_s: float = Field(default=3600.0, gt=0)  # lifetime of response_format=url links

    # identities
    admin_token: SecretStr | None = None
    admin_password: SecretStr | None = None
    initial_token: SecretStr | None = None
    secret_key: SecretStr | None = None  # encrypts channel keys; generated under <home> when unset
    old_secret_keys: list[SecretStr] = Field(default_factory=list)  # for key rotation

    # relay
    retries: int = Field(default=2, ge=0, le=10)
    max_body_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 64 * 1024 * 1024
    connect_timeout_s: float = 10.0
    first_byte_timeout_s: float = 120.0
    # a launched model's (per launch: first_byte_timeout_s); a hung worker then fails over
    local_first_byte_timeout_s: float = Field(default=30.0, gt=0)
    stream_idle_timeout_s: float = 120.0
    request_timeout_s: float = 900.0
    default_max_tokens_estimate: int = 1024  # reservation when a request gives no max_tokens
    cors_origins: list[str] = Field(default_factory=list)
    docs: bool = False  # /docs and /redoc (their scripts load from a CDN); /openapi.json always
    max_response_bytes: int = 256 * 1024 * 1024  # upstream body (or whole stream) cap
    max_header_count: int = 100  # request headers; 431 above
    max_header_bytes: int = 32 * 1024  # request headers in total; 431 above
    max_form_fields: int = 32  # multipart (audio) text fields
    max_form_files: int = 2  # multipart (audio) file parts

    # health and limits
    circuit_threshold: int = Field(default=3, ge=1)  # consecutive failures that open a circuit
    circuit_cooldown_s: float = 15.0  # open this long, then one probe request
    auto_disable_channels: bool = True  # status 3 on upstream auth/billing errors
    channel_test_interval_s: float = 300.0  # re-test auto-disabled channels; 0: never
    max_concurrent_requests: int = 0  # global cap on relayed requests in flight; 0: none
    redis_prefix: str = "modelport"  # key prefix for limiter counters in Redis

    # security and operations
    metrics_public: bool = False  # /metrics without admin auth
    # failed credential attempts per client address per window, counted before the check
    admin_token_failures: int = Field(default=20, ge=1)
    api_key_failures: int = Field(default=30, ge=1)
    ui_login_failures: int = Field(default=5, ge=1)  # also per username
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    # reverse proxies whose X-Forwarded-For is trusted (comma-separated IPs); empty: none
    forwarded_allow_ips: str = ""
    fetch_allow: list[str] = Field(default_factory=list)  # hosts/CIDRs exempt from the SSRF guard
    fetch_max_redirects: int = 3
    fetch_max_bytes: int = 20 * 1024 * 1024
    # hosts/CIDRs a channel URL may point at although they are cloud metadata addresses
    upstream_allow: list[str] = Field(default_factory=list)
    log_format: str = "json"  # "json", "text", or "" to leave logging to the host
    log_level: str = "INFO"
    shutdown_drain_s: float = 30.0  # graceful stop: wait this long for open streams

    # billing
    prices: dict[str, PriceDecl] = Field(default_factory=dict)  # model -> price
    usage_flush_interval_s: float = 1.0
    usage_batch_size: int = 500

    # declarative state
    channels: list[ChannelDecl] = Field(default_factory=list)
    tokens: list[TokenDecl] = Field(default_factory=list)

    # local runtime
    runtime_enabled: bool = True
    starter: bool = False  # launch the PyPI starter models at the first start (scripts/serve.sh)
    keep_alive_s: float = 0.0  # unload a model idle this long; 0 keeps models loaded
    max_loaded_models: int = 0  # 0: no limit
    catalog_dir: Path | None = None

    # scale-out (gateway.cluster): GPU nodes heartbeat with a node token; dead ones leave routing
    node_token: SecretStr | None = None  # shared node secret (admins can also issue tokens)
    node_ttl_s: float = Field(default=3.0, gt=0)  # a node silent this long is out of routing
    # shared by gateways and nodes; node workers refuse calls without it (gateway.cluster.secret)
    cluster_secret: SecretStr | None = None
    node_heartbeat_max_bytes: int = Field(default=128 * 1024, ge=1024)  # a bigger heartbeat: 413
    node_max_workers: int = Field(default=256, ge=1)  # workers one heartbeat may list; more: 400
    # namespace of every Redis key and pub/sub channel (installations may share one Redis);
    # empty: derived from the database URL
    installation_id: str = ""
    concurrency_lease_ttl_s: float = Field(default=15.0, ge=2)  # a dead holder's slots free after
    db_pool_size: int = Field(default=10, ge=1)  # PostgreSQL connections per process
    db_max_overflow: int = Field(default=5, ge=0)  # extra connections under bursts, per process
    db_pool_timeout_s: float = Field(default=10.0, gt=0)  # wait for a connection, then 503

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlSource(settings_cls)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.env == "production":
            missing = [n for n in ("admin_token", "secret_key") if getattr(self, n) is None]
            if missing:
                raise ValueError(
                    "MODELPORT_ENV=production needs explicit secrets: set "
                    + ", ".join(f"MODELPORT_{n.upper()}" for n in missing)
                )
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'modelport.db'}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"
