"""What the runtime reads: its own settings, so the runtime runs without the gateway.

The names are the gateway's (`MODELPORT_HOME`, `MODELPORT_KEEP_ALIVE_S`, ...), so a user sets each
once. Under `modelport serve` the composition layer (gateway.runtime_host) builds this from the
gateway's Settings, so config/modelport.yaml applies as well; a program that embeds the runtime
alone reads the environment (or passes values).

The process-wide switches below (hub, device, offline, plugins) are read at each use through
`RuntimeSettings()`: the CLI and tests set them after import, and workers inherit them. The
Hugging Face and Xinference names are read as those libraries read them, so one variable steers
both them and us.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_TRUE = {"1", "true", "yes", "on"}


class RuntimeSettings(BaseSettings):
    # an empty variable means unset, as `os.environ.get(name) or default` read it before
    model_config = SettingsConfigDict(
        env_prefix="MODELPORT_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    home: Path = Path("~/.modelport")  # model cache, worker specs and logs, generated files
    keep_alive_s: float = 0.0  # unload a model idle this long; 0 keeps models loaded
    max_loaded_models: int = 0  # 0: no limit
    # a replica's first-byte timeout unless its launch sets one: a hung worker then fails over
    local_first_byte_timeout_s: float = Field(default=30.0, gt=0)
    catalog_dir: Path | None = None  # extra catalog YAML files
    public_url: str = ""  # where image links point (the gateway serves the files)

    # process-wide switches (environment only; see the module docstring)
    model_source: str = "huggingface"  # or "modelscope": where missing model files come from
    device: str = ""  # forces every launch's default device ("cpu" on a GPU host); empty: detect
    vllm_python: str = ""  # interpreter that runs vLLM (its own venv); empty: this one
    engine_plugins: str = ""  # extra engines: "name=package.module:Class,..."
    offline_flag: str = Field(default="", validation_alias="MODELPORT_OFFLINE")
    hf_hub_offline: str = Field(default="", validation_alias="HF_HUB_OFFLINE")
    transformers_offline: str = Field(default="", validation_alias="TRANSFORMERS_OFFLINE")
    hf_hub_cache: str = Field(default="", validation_alias="HF_HUB_CACHE")
    hf_home: str = Field(default="", validation_alias="HF_HOME")
    hf_endpoint: str = Field(default="https://huggingface.co", validation_alias="HF_ENDPOINT")
    xinference_home: str = Field(default="~/.xinference", validation_alias="XINFERENCE_HOME")

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def offline(self) -> bool:
        """No hub calls: any of huggingface_hub's, transformers' or our own switches."""
        flags = (self.hf_hub_offline, self.transformers_offline, self.offline_flag)
        return any(flag.strip().lower() in _TRUE for flag in flags)

    @property
    def hf_cache_root(self) -> Path:
        """The Hugging Face hub cache, resolved as huggingface_hub does (HF_HUB_CACHE, HF_HOME/hub)."""
        if self.hf_hub_cache:
            return Path(self.hf_hub_cache).expanduser()
        return Path(self.hf_home or "~/.cache/huggingface").expanduser() / "hub"
