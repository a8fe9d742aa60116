"""Read a One API database: its tables as plain rows, whatever the dialect and One API version.

One API's SQL_DSN is a Go MySQL DSN (`user:pass@tcp(host:3306)/oneapi`), a `postgres://` URL, or
empty for SQLite (`one-api.db`); all of these are accepted besides SQLAlchemy URLs. Tables are
reflected, not declared: columns added over One API's versions (`config`, `system_prompt`,
`subnet`, `priority`) may be missing from older databases and read as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

# gorm's table names for model.Channel, Token, Ability, User, Option
TABLES = ("channels", "tokens", "abilities", "users", "options")

_GO_MYSQL_DSN = re.compile(r"^(?P<auth>[^@/]*)@tcp\((?P<host>[^)]*)\)/(?P<db>[^?]*)(\?.*)?$")


class SourceError(Exception):
    """The One API database cannot be opened or read; the message says what to fix."""


@dataclass(slots=True)
class OneApiData:
    channels: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)
    abilities: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)


def sqlalchemy_url(dsn: str) -> str:
    """One API's spellings and plain URLs -> a SQLAlchemy URL with a driver we ship."""
    dsn = dsn.strip()
    go = _GO_MYSQL_DSN.match(dsn)
    if go:
        return f"mysql+pymysql://{go['auth']}@{go['host']}/{go['db']}"
    for prefix, driver in (
        ("mysql://", "mysql+pymysql://"),
        ("mariadb://", "mysql+pymysql://"),
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
    ):
        if dsn.startswith(prefix):
            return driver + dsn[len(prefix) :]
    if dsn.startswith(("sqlite:", "mysql+", "postgresql+")):
        return dsn
    raise SourceError(
        f"cannot read {dsn!r}: pass mysql://user:pass@host:3306/oneapi, "
        "postgresql://user@host:5432/oneapi, sqlite:///path/one-api.db or One API's SQL_DSN"
    )


def read(dsn: str) -> OneApiData:
    url = sqlalchemy_url(dsn)
    try:
        engine = create_engine(url)
    except NoSuchModuleError as exc:
        raise SourceError(f"no driver for {make_url(url).drivername}: {exc}") from exc
    except (ArgumentError, ImportError) as exc:
        hint = " (pip install 'modelport[oneapi-import]')" if "mysql" in url else ""
        raise SourceError(f"cannot open {make_url(url).render_as_string()}: {exc}{hint}") from exc
    try:
        meta = MetaData()
        with engine.connect() as conn:
            meta.reflect(conn, only=lambda name, _meta: name in TABLES)
            missing = {"channels", "tokens"} - set(meta.tables)
            if missing:
                raise SourceError(
                    f"{make_url(url).render_as_string()} has no {', '.join(sorted(missing))} "
                    "table: is this One API's database?"
                )
            rows = {
                name: [dict(r) for r in conn.execute(select(table)).mappings()]
                for name, table in meta.tables.items()
            }
    except SQLAlchemyError as exc:
        raise SourceError(f"cannot read {make_url(url).render_as_string()}: {exc}") from exc
    finally:
        engine.dispose()
    return OneApiData(
        channels=rows["channels"],
        tokens=rows["tokens"],
        abilities=rows.get("abilities", []),
        users=rows.get("users", []),
        options={str(o["key"]): str(o["value"] or "") for o in rows.get("options", [])},
    )
