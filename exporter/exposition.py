"""Exposition: render metric families in the Prometheus text format (version 0.0.4).

The output is byte for byte what prometheus_client's ``generate_latest`` writes for the same
families, but a large fleet renders much faster. Each worker's sample lines are cached, grouped
by family, and rendered again only when the worker's snapshot changed. A scrape that finds every
result cached then only joins text. The families themselves are still built fresh by the collector
for every changed worker, so a series that went away leaves nothing behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from exporter.collector import exporter_families, worker_families
from exporter.snapshot import WorkerSnapshot

# Values that nearly every sample has; formatting them once saves a float repr per sample.
_COMMON_VALUES = {value: floatToGoString(value) for value in (0.0, 1.0)}


def _help_and_type(metric: Metric) -> tuple[str, str]:
    """Return the HELP and TYPE lines of a family, with the names generate_latest gives them."""
    name, kind = metric.name, metric.type
    if kind == "counter":
        name += "_total"
    elif kind == "info":
        name += "_info"
        kind = "gauge"
    elif kind == "stateset":
        kind = "gauge"
    elif kind == "unknown":
        kind = "untyped"
    documentation = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {documentation}\n", f"# TYPE {name} {kind}\n"


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _number(value: float) -> str:
    text = _COMMON_VALUES.get(value)
    return text if text is not None else floatToGoString(value)


def _sample_lines(metric: Metric) -> str:
    """Render the samples of one family; the families here carry no timestamps and no OpenMetrics extras."""
    lines = []
    for sample in metric.samples:
        if sample.timestamp is not None or sample.name in (metric.name + "_created", metric.name + "_gsum"):
            raise ValueError(f"family {metric.name!r}: sample {sample.name!r} needs generate_latest")
        if sample.labels:
            labels = ",".join(f'{key}="{_label_value(value)}"' for key, value in sorted(sample.labels.items()))
            lines.append(f"{sample.name}{{{labels}}} {_number(sample.value)}\n")
        else:
            lines.append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(lines)


def render(families: Iterable[Metric]) -> bytes:
    """Render families in the text format, as ``generate_latest`` does."""
    parts = []
    for metric in families:
        parts.extend(_help_and_type(metric))
        parts.append(_sample_lines(metric))
    return "".join(parts).encode("utf-8")


def _snapshot_key(snapshot: WorkerSnapshot) -> tuple[Any, ...]:
    """Return everything that a worker's series depend on.

    Parsed data and attempts are new objects after every request, so comparing keys is cheap while
    nothing changed: tuple comparison checks identity before equality.
    """
    endpoints = tuple(
        (
            name,
            state.up,
            state.attempt,
            state.last_success_at,
            state.requests_total,
            tuple(state.failures_total.items()),
            state.breaker_state,
            state.data,
        )
        for name, state in snapshot.endpoints.items()
    )
    return (
        snapshot.status,
        snapshot.status_since,
        snapshot.probe_duration,
        snapshot.per_owner,
        snapshot.retry_after_until,
        endpoints,
    )


class WorkerRenderer:
    """Render worker families, reusing each worker's sample text while its snapshot is unchanged.

    Safe to call from several threads: one lock serialises renders, so concurrent scrapes render once
    each, one after the other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, str]]] = {}
        self._headers = [(metric.name, "".join(_help_and_type(metric))) for metric in worker_families([])]
        # The latest output and the per-worker texts it was made of, so that scrapes which find nothing
        # changed (concurrent scrapes, scrapes inside the TTL) share one copy instead of each making one.
        self._last_texts: list[dict[str, str]] = []
        self._last_output = b""

    def _worker_text(self, snapshot: WorkerSnapshot) -> dict[str, str]:
        key = _snapshot_key(snapshot)
        cached = self._cache.get(snapshot.worker)
        if cached is not None and cached[0] == key:
            return cached[1]
        text = {metric.name: _sample_lines(metric) for metric in worker_families([snapshot])}
        self._cache[snapshot.worker] = (key, text)
        return text

    def _texts(self, snapshots: Sequence[WorkerSnapshot], prune: bool) -> list[dict[str, str]]:
        """Return each worker's sample text; the caller holds the lock."""
        texts = [self._worker_text(snapshot) for snapshot in snapshots]
        if prune:
            current = {snapshot.worker for snapshot in snapshots}
            for name in [name for name in self._cache if name not in current]:
                del self._cache[name]
        return texts

    def render(self, snapshots: Sequence[WorkerSnapshot], *, prune: bool = False) -> str:
        """Render every worker family for ``snapshots``; ``prune`` forgets workers not among them."""
        with self._lock:
            texts = self._texts(snapshots, prune)
        return self._join(texts)

    def _join(self, texts: list[dict[str, str]]) -> str:
        parts = []
        for name, header in self._headers:
            parts.append(header)
            parts.extend(text[name] for text in texts)
        return "".join(parts)

    def render_bytes(self, snapshots: Sequence[WorkerSnapshot], *, prune: bool = False) -> bytes:
        """Render as ``render`` does, encoded; returns the previous output object when nothing changed."""
        with self._lock:
            texts = self._texts(snapshots, prune)
            unchanged = len(texts) == len(self._last_texts) and all(
                new is old for new, old in zip(texts, self._last_texts, strict=True)
            )
            if not unchanged:
                self._last_output = self._join(texts).encode("utf-8")
                self._last_texts = texts
            return self._last_output


_renderer = WorkerRenderer()


def render_probe(snapshots: list[WorkerSnapshot]) -> bytes:
    """Render the /probe response: the worker series only."""
    return _renderer.render(snapshots).encode("utf-8")


def render_metrics(
    snapshots: list[WorkerSnapshot], workers: int, reload_successful: bool, reload_success_at: float | None
) -> list[bytes]:
    """Render the /metrics response: every worker, the exporter's own series and the process metrics.

    The parts are returned separately, so that a large fleet's text is not copied once more to join them.
    """
    worker_text = _renderer.render_bytes(snapshots, prune=True)
    own = render(exporter_families(workers, reload_successful, reload_success_at))
    return [worker_text, own, generate_latest(REGISTRY)]
