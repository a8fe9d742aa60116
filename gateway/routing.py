"""Model name -> candidate endpoints, derived in memory from channels and local workers.

The table is rebuilt whole whenever a channel changes (or a worker comes or goes) and swapped in
one assignment, so the hot path reads it without locks. Abilities = group x model x endpoint;
local workers serve every group.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.upstreams.base import Endpoint

ANY_GROUP = "*"


@dataclass(slots=True)
class _Table:
    # (group, model) -> tiers, highest priority first
    tiers: dict[tuple[str, str], list[list[Endpoint]]] = field(default_factory=dict)
    models_by_group: dict[str, set[str]] = field(default_factory=dict)


class RouteTable:
    def __init__(self) -> None:
        self._remote: list[tuple[set[str], list[str], Endpoint]] = []
        self._local: dict[str, list[Endpoint]] = {}
        self._table = _Table()
        self.generation = 0  # moves on every rebuild: derived caches (default prices) refresh

    # --- updates ---------------------------------------------------------------------------
    def set_remote(self, entries: list[tuple[set[str], list[str], Endpoint]]) -> None:
        """entries: (groups, models, endpoint) for every enabled remote channel."""
        self._remote = entries
        self._rebuild()

    def drop_channel(self, channel_id: int) -> None:
        """Take a channel out of routing at once (auto-disable), before the database says so."""
        self._remote = [e for e in self._remote if e[2].channel_id != channel_id]
        self._rebuild()

    def set_local(self, uid: str, endpoints: list[Endpoint]) -> None:
        if endpoints:
            self._local[uid] = endpoints
        else:
            self._local.pop(uid, None)
        self._rebuild()

    def _rebuild(self) -> None:
        grouped: dict[tuple[str, str], list[Endpoint]] = defaultdict(list)
        models_by_group: dict[str, set[str]] = defaultdict(set)
        for groups, models, ep in self._remote:
            for g in groups:
                for m in models:
                    grouped[(g, m)].append(ep)
                    models_by_group[g].add(m)
        for uid, eps in self._local.items():
            grouped[(ANY_GROUP, uid)].extend(eps)
            models_by_group[ANY_GROUP].add(uid)
        tiers: dict[tuple[str, str], list[list[Endpoint]]] = {}
        for key, eps in grouped.items():
            by_priority: dict[int, list[Endpoint]] = defaultdict(list)
            for ep in eps:
                by_priority[ep.priority].append(ep)
            tiers[key] = [by_priority[p] for p in sorted(by_priority, reverse=True)]
        self._table = _Table(tiers=tiers, models_by_group=dict(models_by_group))
        self.generation += 1

    # --- reads -----------------------------------------------------------------------------
    def tiers(self, group: str, model: str) -> list[list[Endpoint]]:
        t = self._table.tiers
        return t.get((group, model)) or t.get((ANY_GROUP, model)) or []

    def models(self, group: str) -> set[str]:
        mbg = self._table.models_by_group
        return mbg.get(group, set()) | mbg.get(ANY_GROUP, set())

    def local_uids(self) -> set[str]:
        return set(self._local)

    def remote_models(self) -> dict[str, set[str]]:
        """Every model a remote channel serves -> the names its channels send upstream."""
        found: dict[str, set[str]] = defaultdict(set)
        for _, models, ep in self._remote:
            for m in models:
                found[m].add(ep.upstream_model(m))
        return dict(found)


def weighted_order(tier: list[Endpoint], rng: random.Random | None = None) -> list[Endpoint]:
    """Weighted random order without replacement. Weight-0 endpoints stay eligible: they come
    after the weighted ones (fallbacks), or share traffic evenly when the whole tier is 0."""
    rnd = rng or random
    weighted = [ep for ep in tier if ep.weight > 0]
    zero = [ep for ep in tier if ep.weight <= 0]
    rnd.shuffle(zero)
    if not weighted:
        return zero
    order: list[Endpoint] = []
    pool = list(weighted)
    while pool:
        total = sum(ep.weight for ep in pool)
        r = rnd.uniform(0, total)
        acc = 0.0
        for i, ep in enumerate(pool):
            acc += ep.weight
            if r <= acc:
                order.append(pool.pop(i))
                break
        else:
            order.append(pool.pop())
    return order + zero


@dataclass(slots=True)
class _Circuit:
    fails: int = 0  # consecutive failures
    open_until: float = 0.0  # 0: closed
    probe_since: float = 0.0  # a half-open probe is in flight since then (0: none)


class HealthTracker:
    """Per-endpoint circuit breaker.

    `threshold` consecutive failures open the circuit: traffic skips the endpoint for `cooldown`
    seconds. After that it is half-open: exactly one request (`begin()` hands out the slot) goes
    through as a probe; its success closes the circuit, its failure opens it for another cooldown.
    A probe that never reports (its request was cancelled) frees the slot after one cooldown, so
    an endpoint can never be parked for good.

    Reads (`available`, `state`) never change anything: building a candidate list must not use up
    a probe for an endpoint that is not then tried.
    """

    def __init__(
        self,
        *,
        threshold: int = 3,
        cooldown: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self._clock = clock
        self._c: dict[str, _Circuit] = {}

    def available(self, endpoint_id: str) -> bool:
        c = self._c.get(endpoint_id)
        if c is None or not c.open_until:
            return True
        now = self._clock()
        if now < c.open_until:
            return False
        return not c.probe_since or now - c.probe_since >= self.cooldown

    def begin(self, endpoint_id: str) -> bool:
        """Called just before a request goes to the endpoint: False when it must be skipped
        (open, or half-open with its probe already taken)."""
        c = self._c.get(endpoint_id)
        if c is None or not c.open_until:
            return True
        if not self.available(endpoint_id):
            return False
        c.probe_since = self._clock()
        return True

    def success(self, endpoint_id: str) -> None:
        self._c.pop(endpoint_id, None)

    def failure(self, endpoint_id: str, *, at_once: bool = False) -> None:
        """`at_once`: open now (a timeout: the endpoint is hung, and each try costs a caller the
        whole timeout, so it must not get `threshold` of them)."""
        c = self._c.get(endpoint_id)
        if c is None:
            c = self._c[endpoint_id] = _Circuit()
        c.fails += 1
        if at_once or c.fails >= self.threshold or c.open_until:  # a failed probe reopens at once
            c.open_until = self._clock() + self.cooldown
            c.probe_since = 0.0

    def state(self, endpoint_id: str) -> str:
        c = self._c.get(endpoint_id)
        if c is None or not c.open_until:
            return "closed"
        return "open" if self._clock() < c.open_until else "half-open"

    def retry_after(self, endpoint_id: str) -> float:
        """Seconds until the endpoint may be probed again (0 when it may be used now)."""
        c = self._c.get(endpoint_id)
        if c is None or not c.open_until:
            return 0.0
        return max(0.0, c.open_until - self._clock())

    def snapshot(self) -> dict[str, tuple[str, int]]:
        """endpoint id -> (state, consecutive failures), for /metrics and the admin API."""
        return {eid: (self.state(eid), c.fails) for eid, c in list(self._c.items())}
