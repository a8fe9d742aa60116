"""`modelport` command line: serve, and admin operations against a running server.

Admin commands talk to the server's admin API (so caches, routes and workers stay in step) with
the admin token from --admin-token or MODELPORT_ADMIN_TOKEN.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

app = typer.Typer(
    help="modelport: local models and model APIs behind one OpenAI-compatible gateway",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="API tokens (sk-...)", no_args_is_help=True)
channel_app = typer.Typer(help="upstream channels", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(channel_app, name="channel")

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="MODELPORT_URL", help="the running modelport server")
]
AdminOpt = Annotated[
    str | None,
    typer.Option(
        "--admin-token", envvar="MODELPORT_ADMIN_TOKEN", help="admin token (printed at first start)"
    ),
]
DEFAULT_URL = "http://127.0.0.1:3000"


class AdminClient:
    def __init__(self, url: str, admin_token: str | None) -> None:
        if not admin_token:
            fail("an admin token is needed: pass --admin-token or set MODELPORT_ADMIN_TOKEN")
        # no read limit: a launch answers once the model is loaded, which can take minutes
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=httpx.Timeout(10.0, read=None),
            headers={"Authorization": admin_token or ""},
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            fail(
                f"cannot reach modelport at {self.http.base_url}: {exc} (is `modelport serve` "
                "running? pass --url)"
            )
        try:
            body = resp.json()
        except ValueError:
            fail(f"HTTP {resp.status_code}: {resp.text[:500]}")
        if isinstance(body, dict) and body.get("success") is False:
            fail(body.get("message") or f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            fail(err.get("message") or body.get("detail") or f"HTTP {resp.status_code}")
        return body.get("data", body) if isinstance(body, dict) else body


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def show(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (0.0.0.0 to expose)")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run the gateway, admin API/UI and the local runtime."""
    import uvicorn

    from gateway.db.engine import upgrade
    from gateway.settings import Settings

    if host:
        os.environ["MODELPORT_HOST"] = host
    if port:
        os.environ["MODELPORT_PORT"] = str(port)
    # Everything the server creates (database, logs, the secret key, spooled uploads, worker
    # logs) is owner-only: other local users have no business reading any of it.
    os.umask(0o077)
    settings = Settings()
    check_port_free(settings.host, settings.port)
    # once, before the workers fork: N processes migrating one fresh SQLite file at once collide
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    typer.echo(
        f"modelport on http://{settings.host}:{settings.port} (state in {settings.home})", err=True
    )
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=log_level,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        timeout_graceful_shutdown=int(settings.shutdown_drain_s) + 5,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


@app.command()
def check() -> None:
    """Check this installation: the server's imports and an async database round trip."""
    import asyncio
    import tempfile

    from gateway.app import create_app
    from gateway.db.engine import make_engine, upgrade

    async def roundtrip(url: str) -> None:
        from sqlalchemy import text

        engine = make_engine(url)  # async: needs greenlet (sqlalchemy[asyncio])
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT count(*) FROM channel"))
        finally:
            await engine.dispose()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/check.db"
        upgrade(url)
        asyncio.run(roundtrip(url))
        from gateway.settings import Settings

        create_app(Settings(home=Path(tmp), database_url=url, runtime_enabled=False))
    typer.echo("ok: modelport imports, migrates and talks to its database")


def check_port_free(host: str, port: int) -> None:
    """Fail at once, before any model loads, when another server holds the port."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"cannot bind {host!r}: {exc.strerror} (pass --host with an address of this machine)")
    for family, type_, proto, _, addr in infos[:1]:
        with socket.socket(family, type_, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    fail(f"port {port} is in use: stop the other server or pass --port")
                fail(f"cannot listen on {host}:{port}: {exc.strerror}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="a name (30 characters at most)")],
    quota: Annotated[
        int | None, typer.Option(help="quota units (500000 = 1 USD); omit for unlimited")
    ] = None,
    models: Annotated[str, typer.Option(help="comma-separated allow-list")] = "",
    expires: Annotated[int, typer.Option(help="unix time; -1 never")] = -1,
    subnet: Annotated[str, typer.Option(help="comma-separated CIDRs")] = "",
    url: UrlOpt = DEFAULT_URL,
    admin_token: AdminOpt = None,
) -> None:
    """Create a token; prints the key once."""
    body = {
        "name": name,
        "models": models,
        "expired_time": expires,
        "subnet": subnet,
        "unlimited_quota": quota is None,
        "remain_quota": quota or 0,
    }
    with AdminClient(url, admin_token) as client:
        data = client.call("POST", "/api/token/", json=body)
    typer.echo(data["key"])
    typer.echo("(shown once: store it now)", err=True)


@token_app.command("list")
def token_list(url: UrlOpt = DEFAULT_URL, admin_token: AdminOpt = None) -> None:
    with AdminClient(url, admin_token) as client:
        show(client.call("GET", "/api/token/", params={"page_size": 500}))


@token_app.command("disable")
def token_disable(token_id: int, url: UrlOpt = DEFAULT_URL, admin_token: AdminOpt = None) -> None:
    with AdminClient(url, admin_token) as client:
        client.call(
            "PUT", "/api/token/", params={"status_only": 1}, json={"id": token_id, "status": 2}
        )


@token_app.command("enable")
def token_enable(token_id: int, url: UrlOpt = DEFAULT_URL, admin_token: AdminOpt = None) -> None:
    with AdminClient(url, admin_token) as client:
        client.call(
            "PUT", "/api/token/", params={"status_only": 1}, json={"id": token_id, "status": 1}
        )


@token_app.command("delete")
def token_delete(token_id: int, url: UrlOpt = DEFAULT_URL, admin_token: AdminOpt = None) -> None:
    with AdminClient(url, admin_token) as client:
        client.call("DELETE", f"/api/token/{token_id}")


@channel_app.command("add")
def channel_add(
    name: Annotated[str, typer.Option()],
    base_url: Annotated[str, typer.Option("--base-url")] = "",
    key: Annotated[str, typer.Option(envvar="MODELPORT_CHANNEL_KEY")] = "",
    models: Annotated[str, typer.Option(help="comma-separated")] = "",
    type_: Annotated[
        int, typer.Option("--type", help="One API channel type (50: OpenAI-compatible)")
    ] = 50,
    mapping: Annotated[str, typer.Option(help='JSON, e.g. {"gpt-4o":"qwen-chat"}')] = "",
    priority: Annotated[int, typer.Option()] = 0,
    weight: Annotated[int, typer.Option()] = 1,
    group: Annotated[str, typer.Option()] = "default",
    url: UrlOpt = DEFAULT_URL,
    admin_token: AdminOpt = None,
) -> None:
    """Add a channel."""
    body = {
        "name": name,
        "base_url": base_url,
        "key": key,
        "models": models,
        "type": type_,
        "model_mapping": mapping or "{}",
        "priority": priority,
        "weight": weight,
        "group": group,
    }
    with AdminClient(url, admin_token) as client:
        show(client.call("POST", "/api/channel/", json=body))


@channel_app.command("list")
def channel_list(url: UrlOpt = DEFAULT_URL, admin_token: AdminOpt = None) -> None:
    with AdminClient(url, admin_token) as client:
        show(client.call("GET", "/api/channel/", params={"page_size": 500}))


@channel_app.command("test")
def channel_test(
    channel_id: int, model: str = "", url: UrlOpt = DEFAULT_URL, admin_token: AdminOpt = None
) -> None:
    with AdminClient(url, admin_token) as client:
        show(
            client.call(
                "GET",
                f"/api/channel/test/{channel_id}",
                params={"model": model} if model else None,
            )
        )


@channel_app.command("delete")
def channel_delete(
    channel_id: int, url: UrlOpt = DEFAULT_URL, admin_token: AdminOpt = None
) -> None:
    with AdminClient(url, admin_token) as client:
        client.call("DELETE", f"/api/channel/{channel_id}")


export_app = typer.Typer(help="configuration for other systems", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("fastgpt")
def export_fastgpt(
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="config (FastGPT <= 4.8.19 config.json) or models (>= 4.8.20 model config)",
        ),
    ] = "config",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file to write (default: stdout)")
    ] = None,
    merge: Annotated[
        Path | None,
        typer.Option(help="an existing config.json (json5 comments allowed) to merge into"),
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(help="URL of a running FastGPT >= 4.8.20 to add/update the models in"),
    ] = None,
    root_password: Annotated[
        str | None, typer.Option(envvar="FASTGPT_ROOT_PASSWORD", help="FastGPT root password")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="the modelport token FastGPT will use (default: MODELPORT_INITIAL_TOKEN)"
        ),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    admin_token: AdminOpt = None,
) -> None:
    """Export every served model as FastGPT configuration, or push it to a running FastGPT."""
    import asyncio

    from gateway.export import dump_json, push_models

    if format_ not in ("config", "models"):
        fail("--format must be config or models")
    with AdminClient(url, admin_token) as client:
        if push:
            if not root_password:
                fail("--push needs --root-password (or FASTGPT_ROOT_PASSWORD)")
            models = client.call(
                "POST", "/api/export/fastgpt", json={"format": "models", "api_key": api_key}
            )
            results = asyncio.run(
                push_models(push, root_password=root_password or "", models_json=models)
            )
            for r in results:
                mark = "ok" if r.ok else f"FAILED: {r.error}"
                typer.echo(f"{r.model}: {mark}")
            if not all(r.ok for r in results):
                raise typer.Exit(1)
            return
        body: dict[str, Any] = {"format": format_, "api_key": api_key}
        if merge is not None:
            if format_ != "config":
                fail("--merge applies to --format config")
            body["existing"] = merge.read_text(encoding="utf-8")
        data = client.call("POST", "/api/export/fastgpt", json=body)
        text = dump_json(data)
        if output is None:
            typer.echo(text)
        else:
            output.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {output}", err=True)


import_app = typer.Typer(help="bring channels, tokens and prices over", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("one-api")
def import_one_api(
    db: Annotated[
        str,
        typer.Option(
            help="One API's database: mysql://user:pass@host:3306/oneapi, "
            "postgresql://user@host/oneapi, sqlite:///one-api.db, or its SQL_DSN"
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option(help="show what would be imported; change nothing")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    admin_token: AdminOpt = None,
) -> None:
    """Channels, tokens (their sk- keys keep working), model ratios and quotas from One API."""
    from gateway.migrate_oneapi.plan import make_plan
    from gateway.migrate_oneapi.source import SourceError, read

    try:
        plan = make_plan(read(db))
    except SourceError as exc:
        fail(str(exc))
    if dry_run:
        show(plan.summary())
        return
    with AdminClient(url, admin_token) as client:
        result: dict[str, Any] = {"channels": 0, "tokens": 0, "prices": 0, "notes": plan.notes}
        for body in plan.batches():
            done = client.call("POST", "/api/import/one-api", json=body)
            for kind in ("channels", "tokens", "prices"):
                result[kind] += done[kind]
            result["notes"] += done["notes"]
        show(result)


def _register_plugins() -> None:
    """Commands of optional packages (the local runtime's launch/list/terminate)."""
    import importlib

    try:
        mod = importlib.import_module("local_runtime.cli")
    except ModuleNotFoundError as exc:
        if exc.name != "local_runtime.cli":
            raise
        return
    mod.register(app, AdminClient, UrlOpt, AdminOpt, DEFAULT_URL)
    from gateway.runtime_host import cli as node_cli

    node_cli.register(app)


_register_plugins()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
