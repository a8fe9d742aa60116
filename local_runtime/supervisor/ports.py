"""The supervisor's port: what it needs from its host and what it reports, in its own types.

The supervisor knows nothing of the gateway. Its host (gateway.runtime_host under `modelport
serve`, a node agent, a test) hands it:
- a `LaunchStore`, where launches are kept so a restart restores them (the gateway's database;
  `MemoryLaunchStore` where nothing outlives the process);
- a `ReplicasChanged` callback, told the routable replicas of a UID whenever they change (the
  gateway turns them into endpoints of its route table).
It reads what it serves back as `LocalModel`s (Xinference's words; the host maps them to its own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredLaunch:
    uid: str
    spec_json: str  # a LaunchSpec's JSON


class LaunchStore(Protocol):
    async def save(self, *, uid: str, spec_json: str, node: str) -> None:
        """Insert or replace the launch of `uid`."""

    async def delete(self, *, uid: str) -> None: ...

    async def list(self, *, node: str) -> list[StoredLaunch]:
        """The launches of `node`, oldest first (the order they are restored in)."""


class MemoryLaunchStore:
    """Launches kept in the process: for a host that re-creates them itself (a GPU node converges
    on the gateway's desired state) and for programs that want no database."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, str]] = {}

    async def save(self, *, uid: str, spec_json: str, node: str) -> None:
        self._rows.pop(uid, None)
        self._rows[uid] = (spec_json, node)

    async def delete(self, *, uid: str) -> None:
        self._rows.pop(uid, None)

    async def list(self, *, node: str) -> list[StoredLaunch]:
        return [StoredLaunch(uid, spec) for uid, (spec, n) in self._rows.items() if n == node]


@dataclass(eq=False)
class ReplicaAddress:
    """Where one replica of a UID serves, live: a restart may move it to a new port and always
    gives it a new key, so a router reads these after awaiting `prepare`, not before."""

    uid: str
    index: int
    base_url: str  # http://host:port/v1, OpenAI-compatible
    first_byte_timeout_s: float  # a hung worker fails over after this
    key: str | None = field(default=None, repr=False)  # the bearer the worker asks for
    # await before each request: marks the UID used, starts an unloaded model and waits for it;
    # raises ReplicaUnavailable saying why this replica cannot serve
    prepare: Callable[[], Awaitable[None]] | None = None


# uid, its routable replicas (empty: route nothing to it)
ReplicasChanged = Callable[[str, list[ReplicaAddress]], None]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """What the runtime knows about a launched UID, in Xinference's words (its describe_model)."""

    uid: str
    model_name: str
    model_type: str  # llm | embedding | rerank | audio | image
    abilities: tuple[str, ...] = ()
    context_length: int | None = None
    dimensions: int | None = None
    max_tokens: int | None = None  # input limit of embeddings and rerankers
    languages: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()
    engine: str | None = None
    model_format: str | None = None
    model_family: str | None = None
    model_size_in_billions: float | None = None
    quantization: str | None = None
