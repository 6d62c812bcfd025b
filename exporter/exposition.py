"""Exposition: render metric families in the Prometheus text format."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.collector import exporter_families, worker_families
from exporter.snapshot import WorkerSnapshot


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def render_probe(snapshots: list[WorkerSnapshot]) -> bytes:
    """The /probe response: the worker series only."""
    return render(worker_families(snapshots))


def render_metrics(
    snapshots: list[WorkerSnapshot], workers: int, reload_successful: bool, reload_success_at: float | None
) -> bytes:
    """The /metrics response: every worker, the exporter's own series and the process metrics."""
    families = worker_families(snapshots) + list(exporter_families(workers, reload_successful, reload_success_at))
    return render(families) + generate_latest(REGISTRY)
