"""Prometheus metrics, one registry per app (never the process-global default registry, so
several apps in one process -- tests, embedding -- do not clash).

The relay reports each finished request once (`observe_relay`); gauges that describe state
(circuit per endpoint, usage backlog, limiter slots, open streams) are read at scrape time by a
collector, so keeping them costs nothing on the hot path. Other parts (the local runtime) add
their own with `register_gauge(name, help, callback, labels)`.

The relay's children (one per label combination) are looked up once and kept: prometheus_client's
`labels()` validates and locks on every call, five times per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("modelport.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CIRCUIT_VALUE = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

GaugeValue = float | Mapping[tuple[str, ...], float]


@dataclass(slots=True)
class _Gauge:
    name: str
    documentation: str
    labels: tuple[str, ...]
    callback: Callable[[], GaugeValue]


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.gauges: dict[str, _Gauge] = {}

    def collect(self) -> Iterator[Metric]:
        for g in list(self.gauges.values()):
            try:
                value = g.callback()
            except (RuntimeError, ValueError, KeyError, AttributeError, TypeError) as exc:
                log.warning("metric %s failed: %s", g.name, exc)
                continue
            family = GaugeMetricFamily(g.name, g.documentation, labels=list(g.labels))
            if isinstance(value, Mapping):
                for labels, v in value.items():
                    family.add_metric(list(labels), float(v))
            else:
                family.add_metric([], float(value))
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelport_requests",
            "relayed requests",
            ["surface", "model", "channel", "status"],
            registry=r,
        )
        self.errors = Counter(
            "modelport_request_errors",
            "relayed requests that failed (status >= 400, or a stream that broke)",
            ["surface", "model", "channel"],
            registry=r,
        )
        self.latency = Histogram(
            "modelport_request_duration_seconds",
            "whole request, until the last byte",
            ["surface", "model", "channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "modelport_time_to_first_token_seconds",
            "streams: until the first chunk",
            ["model", "channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "modelport_tokens", "tokens billed", ["model", "channel", "kind"], registry=r
        )
        self.http = Counter(
            "modelport_http_requests", "every HTTP request", ["method", "status"], registry=r
        )
        self.rate_limited = Counter(
            "modelport_rate_limited", "requests refused by a limit", ["reason"], registry=r
        )
        self.quota_over_reported = Counter(
            "modelport_quota_over_reported",
            "quota units an upstream reported beyond what a limited token had reserved (not "
            "charged: a limited token never goes below zero)",
            ["channel"],
            registry=r,
        )
        self._state = _StateCollector()
        r.register(self._state)
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def register_gauge(
        self,
        name: str,
        documentation: str,
        callback: Callable[[], GaugeValue],
        labels: tuple[str, ...] = (),
    ) -> None:
        """A gauge read at scrape time: `callback` returns a number, or {label values: number}."""
        self._state.gauges[name] = _Gauge(name, documentation, labels, callback)

    def observe_relay(
        self,
        *,
        surface: str,
        model: str,
        channel: str,
        status: int,
        seconds: float,
        ttfb: float,
        prompt: int,
        completion: int,
        stream: bool,
        failed: bool,
    ) -> None:
        child = self._child
        child(self.requests, surface, model, channel, str(status)).inc()
        if failed:
            child(self.errors, surface, model, channel).inc()
        child(self.latency, surface, model, channel).observe(seconds)
        if stream and status < 400:
            child(self.ttft, model, channel).observe(ttfb)
        if prompt:
            child(self.tokens, model, channel, "prompt").inc(prompt)
        if completion:
            child(self.tokens, model, channel, "completion").inc(completion)

    def count_http(self, method: str, status: int) -> None:
        """Every HTTP request, relayed or not (the middleware's count)."""
        self._child(self.http, method, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
