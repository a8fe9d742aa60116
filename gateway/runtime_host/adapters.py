"""The bridges between the runtime's port (local_runtime.supervisor.ports) and the gateway.

- `runtime_settings`: the gateway's Settings (YAML and environment) -> the runtime's own.
- `DatabaseLaunchStore`: the supervisor's LaunchStore over the gateway's ModelInstance table.
- `ReplicaEndpoints`: the supervisor's replicas-changed callback; each replica becomes one
  `Endpoint` of the built-in `local` channel in the route table, so the relay serves local models
  exactly like remote channels.
- `served_model`: a runtime LocalModel -> the gateway's ServedModel (/v1/models, FastGPT export).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.db.crud import instances as crud
from gateway.model_info import ServedModel
from gateway.model_kinds import local_kind
from gateway.settings import Settings
from gateway.upstreams.base import Endpoint, Timeouts, UpstreamUnavailable
from local_runtime.settings import RuntimeSettings
from local_runtime.supervisor import (
    LocalModel,
    ReplicaAddress,
    ReplicaUnavailable,
    StoredLaunch,
    Supervisor,
)

SessionFactory = Callable[[], Any]  # async_sessionmaker: `async with sessions() as session`


def runtime_settings(settings: Settings) -> RuntimeSettings:
    return RuntimeSettings(
        home=settings.home,
        keep_alive_s=settings.keep_alive_s,
        max_loaded_models=settings.max_loaded_models,
        local_first_byte_timeout_s=settings.local_first_byte_timeout_s,
        catalog_dir=settings.catalog_dir,
        public_url=settings.base_url,
    )


class DatabaseLaunchStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def save(self, *, uid: str, spec_json: str, node: str) -> None:
        async with self.sessions() as session:
            await crud.save_instance(session, uid=uid, spec_json=spec_json, node=node)

    async def delete(self, *, uid: str) -> None:
        async with self.sessions() as session:
            await crud.delete_instance(session, uid=uid)

    async def list(self, *, node: str) -> list[StoredLaunch]:
        async with self.sessions() as session:
            rows = await crud.list_instances(session, node=node)
        return [StoredLaunch(uid=row.uid, spec_json=row.spec) for row in rows]


class ReplicaEndpoints:
    """Replicas -> endpoints of the local channel (whose id is set before the runtime starts).

    One Endpoint per replica for as long as it is routed, so the relay's circuit breaker and
    "not the endpoint that just failed" follow a replica. A replica's port and key change when it
    restarts: the endpoint copies them whenever the routes change and after every `prepare`
    (which is where a request waits for a restart or a reload), so a request never leaves with
    the key of a worker that is gone. `set_local` is the node registry's (create_app passes it),
    which adds the GPU nodes' workers of the same UID before setting the route table's.
    """

    def __init__(self, set_local: Callable[[str, list[Endpoint]], None]) -> None:
        self.set_local = set_local
        self.channel_id = 0
        self._endpoints: dict[tuple[str, int], tuple[ReplicaAddress, Endpoint]] = {}

    def __call__(self, uid: str, addresses: list[ReplicaAddress]) -> None:
        if not addresses:
            for key in [k for k in self._endpoints if k[0] == uid]:
                del self._endpoints[key]
        self.set_local(uid, [self.endpoint(a) for a in addresses])

    def endpoint(self, address: ReplicaAddress) -> Endpoint:
        known = self._endpoints.get((address.uid, address.index))
        if known is not None and known[0] is address:
            ep = known[1]
            _follow(ep, address)
            return ep
        ep = Endpoint(
            channel_id=self.channel_id,
            channel_name="local",
            kind="local",
            base_url=address.base_url,
            api_key=address.key,
            config={"stream_usage": True},
            # a hung worker (SIGSTOP, a wedged engine) fails over after this, not after the
            # health checks notice it; the gateway's circuit then skips it at once
            timeouts=Timeouts(first_byte=address.first_byte_timeout_s),
        )
        if address.prepare is not None:
            ep.prepare = _prepare(ep, address, address.prepare)
        self._endpoints[(address.uid, address.index)] = (address, ep)
        return ep


def _follow(ep: Endpoint, address: ReplicaAddress) -> None:
    ep.base_url = address.base_url
    ep.api_key = address.key


def _prepare(
    ep: Endpoint, address: ReplicaAddress, prepare: Callable[[], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    async def prepare_endpoint() -> None:
        try:
            await prepare()
        except ReplicaUnavailable as exc:
            raise UpstreamUnavailable(str(exc)) from None
        _follow(ep, address)

    return prepare_endpoint


def served_model(model: LocalModel) -> ServedModel:
    return ServedModel(
        id=model.uid,
        kind=local_kind(model.model_type, model.abilities),
        source="local",
        display_name=model.model_name,
        abilities=list(model.abilities),
        context_length=model.context_length,
        dimensions=model.dimensions,
        max_input_tokens=model.max_tokens,
        languages=list(model.languages),
        voices=list(model.voices),
        engine=model.engine,
        model_format=model.model_format,
        model_family=model.model_family,
        model_size_in_billions=model.model_size_in_billions,
        quantization=model.quantization,
    )


def served_models(runtime: Supervisor) -> dict[str, ServedModel]:
    return {uid: served_model(m) for uid, m in runtime.models().items()}


def ready_workers(
    runtime: Supervisor, instances: list[dict[str, Any]], host: str
) -> list[dict[str, Any]]:
    """The heartbeat's `workers` (gateway.cluster.nodes reads them): each ready replica of
    `instances` at `host`, for a GPU node (`modelport node`) and a host's runtime owner alike."""
    models = served_models(runtime)
    return [
        {
            "uid": inst["uid"],
            "base_url": f"http://{host}:{rep['port']}/v1",
            "model": models[inst["uid"]].model_dump(mode="json") if inst["uid"] in models else None,
            "gpus": rep["gpus"],
            "key_id": rep["key_id"],
            "first_byte_timeout_s": rep["first_byte_timeout_s"],
        }
        for inst in instances
        for rep in inst["replicas"]
        if rep["status"] == "ready"
    ]
