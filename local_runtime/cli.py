"""`modelport launch|list|terminate|engines|catalog|register|unregister`, against a running server.

`modelport catalog` is a group: alone it lists (grouped by type, marked ready or with the download
it needs), `catalog import-xinference` registers a local Xinference home's custom models.

Registered onto the main CLI by gateway.cli (`register(app, AdminClient, UrlOpt, AdminOpt,
DEFAULT_URL)`), so the option types and the admin client are the gateway's own.

No `from __future__ import annotations` here, on purpose: typer reads the annotations of the
command functions at runtime, and the --url/--admin-token option types are the values passed to
`register`, which a string annotation could not name.
"""

import json
import threading
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

FIELDS = ("uid", "model_name", "model_type", "model_engine", "status", "replica")
CATALOG_FIELDS = ("name", "formats", "sizes", "abilities", "status")
TYPE_ORDER = ("llm", "embedding", "rerank", "audio", "image")


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; values are JSON when they parse (numbers, true, lists), else strings."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--option")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    cells = [[str(c) for c in columns]] + [
        ["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells
    )


def _progress_printer(client: Any, uid: str, stop: threading.Event) -> None:
    """Print load progress to stderr while the launch request waits (best effort)."""
    last = ""
    while not stop.wait(1.0):
        try:
            resp = client.http.get(f"/api/runtime/instances/{uid}", timeout=10)
            data = resp.json().get("data") or {}
        except (OSError, ValueError):
            continue
        progress = data.get("progress") or {}
        stage = progress.get("stage")
        if not stage:
            continue
        if stage == "downloading" and progress.get("bytes_total"):
            pct = 100 * progress.get("bytes_done", 0) / progress["bytes_total"]
            line = f"{uid}: downloading {pct:.0f}%"
        elif stage == "loading":
            line = (
                f"{uid}: loading ({progress.get('replicas_ready', 0)}/"
                f"{progress.get('replicas', 1)} replicas ready)"
            )
        else:
            line = f"{uid}: {stage}"
        if line != last:
            typer.echo(line, err=True)
            last = line


def _sizes(specs: list[dict[str, Any]]) -> str:
    sizes = sorted({s["size_in_billions"] for s in specs if s.get("size_in_billions") is not None})
    if not sizes:
        return ""
    return f"{sizes[0]:g}B" if len(sizes) == 1 else f"{sizes[0]:g}-{sizes[-1]:g}B"


def _catalog_text(rows: list[dict[str, Any]]) -> str:
    """Rows grouped by model type, one table per type, each family marked ready or not."""
    from local_runtime.catalog.offline import describe

    out: list[str] = []
    present = {row["type"] for row in rows}
    for kind in [k for k in TYPE_ORDER if k in present] + sorted(present - set(TYPE_ORDER)):
        group = [
            {
                "name": row["name"] + (" (custom)" if row.get("custom") else ""),
                "formats": ",".join(dict.fromkeys(s["format"] for s in row["specs"])),
                "sizes": _sizes(row["specs"]),
                "abilities": ",".join(row["abilities"]),
                "status": describe(row),
            }
            for row in rows
            if row["type"] == kind
        ]
        noun = "family" if len(group) == 1 else "families"
        out += [f"{kind}: {len(group)} {noun}", _table(group, CATALOG_FIELDS), ""]
    return "\n".join(out).rstrip()


def _register_xinference(client: Any, item: Any) -> str | None:
    """POST one Xinference custom model to /v1/model_registrations; the refusal, if any."""
    import httpx

    try:
        resp = client.http.post(
            f"/v1/model_registrations/{item.model_type}",
            json={"model": json.dumps(item.body), "persist": True},
        )
    except httpx.TransportError as exc:
        return f"cannot reach modelport at {client.http.base_url}: {exc}"
    if resp.status_code < 400:
        return None
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {resp.status_code}"
    # Xinference's {"detail"} from the registration route; the gateway's OpenAI {"error"} (auth)
    error = body.get("error")
    detail = body.get("detail") or (error.get("message") if isinstance(error, dict) else None)
    return str(detail or body.get("message") or f"HTTP {resp.status_code}")


def register(app: typer.Typer, admin_client: Any, url_opt: Any, admin_opt: Any, default_url: str):
    """Add the runtime commands to `app`."""
    # the gateway's --url / --admin-token options, reused as they are
    url_info, admin_info = get_args(url_opt)[1], get_args(admin_opt)[1]

    @app.command()
    def launch(
        model_name: Annotated[str, typer.Option("-n", "--model-name", help="catalog name")],
        model_uid: Annotated[str | None, typer.Option("-u", "--model-uid")] = None,
        model_type: Annotated[str | None, typer.Option("-t", "--model-type")] = None,
        model_engine: Annotated[str | None, typer.Option("-e", "--model-engine")] = None,
        model_format: Annotated[str | None, typer.Option("-f", "--model-format")] = None,
        size: Annotated[str | None, typer.Option("-s", "--size-in-billions")] = None,
        quantization: Annotated[str | None, typer.Option("-q", "--quantization")] = None,
        model_path: Annotated[str | None, typer.Option("--model-path")] = None,
        replica: Annotated[int, typer.Option("--replica", min=1)] = 1,
        n_gpu: Annotated[str, typer.Option("--n-gpu", help="auto, a number, or none")] = "auto",
        gpu_idx: Annotated[
            str | None, typer.Option("--gpu-idx", help="comma-separated GPU indices")
        ] = None,
        keep_alive: Annotated[
            float | None, typer.Option("--keep-alive", help="unload after idle seconds; 0 never")
        ] = None,
        option: Annotated[
            list[str] | None, typer.Option("--option", help="engine option key=value (repeat)")
        ] = None,
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Launch a model; returns when it is ready and prints its UID."""
        body: dict[str, Any] = {
            "model_name": model_name,
            "model_uid": model_uid,
            "model_type": model_type,
            "model_engine": model_engine,
            "model_format": model_format,
            "model_size_in_billions": size,
            "quantization": quantization,
            "model_path": model_path,
            "replica": replica,
            "n_gpu": None if n_gpu.lower() in ("none", "null", "0") else n_gpu,
            "gpu_idx": [int(i) for i in gpu_idx.split(",")] if gpu_idx else None,
            "keep_alive_s": keep_alive,
            "engine_options": _parse_options(option or []),
        }
        with admin_client(url, admin_token) as client:
            stop = threading.Event()
            watcher = threading.Thread(
                target=_progress_printer, args=(client, model_uid or model_name, stop), daemon=True
            )
            watcher.start()
            try:
                data = client.call("POST", "/v1/models", json=body)
            finally:
                stop.set()
                watcher.join()  # its last poll, if one is under way, before the client closes
        typer.echo(data["model_uid"])

    @app.command("list")
    def list_(
        all_: Annotated[
            bool, typer.Option("--all", help="also list what the catalog can launch")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Launched models with their status (and, with --all, the catalog)."""
        with admin_client(url, admin_token) as client:
            rows = client.call("GET", "/api/runtime/instances")
            if as_json:
                typer.echo(json.dumps(rows, indent=2))
            else:
                typer.echo(_table(rows, FIELDS) if rows else "no model is launched")
                for row in rows:
                    if row.get("error"):
                        typer.echo(f"{row['uid']}: {row['error']}", err=True)
            if all_:
                families = client.call("GET", "/api/runtime/catalog")
                typer.echo("")
                typer.echo(_table(families, ("name", "type", "abilities", "description")))

    @app.command()
    def terminate(
        uid: str,
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Stop a launched model and forget it (it is not restored at the next start)."""
        with admin_client(url, admin_token) as client:
            client.call("DELETE", f"/v1/models/{uid}")
        typer.echo(f"terminated {uid}", err=True)

    @app.command()
    def engines(
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Engines, and whether each can run on the server (with the reason if not)."""
        with admin_client(url, admin_token) as client:
            rows = client.call("GET", "/api/runtime/engines")
        for row in rows:
            row["model_types"] = ",".join(row["model_types"])
            row["formats"] = ",".join(row["formats"])
            row["available"] = "yes" if row["available"] else f"no: {row['reason']}"
        typer.echo(_table(rows, ("name", "model_types", "formats", "available")))

    catalog_app = typer.Typer(
        help="The model catalog: search it, see what launches offline, import Xinference's models."
    )
    app.add_typer(catalog_app, name="catalog")

    @catalog_app.callback(invoke_without_command=True)
    def catalog(
        ctx: typer.Context,
        type_: Annotated[str | None, typer.Option("--type", "-t")] = None,
        search: Annotated[str | None, typer.Option("--search")] = None,
        ability: Annotated[str | None, typer.Option("--ability")] = None,
        ready: Annotated[
            bool, typer.Option("--ready", help="only what launches now, without a download")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Families the server can launch, grouped by type, each marked ready or with its download."""
        if ctx.invoked_subcommand is not None:
            return
        params = {k: v for k, v in (("type", type_), ("search", search), ("ability", ability)) if v}
        with admin_client(url, admin_token) as client:
            rows = client.call("GET", "/api/runtime/catalog", params=params)
        if ready:
            rows = [row for row in rows if row.get("launchable")]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        typer.echo(_catalog_text(rows) if rows else "no model matches")

    @catalog_app.command("import-xinference")
    def import_xinference(
        xinference_home: Annotated[
            Path | None,
            typer.Option(
                "--xinference-home", envvar="XINFERENCE_HOME", help="default ~/.xinference"
            ),
        ] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="list, register nothing")] = False,
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Register here the custom models a local Xinference installation has registered."""
        from local_runtime.catalog.xinference import custom_model_files
        from local_runtime.catalog.xinference import xinference_home as home

        found = custom_model_files(xinference_home)
        if not found:
            typer.echo(f"no custom models under {home(xinference_home) / 'model'}", err=True)
            return
        client = None if dry_run else admin_client(url, admin_token)
        failed = 0
        try:
            for item in found:
                reason = item.error or (
                    None if client is None else _register_xinference(client, item)
                )
                if reason:
                    failed += 1
                    typer.echo(f"skipped {item.model_type} {item.name} ({item.path}): {reason}")
                else:
                    verb = "would import" if dry_run else "imported"
                    typer.echo(f"{verb} {item.model_type} {item.name}")
        finally:
            if client is not None:
                client.close()
        typer.echo(f"{len(found) - failed} of {len(found)} custom models imported", err=True)
        if failed:
            raise typer.Exit(1)

    @app.command("register")
    def register_(
        model_name: Annotated[str | None, typer.Option("-n", "--model-name")] = None,
        model_type: Annotated[str, typer.Option("-t", "--model-type")] = "LLM",
        model_path: Annotated[
            str | None, typer.Option("--model-path", help="local files (format is inferred)")
        ] = None,
        model_engine: Annotated[str | None, typer.Option("-e", "--model-engine")] = None,
        file: Annotated[
            Path | None, typer.Option("--file", help="Xinference custom model JSON")
        ] = None,
        dimensions: Annotated[int | None, typer.Option()] = None,
        max_tokens: Annotated[int | None, typer.Option("--max-tokens")] = None,
        context_length: Annotated[int | None, typer.Option("--context-length")] = None,
        ability: Annotated[list[str] | None, typer.Option("--ability")] = None,
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Register a custom model from local files (or an Xinference JSON) under a name."""
        if file is not None:
            model: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
        elif model_name and model_path:
            model = {
                "model_name": model_name,
                "model_uri": model_path,
                "model_engine": model_engine,
                "dimensions": dimensions,
                "max_tokens": max_tokens,
                "context_length": context_length,
                "model_ability": ability,
            }
            model = {k: v for k, v in model.items() if v is not None}
        else:
            raise typer.BadParameter("pass --model-name and --model-path, or --file")
        with admin_client(url, admin_token) as client:
            client.call(
                "POST",
                f"/v1/model_registrations/{model_type}",
                json={"model": json.dumps(model), "persist": True},
            )
        typer.echo(f"registered {model.get('model_name')}", err=True)

    @app.command()
    def unregister(
        model_name: str,
        model_type: Annotated[str, typer.Option("-t", "--model-type")] = "LLM",
        url: Annotated[str, url_info] = default_url,
        admin_token: Annotated[str | None, admin_info] = None,
    ) -> None:
        """Remove a custom model registration."""
        with admin_client(url, admin_token) as client:
            client.call("DELETE", f"/v1/model_registrations/{model_type}/{model_name}")
        typer.echo(f"unregistered {model_name}", err=True)
