"""Request and response shapes of the admin API, per entity: XCreate, XUpdate, XPublic.

They accept what One API clients send (comma-separated `models`, `model_mapping` as a JSON string)
and answer in One API's field names. Keys never appear in an XPublic.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.model_kinds import normalise_kinds
from gateway.relay.bounds import Printable


def split_csv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else value.replace("\n", ",").split(",")
    return [s.strip() for s in items if s and s.strip()]


def parse_json_object(value: str | dict[str, Any] | None, field: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{field} must be a JSON object: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"{field} must be a JSON object, got {type(parsed).__name__}")
    return parsed


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


# --- channels -------------------------------------------------------------------------------
class ChannelFields(_Lenient):
    type: int | None = None
    name: Printable | None = Field(default=None, max_length=100)
    base_url: str | None = None
    models: list[str] | None = None
    model_mapping: dict[str, str] | None = None
    # {model: kind}: corrects a guessed kind (FastGPT lists, /v1/models/{id}, channel tests)
    model_types: dict[str, str] | None = None
    group: str | None = None
    priority: int | None = None
    weight: int | None = Field(default=None, ge=0)
    status: int | None = Field(default=None, ge=1, le=3)
    config: dict[str, Any] | None = None
    other: str | None = Field(default=None, max_length=1000)  # One API's: Azure API version...
    system_prompt: str | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: Any) -> Any:
        return None if v is None else split_csv(v)

    @field_validator("model_mapping", mode="before")
    @classmethod
    def _mapping(cls, v: Any) -> Any:
        return None if v is None else parse_json_object(v, "model_mapping")

    @field_validator("model_types", mode="before")
    @classmethod
    def _model_types(cls, v: Any) -> Any:
        return None if v is None else normalise_kinds(parse_json_object(v, "model_types"))

    @field_validator("config", mode="before")
    @classmethod
    def _config(cls, v: Any) -> Any:
        return None if v is None else parse_json_object(v, "config")


class ChannelCreate(ChannelFields):
    name: Printable = Field(min_length=1, max_length=100)
    type: int = 50
    key: str = ""
    models: list[str] = Field(default_factory=list)


class ChannelUpdate(ChannelFields):
    id: int
    key: str | None = None  # empty or absent keeps the stored key


class ChannelPublic(BaseModel):
    id: int
    type: int
    name: str
    base_url: str
    models: str
    model_mapping: str
    model_types: str
    group: str
    priority: int
    weight: int
    status: int
    config: str
    other: str
    system_prompt: str
    created_time: int
    test_time: int
    response_time: int
    used_quota: int
    balance: float
    last_error: str
    has_key: bool


# --- tokens ---------------------------------------------------------------------------------
class TokenFields(_Lenient):
    name: Printable | None = Field(default=None, max_length=30)
    expired_time: int | None = None
    remain_quota: int | None = Field(default=None, ge=0)
    unlimited_quota: bool | None = None
    models: list[str] | None = None
    subnet: str | None = None
    group: str | None = None
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    max_concurrency: int | None = Field(default=None, ge=0)
    log_content: bool | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: Any) -> Any:
        return None if v is None else split_csv(v)

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, v: str | None) -> str | None:
        if not v:
            return v
        for cidr in split_csv(v):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"subnet {cidr!r} is not a CIDR like 10.0.0.0/8") from exc
        return ",".join(split_csv(v))


class TokenCreate(TokenFields):
    name: Printable = Field(default="", max_length=30)
    expired_time: int = -1
    remain_quota: int = Field(default=0, ge=0)
    unlimited_quota: bool = False


class TokenUpdate(TokenFields):
    id: int
    status: int | None = Field(default=None, ge=1, le=4)


class TokenPublic(BaseModel):
    id: int
    name: str
    key: str  # the display prefix; the full key only in the creation response
    status: int
    group: str
    created_time: int
    accessed_time: int
    expired_time: int
    remain_quota: int
    unlimited_quota: bool
    used_quota: int
    models: str
    subnet: str
    rpm: int
    tpm: int
    max_concurrency: int
    log_content: bool


class TokenCreated(TokenPublic):
    """Returned once, at creation: `key` is the full secret."""
