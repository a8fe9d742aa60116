"""The bridges between the runtime's port and the gateway (gateway.runtime_host.adapters)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.routing import RouteTable
from gateway.runtime_host.adapters import ReplicaEndpoints, runtime_settings
from gateway.settings import Settings
from gateway.upstreams.base import Endpoint, UpstreamUnavailable
from local_runtime.supervisor import ReplicaAddress, ReplicaUnavailable


def test_runtime_settings_keep_the_gateways_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every runtime setting the gateway passes on is a gateway setting of the same name (so one
    MODELPORT_* variable and one line of config/modelport.yaml set both), and the gateway's value
    is what it gets. (The runtime's own switches, e.g. HF_HUB_OFFLINE, it reads itself.)"""
    for name in [n for n in os.environ if n.startswith("MODELPORT_")]:
        monkeypatch.delenv(name)  # only what runtime_settings passes is set, not what env sets
    settings = Settings(home=tmp_path)
    passed = runtime_settings(settings).model_fields_set
    assert passed and passed <= set(Settings.model_fields)
    settings = Settings(home=tmp_path, keep_alive_s=7, max_loaded_models=2, port=3111)
    rt = runtime_settings(settings)
    assert (rt.home, rt.keep_alive_s, rt.max_loaded_models) == (tmp_path.resolve(), 7, 2)
    assert rt.public_url == "http://127.0.0.1:3111"  # image links point at the gateway
    assert rt.files_dir == settings.files_dir


def _restarting_replica() -> ReplicaAddress:
    """A replica whose prepare restarts it on a new port with a new key (what a reload does)."""
    address = ReplicaAddress(
        uid="m", index=0, base_url="http://127.0.0.1:1/v1", first_byte_timeout_s=5
    )
    address.key = "old-key"

    async def prepare() -> None:
        address.base_url, address.key = "http://127.0.0.1:2/v1", "new-key"

    address.prepare = prepare
    return address


async def test_an_endpoint_follows_its_replica_through_a_restart() -> None:
    routes = RouteTable()
    endpoints = ReplicaEndpoints(routes.set_local)
    endpoints.channel_id = 9
    address = _restarting_replica()
    endpoints("m", [address])
    [ep] = routes.tiers("default", "m")[0]
    assert (ep.channel_id, ep.kind, ep.api_key, ep.timeouts.first_byte) == (
        9,
        "local",
        "old-key",
        5,
    )
    assert ep.prepare is not None
    await ep.prepare()  # the relay reads the address only after this
    assert (ep.base_url, ep.api_key) == ("http://127.0.0.1:2/v1", "new-key")
    endpoints("m", [address])
    assert routes.tiers("default", "m")[0] == [ep]  # the same endpoint: its circuit state stays


async def test_a_replica_that_cannot_serve_fails_over_like_an_upstream() -> None:
    address = ReplicaAddress(
        uid="m", index=0, base_url="http://127.0.0.1:1/v1", first_byte_timeout_s=5
    )

    async def prepare() -> None:
        raise ReplicaUnavailable("model 'm' is not running: it crashed")

    address.prepare = prepare
    ep = ReplicaEndpoints(RouteTable().set_local).endpoint(address)
    assert ep.prepare is not None
    with pytest.raises(UpstreamUnavailable, match="it crashed"):
        await ep.prepare()


def test_routes_are_set_through_the_set_local_it_was_built_with() -> None:
    """create_app builds the adapter on the node registry's `set_local` (node workers of the same
    UID join the local replicas, gateway.cluster.integration): every change goes through it."""
    seen: list[tuple[str, list[Endpoint]]] = []
    endpoints = ReplicaEndpoints(lambda uid, eps: seen.append((uid, eps)))
    first = ReplicaAddress(
        uid="m", index=0, base_url="http://127.0.0.1:1/v1", first_byte_timeout_s=5
    )
    endpoints("m", [first])
    endpoints("m", [])
    relaunched = ReplicaAddress(
        uid="m", index=0, base_url="http://127.0.0.1:1/v1", first_byte_timeout_s=5
    )
    endpoints("m", [relaunched])
    assert [(uid, len(eps)) for uid, eps in seen] == [("m", 1), ("m", 0), ("m", 1)]
    assert seen[2][1][0] is not seen[0][1][0]  # a new launch is a new endpoint
