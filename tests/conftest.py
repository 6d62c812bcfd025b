"""Shared fixtures: the simulator, the exporter in front of it, and a full exposition for name checks."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator

import pytest

from exporter.config import BreakerConfig, CollectConfig
from exporter.simulator import BootTimeline, Fault, Simulator, WorkerProfile
from tests.support import ExporterUnderTest, fleet_config, replace_worker


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    async with sim:
        yield sim


def require_binary(name: str) -> str:
    """Return the path of ``name``; skip the test when it is missing, except under CI, where that fails."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH; install it with `apt-get install prometheus prometheus-alertmanager`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


async def _full_exposition() -> str:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    sim.add_worker("unlicensed", WorkerProfile(version="2.10", licence="unregistered"))
    sim.add_worker("not-ready", WorkerProfile(boot=BootTimeline(not_ready=3600)))
    sim.add_worker("broken-stats", WorkerProfile(version="2.7", populate_lab_tiles=False))
    sim.add_worker("throttled", WorkerProfile())
    async with sim:
        sim.set_fault("broken-stats", "system_stats", Fault(status=503))
        sim.set_fault("throttled", "licensing", Fault(status=429, retry_after="600"))
        config = fleet_config(sim)
        config = replace_worker(config, "healthy", collect=CollectConfig(per_owner=True))
        config = replace_worker(config, "broken-stats", breaker=BreakerConfig(fail_max=1, reset_timeout=60))
        async with ExporterUnderTest(config) as exporter:
            status, body, _ = await exporter.get("/metrics")
            assert status == 200, body
            return body


@pytest.fixture(scope="session")
def exporter_exposition() -> str:
    """The /metrics text of a real exporter scraping a simulated fleet with workers in every state."""
    return asyncio.run(_full_exposition())
