"""What the supervisor reads: its own settings, so the runtime runs without the gateway.

The names are the gateway's (`MODELPORT_HOME`, `MODELPORT_KEEP_ALIVE_S`, ...), so a user sets each
once. Under `modelport serve` the composition layer (gateway.runtime_host) builds this from the
gateway's Settings, so config/modelport.yaml applies as well; a program that embeds the runtime
alone reads the environment (or passes values).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELPORT_", extra="ignore")

    home: Path = Path("~/.modelport")  # model cache, worker specs and logs, generated files
    keep_alive_s: float = 0.0  # unload a model idle this long; 0 keeps models loaded
    max_loaded_models: int = 0  # 0: no limit
    # a replica's first-byte timeout unless its launch sets one: a hung worker then fails over
    local_first_byte_timeout_s: float = Field(default=30.0, gt=0)
    catalog_dir: Path | None = None  # extra catalog YAML files
    public_url: str = ""  # where image links point (the gateway serves the files)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
    def files_dir(self) -> Path:
        return self.home / "files"
