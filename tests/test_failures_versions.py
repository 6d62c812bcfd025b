"""Older and newer controllers: missing and added fields, unknown versions, unsupported endpoints."""

from __future__ import annotations

import asyncio

import pytest

from exporter.config import BreakerConfig, CacheConfig, Credentials, Secret
from exporter.simulator import DELETE, Fault, Simulator, WorkerProfile
from tests.failures_helpers import assert_complete, failure_reasons, failures, scrape_on_time
from tests.support import ExporterUnderTest, Samples, fleet_config

# Every scrape finds every endpoint due, and one transient failure would open a breaker.
EAGER = {
    "cache": CacheConfig(ttl=0.05, licensing_ttl=0.05),
    "breaker": BreakerConfig(fail_max=1, reset_timeout=60.0, max_reset_timeout=300.0),
}


async def _scrapes(sim: Simulator, count: int) -> list[Samples]:
    results = []
    async with ExporterUnderTest(fleet_config(sim, **EAGER)) as exporter:
        for _ in range(count):
            results.append(await scrape_on_time(exporter))
            await asyncio.sleep(0.06)
    return results


@pytest.mark.parametrize("version", ["2.7", "2.8", "2.9", "2.10"])
async def test_known_version_is_complete(version: str) -> None:
    async with Simulator() as sim:
        sim.add_worker("w", WorkerProfile(version=version, populate_lab_tiles=version != "2.7"))

        (samples,) = await _scrapes(sim, 1)

    assert_complete(samples, "w")
    (labels, _), = samples.all("cml_version_info", worker="w")
    assert labels["version"].startswith(version + ".")
    # Without populate_lab_tiles the labs come from the lab list, so the 404 is not a labs failure.
    assert failure_reasons(samples, "w", "labs") == set()


async def test_future_version_and_fields_are_tolerated() -> None:
    """A controller newer than any known one: an unknown version string and unknown fields."""
    added = {"quantum_state": {"entangled": True}, "computes.*.gpu": {"count": 8}, "valid": True}
    async with Simulator() as sim:
        sim.add_worker("future", WorkerProfile(version="2.10", version_string="3.0.0-dev+build.99 \"nova\""))
        sim.set_fault("future", "system_health", Fault(values=added))
        sim.set_fault("future", "system_information", Fault(values={"new_flag": [1, 2], "ready": True}))

        (samples,) = await _scrapes(sim, 1)

    assert_complete(samples, "future")
    assert samples.get("cml_version_info", worker="future", version='3.0.0-dev+build.99 "nova"') == 1


async def test_missing_fields_cost_only_their_series() -> None:
    """An older controller without is_licensed, controller, admission_state or dominfo."""
    async with Simulator() as sim:
        sim.add_worker("old", WorkerProfile(version="2.7", populate_lab_tiles=False))
        sim.set_fault("old", "system_health", Fault(values={
            "is_licensed": DELETE, "controller": DELETE, "admission_state": DELETE,
        }))
        sim.set_fault("old", "system_stats", Fault(values={"dominfo": DELETE}))
        sim.set_fault("old", "system_information", Fault(values={"version": DELETE}))

        (samples,) = await _scrapes(sim, 1)

    assert samples.status("old") == "available"
    assert samples.get("cml_ready", worker="old") == 1
    assert samples.get("cml_version_info", worker="old", version="unknown") == 1
    assert samples.get("cml_health_valid", worker="old") == 1
    assert samples.get("cml_licensed", worker="old") is None
    assert samples.get("cml_controller_valid", worker="old") is None
    assert samples.all("cml_compute_admission_state", worker="old") == []
    assert samples.all("cml_compute_running_nodes", worker="old") == []
    assert samples.get("cml_running_nodes", worker="old") is None
    assert len(samples.all("cml_compute_memory_used_bytes", worker="old")) == 2


async def test_unsupported_endpoint_is_not_a_breaker_failure() -> None:
    """A 404 means the controller lacks the endpoint: no breaker opens, the status does not change."""
    async with Simulator() as sim:
        sim.add_worker("w", WorkerProfile())
        sim.set_fault("w", "system_stats", Fault(status=404))

        results = await _scrapes(sim, 4)
        requests = sim.count("w", "system_stats")

    last = results[-1]
    assert requests == 4
    assert failures(last, "w", "system_stats", "http_404") == 4
    assert failure_reasons(last, "w", "system_stats") == {"http_404"}
    assert last.get("cml_endpoint_breaker_state", worker="w", endpoint="system_stats", state="closed") == 1
    assert all(samples.status("w") == "available" for samples in results)
    assert last.get("cml_endpoint_up", worker="w", endpoint="system_health") == 1


async def test_missing_lab_tiles_switch_to_lab_list_once() -> None:
    async with Simulator() as sim:
        sim.add_worker("w", WorkerProfile(populate_lab_tiles=False))

        results = await _scrapes(sim, 3)
        tiles_requests = sim.count("w", "populate_lab_tiles")
        list_requests = sim.count("w", "labs")

    assert tiles_requests == 1
    assert list_requests == 3
    assert all(samples.get("cml_endpoint_up", worker="w", endpoint="labs") == 1 for samples in results)
    assert results[-1].get("cml_endpoint_breaker_state", worker="w", endpoint="labs", state="closed") == 1


async def test_non_admin_licensing_keeps_licensed_gauge() -> None:
    """A non-admin account gets 403 on /licensing; cml_licensed still comes from system_health."""
    async with Simulator() as sim:
        sim.add_worker("user", WorkerProfile(admin=False, username="operator", password="operator-password"))
        credentials = Credentials("default", "operator", Secret("operator-password"))
        config = fleet_config(sim, credentials=credentials, **EAGER)

        async with ExporterUnderTest(config) as exporter:
            results = [await scrape_on_time(exporter)]
            await asyncio.sleep(0.06)
            results.append(await scrape_on_time(exporter))
        requests = sim.count("user", "licensing")

    last = results[-1]
    assert requests == 2
    assert failure_reasons(last, "user", "licensing") == {"http_403"}
    assert last.get("cml_endpoint_breaker_state", worker="user", endpoint="licensing", state="closed") == 1
    assert last.get("cml_licensed", worker="user") == 1
    assert last.get("cml_license_registered", worker="user") is None
    assert last.status("user") == "available"
