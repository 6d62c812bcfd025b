"""Snapshots: the immutable view of one worker that collectors render, and the status rules.

A worker's status is decided here, after collection, from what answered:

    api_accessible = system_information, system_health or system_stats succeeded
    not api_accessible                              -> unavailable
    system_health succeeded and says valid: true    -> available
    system_information succeeded                    -> available
    otherwise                                       -> error

Readiness is system_information's ``ready``, and 0 when system_information did not answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.parse import Labs, Licensing, SystemHealth, SystemInformation, SystemStats

# Endpoints probed on every worker, in the order they are shown; "authenticate" is the login.
ENDPOINTS: tuple[str, ...] = (
    "system_information",
    "system_health",
    "system_stats",
    "licensing",
    "labs",
    "authenticate",
)
STATUSES: tuple[str, ...] = ("available", "unavailable", "error")
API_ENDPOINTS: tuple[str, ...] = ("system_information", "system_health", "system_stats")


@dataclass(frozen=True)
class Attempt:
    """The outcome of the latest attempt at one endpoint."""

    ok: bool
    at: float
    duration: float | None
    reason: str | None = None
    message: str = ""


@dataclass(frozen=True)
class EndpointState:
    """The state of one endpoint of one worker on a scrape; ``data`` is None unless it is fresh enough to serve."""

    endpoint: str
    up: bool
    attempt: Attempt | None
    last_success_at: float | None
    requests_total: int
    failures_total: dict[str, int]
    breaker_state: str
    data: Any = None


@dataclass(frozen=True)
class WorkerSnapshot:
    worker: str
    status: str
    status_since: float
    endpoints: dict[str, EndpointState]
    probe_duration: float | None = None
    per_owner: bool = False
    # Unix time until which the worker asked for no requests (Retry-After), while that wait is in force.
    retry_after_until: float | None = None

    @property
    def up(self) -> bool:
        return any(self.endpoints[name].up for name in API_ENDPOINTS if name in self.endpoints)

    @property
    def ready(self) -> bool:
        information = self.information
        return information is not None and information.ready is True

    def _data(self, endpoint: str) -> Any:
        state = self.endpoints.get(endpoint)
        return state.data if state is not None and state.up else None

    @property
    def information(self) -> SystemInformation | None:
        return self._data("system_information")  # type: ignore[no-any-return]  # typed by the fetcher

    @property
    def health(self) -> SystemHealth | None:
        return self._data("system_health")  # type: ignore[no-any-return]

    @property
    def stats(self) -> SystemStats | None:
        return self._data("system_stats")  # type: ignore[no-any-return]

    @property
    def licensing(self) -> Licensing | None:
        return self._data("licensing")  # type: ignore[no-any-return]

    @property
    def labs(self) -> Labs | None:
        return self._data("labs")  # type: ignore[no-any-return]


def decide_status(endpoints: dict[str, EndpointState]) -> str:
    """Apply the status table to the endpoints that answered in the latest refresh."""

    def answered(name: str) -> bool:
        state = endpoints.get(name)
        return state is not None and state.up

    if not any(answered(name) for name in API_ENDPOINTS):
        return "unavailable"
    health = endpoints["system_health"].data if answered("system_health") else None
    if isinstance(health, SystemHealth) and health.valid is True:
        return "available"
    if answered("system_information"):
        return "available"
    return "error"
