"""Size and the event loop: tens of thousands of labs, and bodies past the size cap.

A large worker must not stall /-/healthy or other workers, and a body past exporter.max_response_bytes
is rejected with reason too_large without being read to its end.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from exporter.config import Config, ExporterSettings
from exporter.simulator import Simulator, WorkerProfile, generate_labs
from tests.failures_helpers import assert_complete, failure_reasons, failures, scrape_on_time
from tests.support import ExporterUnderTest, fleet_config, worker_config

LAB_COUNT = 20_000


@pytest.fixture(scope="module")
def big_profile() -> WorkerProfile:
    """Tens of thousands of labs, one node each, so the lab tiles stay just under the 16 MiB cap."""
    return WorkerProfile(labs=generate_labs(LAB_COUNT, nodes_per_lab=1))


async def _warm_up(sim: Simulator, name: str) -> int:
    """Fetch the lab tiles once, so the simulator's own body generation is not timed against the exporter."""
    async with aiohttp.ClientSession() as session:
        login = {"username": "admin", "password": "admin-password"}
        async with session.post(sim.base_url(name) + "/api/v0/authenticate", json=login) as response:
            token = await response.json()
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(sim.base_url(name) + "/api/v0/populate_lab_tiles", headers=headers) as response:
            return len(await response.read())


def _poll_health(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """Request /-/healthy every 20 ms from another thread, so a blocked event loop shows as latency."""
    while not stop.is_set():
        started = time.monotonic()
        with urllib.request.urlopen(url + "/-/healthy", timeout=10) as response:
            assert response.status == 200
        latencies.append(time.monotonic() - started)
        stop.wait(0.02)


async def test_large_worker_keeps_health_check_prompt(big_profile: WorkerProfile) -> None:
    async with Simulator() as sim:
        sim.add_worker("healthy", WorkerProfile())
        sim.add_worker("big", big_profile)
        size = await _warm_up(sim, "big")
        config = fleet_config(sim, timeout=8.0)
        latencies: list[float] = []
        stop = threading.Event()

        async with ExporterUnderTest(config) as exporter:
            poller = asyncio.create_task(asyncio.to_thread(_poll_health, exporter.url, stop, latencies))
            await asyncio.sleep(0.1)
            samples = await scrape_on_time(exporter, scrape_timeout=10.0)
            stop.set()
            await poller

    assert size < 16 * 1024 * 1024
    assert len(latencies) >= 5
    # Measured at about 0.25 s worst case on a 2-CPU machine, with the simulator in the same process.
    assert max(latencies) < 0.75, sorted(latencies)[-5:]
    assert_complete(samples, "healthy")
    assert_complete(samples, "big")
    assert sum(value for _, value in samples.all("cml_labs", worker="big")) == LAB_COUNT


async def test_body_past_cap_is_too_large(big_profile: WorkerProfile) -> None:
    async with Simulator() as sim:
        sim.add_worker("healthy", WorkerProfile())
        sim.add_worker("big", big_profile)
        await _warm_up(sim, "big")
        settings = ExporterSettings(default_scrape_timeout=5.0, max_response_bytes=1024 * 1024)
        config = fleet_config(sim, settings=settings)

        async with ExporterUnderTest(config) as exporter:
            samples = await scrape_on_time(exporter)

        labs_requests = sim.count("big", "labs")

    assert failure_reasons(samples, "big", "labs") == {"too_large"}
    assert labs_requests == 0
    assert samples.all("cml_labs", worker="big") == []
    assert samples.get("cml_endpoint_up", worker="big", endpoint="system_stats") == 1
    assert samples.status("big") == "available"
    assert_complete(samples, "healthy")


class EndlessServer:
    """An HTTP server on loopback whose response is an endless chunked JSON string, without Content-Length."""

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.disconnected = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'"')
            while True:
                await response.write(b"x" * 65536)
                self.bytes_sent += 65536
        except (ConnectionError, asyncio.CancelledError):
            self.disconnected.set()
            raise

    async def __aenter__(self) -> EndlessServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def endless() -> AsyncIterator[EndlessServer]:
    async with EndlessServer() as server:
        yield server


async def test_endless_body_stops_at_cap(simulator: Simulator, endless: EndlessServer) -> None:
    limit = 1024 * 1024
    workers = (
        worker_config("healthy", simulator.base_url("healthy")),
        worker_config("endless", endless.url, timeout=5.0),
    )
    config = Config(workers=workers, settings=ExporterSettings(default_scrape_timeout=5.0, max_response_bytes=limit))

    async with ExporterUnderTest(config) as exporter:
        started = time.monotonic()
        samples = await scrape_on_time(exporter)
        seconds = time.monotonic() - started
        await asyncio.wait_for(endless.disconnected.wait(), 2.0)

    assert seconds < 2.0
    assert failures(samples, "endless", "system_information", "too_large") == 1
    assert failures(samples, "endless", "authenticate", "too_large") == 1
    assert endless.bytes_sent < 20 * limit
    assert_complete(samples, "healthy")
