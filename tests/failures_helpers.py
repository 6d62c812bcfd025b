"""Helpers shared by the failure tests: deadline-checked scrapes and checks on one worker's series."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from exporter.config import Config
from tests.support import ExporterUnderTest, Samples

# Every failure test scrapes with this Prometheus scrape timeout; the exporter answers 0.5 s before it.
SCRAPE_TIMEOUT = 3.0


async def scrape_on_time(
    exporter: ExporterUnderTest, path: str = "/metrics", scrape_timeout: float = SCRAPE_TIMEOUT
) -> Samples:
    """Scrape like Prometheus and assert HTTP 200 within the scrape timeout."""
    status, body, seconds = await exporter.get(path, scrape_timeout)

    assert status == 200, body
    assert seconds < scrape_timeout, f"{path} took {seconds:.2f}s, over the {scrape_timeout}s scrape timeout"
    return Samples(body)


def failures(samples: Samples, worker: str, endpoint: str, reason: str) -> float:
    """The value of cml_endpoint_failures_total for one reason, 0 when the series is absent."""
    value = samples.get("cml_endpoint_failures_total", worker=worker, endpoint=endpoint, reason=reason)
    return value or 0.0


def failure_reasons(samples: Samples, worker: str, endpoint: str) -> set[str]:
    series = samples.all("cml_endpoint_failures_total", worker=worker, endpoint=endpoint)
    return {labels["reason"] for labels, _ in series}


def assert_complete(samples: Samples, worker: str) -> None:
    """Assert that a healthy worker shows every endpoint up and its main series."""
    for endpoint in ("system_information", "system_health", "system_stats", "licensing", "labs"):
        assert samples.get("cml_endpoint_up", worker=worker, endpoint=endpoint) == 1, f"{worker} {endpoint} down"
    assert samples.get("cml_up", worker=worker) == 1
    assert samples.get("cml_ready", worker=worker) == 1
    assert samples.status(worker) == "available"
    assert samples.get("cml_health_valid", worker=worker) == 1
    assert samples.get("cml_running_nodes", worker=worker) is not None
    assert samples.get("cml_license_registered", worker=worker) == 1
    assert samples.all("cml_version_info", worker=worker)
    assert sum(value for _, value in samples.all("cml_labs", worker=worker)) > 0


def unused_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[ExporterUnderTest]:
    async with ExporterUnderTest(config) as exporter:
        yield exporter


async def wait_for(predicate: Callable[[], object], within: float = 5.0, interval: float = 0.02) -> None:
    """Wait until ``predicate()`` is true, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


def exporter_tasks() -> list[asyncio.Task[object]]:
    """Pending refresh and login tasks of any exporter in this loop."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_name().startswith(("refresh ", "login "))
    ]
