"""`python -m local_runtime.worker --spec SPEC.json --host 127.0.0.1 --port N` (see __init__)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from local_runtime.spec import ResolvedSpec

EXIT_LOAD_FAILED = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_runtime.worker")
    parser.add_argument("--spec", required=True, help="path to a ResolvedSpec JSON file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--engine-class", help="pkg.module:Class, instead of discovery")
    parser.add_argument("--max-upload-bytes", type=int)
    parser.add_argument("--error-exit-grace", type=float, help="seconds (default 10)")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        spec = ResolvedSpec.model_validate_json(Path(args.spec).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"modelport-worker: cannot read spec {args.spec}: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from local_runtime.worker.app import WorkerSettings, create_app
    from local_runtime.worker.fronts import EXIT_FRONTS_FAILED, FrontPool, front_count

    settings = WorkerSettings.from_env(
        engine_class=args.engine_class,
        max_upload_bytes=args.max_upload_bytes,
        error_exit_grace_s=args.error_exit_grace,
    )
    exit_code = 0
    server: uvicorn.Server | None = None

    def stop(code: int) -> None:
        nonlocal exit_code
        exit_code = code
        if server is not None:
            server.should_exit = True

    def on_fronts_failed(message: str) -> None:
        print(f"modelport-worker: {message}", file=sys.stderr, flush=True)
        stop(EXIT_FRONTS_FAILED)

    fronts: FrontPool | None = None
    try:
        count = front_count(spec.engine_options)
        if count:
            fronts = FrontPool(
                host=args.host,
                port=args.port,
                count=count,
                on_fatal=on_fronts_failed,
                log_level=args.log_level,
            )
    except ValueError as exc:
        print(f"modelport-worker: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"modelport-worker: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    app = create_app(spec, settings, on_fatal=lambda: stop(EXIT_LOAD_FAILED), fronts=fronts)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
        # Keep-alive connections from the gateway's pool; idle ones are cheap.
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down, through whichever
    # handler was installed before it; these make a SIGTERM'd worker exit 0 as documented.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # With fronts, this process's app listens on a private socket; the fronts hold the port.
    server.run(sockets=[fronts.internal_socket] if fronts is not None else None)
    if not server.started and exit_code == 0:
        return 1  # e.g. the port was taken; uvicorn has logged why
    return exit_code


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: a load still running in its thread (SIGTERM while loading a big model) or a
    # batch still computing would keep the interpreter alive until it finished.
    os._exit(code)
