"""`modelport serve` as the benchmarks run it: one uvicorn worker, uvloop + httptools, no access
log. Settings come from MODELPORT_* in the environment, exactly as for the real server.
BENCH_GATEWAY_ROOT, when set, is the checkout whose gateway code is served (an A/B's base side).

    python bench/common/serve_gateway.py PORT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("BENCH_GATEWAY_ROOT") or str(Path(__file__).resolve().parents[2]))

import uvicorn

from gateway.app import create_app
from gateway.settings import Settings

if __name__ == "__main__":
    uvicorn.run(
        create_app(Settings()),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
