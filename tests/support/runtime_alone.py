"""Launch and serve a model with `local_runtime` alone, then report what happened as JSON.

Run as `python -m tests.support.runtime_alone <home>` by tests/local_runtime/test_library.py, in
a process of its own so that the check "the gateway was never imported" means something: pytest
and conftest import the gateway, a fresh interpreter does not.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import openai

from local_runtime.catalog import Catalog
from local_runtime.settings import RuntimeSettings
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor import MemoryLaunchStore, ReplicaAddress, Supervisor

MODEL = "smollm2-135m-instruct"


async def main(home: Path) -> dict[str, Any]:
    routed: dict[str, list[ReplicaAddress]] = {}
    reports: list[tuple[str, int]] = []

    def on_replicas(uid: str, addresses: list[ReplicaAddress]) -> None:
        routed[uid] = addresses
        reports.append((uid, len(addresses)))

    store = MemoryLaunchStore()
    sup = Supervisor(
        settings=RuntimeSettings(home=home),
        catalog=Catalog.load(),
        store=store,
        on_replicas=on_replicas,
    )
    await sup.start()
    try:
        await sup.launch(LaunchSpec(model_name=MODEL, model_uid="alone", model_engine="fake"))
        (address,) = routed["alone"]
        assert address.prepare is not None
        await address.prepare()  # what a router awaits before each request
        client = openai.AsyncOpenAI(base_url=address.base_url, api_key=address.key or "-")
        reply = await client.chat.completions.create(
            model="alone", messages=[{"role": "user", "content": "hello from a library"}]
        )
        refused = openai.AsyncOpenAI(base_url=address.base_url, api_key="not-the-key")
        try:
            await refused.models.list()
            wrong_key = "accepted"
        except openai.AuthenticationError:
            wrong_key = "refused"
        stored = [launch.uid for launch in await store.list(node="")]
        model = sup.models()["alone"]
        await sup.terminate("alone")
        await client.close()
        await refused.close()
    finally:
        await sup.close()
    return {
        "reply": reply.choices[0].message.content,
        "wrong_key": wrong_key,
        "stored": stored,
        "stored_after_terminate": [launch.uid for launch in await store.list(node="")],
        "model": {"model_type": model.model_type, "engine": model.engine},
        "reports": reports,
        "gateway_modules": sorted(
            m for m in sys.modules if m.split(".")[0] in ("gateway", "admin_ui")
        ),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
