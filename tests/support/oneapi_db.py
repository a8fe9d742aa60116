"""One API's own schema and realistic rows, for import tests on SQLite, MariaDB and PostgreSQL.

The tables follow the gorm models of songquanpeng/one-api (commit 8df4a26), as its
model/main.go migrateDB() creates them with AutoMigrate: model/channel.go Channel,
model/token.go Token, model/user.go User, model/option.go Option, model/ability.go Ability
(gorm's names: plural snake_case tables and columns, Go int -> bigint, *string -> nullable).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
)

meta = MetaData()

channels = Table(
    "channels",
    meta,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("type", BigInteger, server_default="0"),
    Column("key", Text),
    Column("status", BigInteger, server_default="1"),
    Column("name", String(191), index=True),
    Column("weight", BigInteger, server_default="0"),
    Column("created_time", BigInteger),
    Column("test_time", BigInteger),
    Column("response_time", BigInteger),
    Column("base_url", String(191), server_default=""),
    Column("other", Text),
    Column("balance", Float),
    Column("balance_updated_time", BigInteger),
    Column("models", Text),
    Column("group", String(32), server_default="default"),
    Column("used_quota", BigInteger, server_default="0"),
    Column("model_mapping", String(1024), server_default=""),
    Column("priority", BigInteger, server_default="0"),
    Column("config", Text),
    Column("system_prompt", Text),
)

tokens = Table(
    "tokens",
    meta,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger),
    Column("key", CHAR(48), unique=True),
    Column("status", BigInteger, server_default="1"),
    Column("name", String(191), index=True),
    Column("created_time", BigInteger),
    Column("accessed_time", BigInteger),
    Column("expired_time", BigInteger, server_default="-1"),
    Column("remain_quota", BigInteger, server_default="0"),
    Column("unlimited_quota", Boolean, server_default="0"),
    Column("used_quota", BigInteger, server_default="0"),
    Column("models", Text),
    Column("subnet", String(191), server_default=""),
)

users = Table(
    "users",
    meta,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("username", String(191), unique=True),
    Column("password", String(191), nullable=False),
    Column("display_name", String(191)),
    Column("role", Integer, server_default="1"),
    Column("status", Integer, server_default="1"),
    Column("email", String(191)),
    Column("access_token", String(32), unique=True),
    Column("quota", BigInteger, server_default="0"),
    Column("used_quota", BigInteger, server_default="0"),
    Column("request_count", Integer, server_default="0"),
    Column("group", String(32), server_default="default"),
    Column("aff_code", String(32), unique=True),
    Column("inviter_id", Integer),
)

options = Table(
    "options",
    meta,
    Column("key", String(191), primary_key=True),
    Column("value", Text),
)

abilities = Table(
    "abilities",
    meta,
    Column("group", String(32), primary_key=True),
    Column("model", String(191), primary_key=True),
    Column("channel_id", BigInteger, primary_key=True, autoincrement=False),
    Column("enabled", Boolean),
    Column("priority", BigInteger, server_default="0"),
)

# 48 characters, as One API's random key (common/helper GenerateKey); stored without sk-
ALICE_KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghijkl"
ROOT_KEY = "rOOtKeY0000111122223333444455556666777788889999a"
BOB_KEY = "b0bK" * 12
OLD_KEY = "expiredKey" + "x" * 38


def rows(upstream_url: str) -> dict[str, list[dict[str, Any]]]:
    now = int(time.time())
    return {
        "users": [
            dict(
                id=1,
                username="root",
                password="$2a$10$h",
                role=100,
                status=1,
                access_token="a" * 32,
                quota=500_000_000,
                group="default",
                aff_code="R00T",
            ),
            dict(
                id=2,
                username="alice",
                password="$2a$10$h",
                role=1,
                status=1,
                access_token="b" * 32,
                quota=1_000_000,
                group="vip",
                aff_code="ALIC",
            ),
            dict(
                id=3,
                username="bob",
                password="$2a$10$h",
                role=1,
                status=2,
                access_token="c" * 32,
                quota=0,
                group="default",
                aff_code="B0B0",
            ),
        ],
        "channels": [
            dict(
                id=1,
                type=1,
                key="sk-upstream-openai",
                status=1,
                name="openai",
                weight=0,
                created_time=now - 86400,
                base_url="",
                other="",
                balance=12.5,
                models="gpt-4o,gpt-4o-mini",
                group="default,vip",
                used_quota=123456,
                model_mapping="",
                priority=0,
                config="{}",
                system_prompt=None,
            ),
            dict(
                id=2,
                type=50,
                key="sk-local-vllm",
                status=1,
                name="self-hosted qwen",
                weight=0,
                created_time=now - 3600,
                base_url=upstream_url + "/v1",
                models="qwen2.5-7b-instruct",
                group="default,vip",
                used_quota=0,
                model_mapping='{"qwen2.5-7b-instruct": "m"}',
                priority=10,
                config="{}",
                response_time=420,
                test_time=now - 60,
            ),
            dict(
                id=3,
                type=3,
                key="azure-key-0123",
                status=1,
                name="azure",
                weight=0,
                created_time=now,
                base_url="https://contoso.openai.azure.com",
                other="2024-02-15-preview",
                models="gpt-35-turbo,gpt-4.1",
                group="default",
                model_mapping="",
                priority=0,
                config='{"region": ""}',
            ),
            dict(
                id=4,
                type=15,
                key="ak|sk",
                status=1,
                name="ernie",
                weight=0,
                created_time=now,
                base_url="",
                models="ERNIE-4.0-8K",
                group="default",
                model_mapping="",
                priority=0,
                config="",
            ),
            dict(
                id=5,
                type=2,
                key="fk-api2d",
                status=2,
                name="api2d",
                weight=0,
                created_time=now,
                base_url="",
                models="gpt-3.5-turbo",
                group="default",
                model_mapping=None,
                priority=0,
                config=None,
            ),
            dict(
                id=6,
                type=17,
                key="sk-dashscope",
                status=3,
                name="qwen cloud",
                weight=5,
                created_time=now,
                base_url="https://dashscope.aliyuncs.com",
                other="",
                models="qwen-max",
                group="default",
                model_mapping="",
                priority=0,
                config="{}",
            ),
        ],
        "abilities": [
            dict(
                group="default",
                model="qwen2.5-7b-instruct",
                channel_id=2,
                enabled=True,
                priority=10,
            ),
            dict(group="vip", model="qwen2.5-7b-instruct", channel_id=2, enabled=True, priority=10),
            dict(group="default", model="qwen-old", channel_id=2, enabled=True, priority=10),
            dict(group="default", model="gpt-4o", channel_id=1, enabled=True, priority=0),
        ],
        "tokens": [
            dict(
                id=1,
                user_id=2,
                key=ALICE_KEY,
                status=1,
                name="alice-app",
                created_time=now - 7200,
                accessed_time=now - 60,
                expired_time=-1,
                remain_quota=250_000,
                unlimited_quota=False,
                used_quota=750_000,
                models="qwen2.5-7b-instruct",
                subnet="",
            ),
            dict(
                id=2,
                user_id=1,
                key=ROOT_KEY,
                status=1,
                name="root",
                created_time=now,
                accessed_time=0,
                expired_time=now + 30 * 86400,
                remain_quota=0,
                unlimited_quota=True,
                used_quota=0,
                models=None,
                subnet=None,
            ),
            dict(
                id=3,
                user_id=3,
                key=BOB_KEY,
                status=1,
                name="bob",
                created_time=now,
                accessed_time=0,
                expired_time=-1,
                remain_quota=100,
                unlimited_quota=False,
                used_quota=0,
                models="",
                subnet="",
            ),
            dict(
                id=4,
                user_id=1,
                key=OLD_KEY,
                status=3,
                name="old",
                created_time=now - 999,
                accessed_time=0,
                expired_time=now - 500,
                remain_quota=10,
                unlimited_quota=False,
                used_quota=0,
                models="",
                subnet="",
            ),
        ],
        "options": [
            dict(key="ModelRatio", value='{"gpt-4o": 1.25, "qwen2.5-7b-instruct": 0.5}'),
            dict(key="CompletionRatio", value='{"qwen2.5-7b-instruct": 2}'),
            dict(key="GroupRatio", value='{"default": 1, "vip": 0.8}'),
            dict(key="QuotaPerUnit", value="500000"),
            dict(key="ItemsPerPage", value="10"),
        ],
    }


def create(url: str, upstream_url: str) -> None:
    """One API's tables with the rows above in the (empty) database at SQLAlchemy `url`."""
    engine = create_engine(url)
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            for name, values in rows(upstream_url).items():
                for row in values:  # one by one: rows leave different columns to defaults
                    conn.execute(meta.tables[name].insert(), row)
    finally:
        engine.dispose()
