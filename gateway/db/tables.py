"""Tables. Field names follow One API where an equivalent exists, so its users recognise them.

Abilities (group x model x channel) are not stored: gateway.routing derives them in memory from
the channels, which is all the relay needs and leaves nothing to keep in sync.
"""

from __future__ import annotations

import time

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel


def now() -> int:
    return int(time.time())


class ChannelStatus:
    ENABLED = 1
    MANUALLY_DISABLED = 2
    AUTO_DISABLED = 3


class TokenStatus:
    ENABLED = 1
    DISABLED = 2
    EXPIRED = 3
    EXHAUSTED = 4


class Channel(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    type: int = 50
    name: str = Field(default="", index=True)
    key_enc: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    base_url: str = ""
    models: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    model_mapping: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    # {model: kind} set by the admin (migration 0006); unset models get a guessed kind
    model_types: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    group: str = "default"
    priority: int = 0
    weight: int = 1
    status: int = ChannelStatus.ENABLED
    config: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    # One API's `other`: Azure's API version, Xunfei's version, Ali's plugin (config wins)
    other: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    system_prompt: str = ""
    created_time: int = Field(default_factory=now)
    test_time: int = 0
    response_time: int = 0  # ms, of the last test
    used_quota: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    balance: float = 0.0
    last_error: str = ""
    builtin: bool = False  # the `local` channel of the runtime


class Token(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    key_hash: str = Field(unique=True, index=True)
    key_prefix: str = ""  # "sk-abcd…wxyz", for display only
    status: int = TokenStatus.ENABLED
    group: str = "default"
    created_time: int = Field(default_factory=now)
    accessed_time: int = 0
    expired_time: int = -1
    remain_quota: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    unlimited_quota: bool = False
    used_quota: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    models: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    subnet: str = ""
    rpm: int = 0  # 0: no limit
    tpm: int = 0
    max_concurrency: int = 0
    log_content: bool = False  # store prompt text in usage logs (off by default)


class UsageLog(SQLModel, table=True):
    __table_args__ = (
        Index("ix_usagelog_created", "created_at"),
        Index("ix_usagelog_token_created", "token_id", "created_at"),
        Index("ix_usagelog_model_created", "model", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: float = Field(default_factory=time.time)
    request_id: str = ""
    token_id: int = 0
    token_name: str = ""
    model: str = ""  # as asked
    upstream_model: str = ""  # as sent
    channel_id: int = 0
    channel_name: str = ""
    endpoint: str = ""  # surface: chat, embeddings, ...
    status: int = 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    quota: int = 0  # quota units charged (500000 = 1 USD)
    latency_ms: int = 0
    ttfb_ms: int = 0
    is_stream: bool = False
    retries: int = 0
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    content: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AdminUser(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True)
    password_hash: str
    created_time: int = Field(default_factory=now)


class ModelInstance(SQLModel, table=True):
    """A launched model UID, so a restart restores what was launched."""

    uid: str = Field(primary_key=True)
    spec: str = Field(sa_column=Column(Text, nullable=False))  # LaunchSpec JSON
    node: str = ""
    created_time: int = Field(default_factory=now)


class ModelPrice(SQLModel, table=True):
    model: str = Field(primary_key=True)
    input: float = 0.0  # USD per 1M prompt tokens
    output: float = 0.0  # USD per 1M completion tokens


class ModelOverride(SQLModel, table=True):
    """Per-model values that override what exports derive (FastGPT display name, flags...)."""

    model: str = Field(primary_key=True)
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class Option(SQLModel, table=True):
    key: str = Field(primary_key=True)
    value: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AdminSession(SQLModel, table=True):
    """An admin UI login, shared by every replica (admin_ui.sessions). The primary key is the
    SHA-256 of the session id that the cookie carries: a copy of this table yields no cookie."""

    id_hash: str = Field(primary_key=True)
    username: str = Field(index=True)
    created_at: int = Field(default_factory=now)
    seen_at: int = Field(default_factory=now)
    expires_at: int  # the absolute end; the idle end is seen_at + the idle timeout
    flash: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    # a new token's key until the next page view shows it, Fernet-encrypted like channel keys
    secret_once: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class ClusterEvent(SQLModel, table=True):
    """ "Reload X", for every other process of this installation (gateway.cluster.changes): the
    change bus that needs no Redis, and the fallback when Redis is away."""

    id: int | None = Field(default=None, primary_key=True)
    origin: str = ""  # the publishing process, which skips its own events
    kind: str = ""
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: float = Field(default_factory=time.time, index=True)


class ClusterNode(SQLModel, table=True):
    """A node's heartbeat record (gateway.cluster.nodes; always here, never in Redis); gone at
    `expires_at` unless the node heartbeats again."""

    node_id: str = Field(primary_key=True)
    record: str = Field(sa_column=Column(Text, nullable=False))
    expires_at: float = Field(index=True)


class QuotaReservation(SQLModel, table=True):
    """Quota taken from a limited token for a request not yet settled (gateway.billing.
    reservations). Written in the reservation's own transaction and deleted in its settlement's,
    so a process killed mid-request leaves the row for a survivor or the next start to refund."""

    id: int | None = Field(default=None, primary_key=True)
    token_id: int
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    holder: str = Field(index=True)  # the gateway process (GatewayLease) that will settle it
    request_id: str = ""
    model: str = ""
    created_at: float = Field(default_factory=time.time)


class GatewayLease(SQLModel, table=True):
    """A running gateway process, renewed while it lives: reservations of a holder whose lease
    has expired are orphans that any process may refund."""

    holder: str = Field(primary_key=True)
    expires_at: float
