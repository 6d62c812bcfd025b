"""Things that go away: deleted labs, labs that change state, compute hosts that leave, stale results.

Families are built fresh for every response, so no series may keep the value of something that is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses

from exporter.config import CacheConfig, CollectConfig
from exporter.simulator import Fault, LabSpec, Simulator, WorkerProfile
from tests.failures_helpers import scrape_on_time
from tests.support import ExporterUnderTest, fleet_config

SHORT_CACHE = CacheConfig(ttl=0.05, licensing_ttl=0.05)


async def test_deleted_and_changed_labs_leave_no_series() -> None:
    profile = WorkerProfile()
    backbone, reflector, campus, _draft = profile.labs
    changed = [
        dataclasses.replace(campus, state="STARTED", nodes=("BOOTED", "BOOTED")),
        # The only lab of a new owner; alice's other lab and admin's draft are deleted.
        LabSpec(title="Scratch", owner_username="carol", state="STOPPED", nodes=("STOPPED",)),
        backbone,
    ]
    async with Simulator() as sim:
        sim.add_worker("w", profile)
        config = fleet_config(sim, cache=SHORT_CACHE, collect=CollectConfig(per_owner=True))
        async with ExporterUnderTest(config) as exporter:
            before = await scrape_on_time(exporter)
            sim.set_profile("w", dataclasses.replace(profile, labs=changed))
            await asyncio.sleep(0.06)
            after = await scrape_on_time(exporter)

    assert before.get("cml_labs", worker="w", state="DEFINED_ON_CORE") == 1
    assert before.get("cml_owner_labs", worker="w", owner="alice", state="STOPPED") == 1
    assert reflector.owner_username == "alice"
    assert after.get("cml_labs", worker="w", state="STARTED") == 2
    assert after.get("cml_labs", worker="w", state="STOPPED") == 1
    assert after.get("cml_labs", worker="w", state="DEFINED_ON_CORE") == 0
    assert after.get("cml_nodes", worker="w", state="QUEUED") == 0
    assert after.get("cml_nodes", worker="w", state="DISCONNECTED") == 1
    assert after.get("cml_owner_labs", worker="w", owner="alice", state="STARTED") == 1
    assert after.get("cml_owner_labs", worker="w", owner="alice", state="STOPPED") is None
    assert after.get("cml_owner_labs", worker="w", owner="admin", state="DEFINED_ON_CORE") is None
    assert after.get("cml_owner_nodes", worker="w", owner="alice", state="QUEUED") is None
    assert after.get("cml_owner_labs", worker="w", owner="carol", state="STOPPED") == 1


async def test_departed_compute_host_leaves_no_series() -> None:
    profile = WorkerProfile()
    controller, compute = profile.computes
    async with Simulator() as sim:
        sim.add_worker("w", profile)
        async with ExporterUnderTest(fleet_config(sim, cache=SHORT_CACHE)) as exporter:
            before = await scrape_on_time(exporter)
            sim.set_profile("w", dataclasses.replace(profile, computes=[controller]))
            await asyncio.sleep(0.06)
            after = await scrape_on_time(exporter)

    gone = compute.hostname
    assert before.get("cml_compute_cpus", worker="w", compute=gone) is not None
    compute_series = [
        (name, labels)
        for name, labels, _ in after.samples
        if name.startswith("cml_compute_") and labels.get("compute") == gone
    ]
    assert compute_series == []
    assert after.get("cml_compute_cpus", worker="w", compute=controller.hostname) is not None


async def test_failure_reasons_of_a_removed_worker_are_gone() -> None:
    """After a reload without a worker, none of its series remain, counters included."""
    async with Simulator() as sim:
        sim.add_worker("stays", WorkerProfile())
        sim.add_worker("leaves", WorkerProfile())
        sim.set_fault("leaves", "system_stats", Fault(status=500))
        config = fleet_config(sim)
        async with ExporterUnderTest(config) as exporter:
            before = await scrape_on_time(exporter)
            await exporter.exporter.fleet.apply(dataclasses.replace(config, workers=config.workers[:1]))
            after = await scrape_on_time(exporter)

    assert before.get("cml_endpoint_failures_total", worker="leaves", endpoint="system_stats", reason="http_5xx") == 1
    assert [labels for name, labels, _ in after.samples if labels.get("worker") == "leaves"] == []
    assert after.get("cml_up", worker="stays") == 1


async def test_results_older_than_ttl_and_timeout_are_not_served() -> None:
    """An endpoint that stops answering keeps its data for TTL plus timeout at most, then drops it."""
    async with Simulator() as sim:
        sim.add_worker("w", WorkerProfile())
        cache = CacheConfig(ttl=0.2, licensing_ttl=0.2)
        async with ExporterUnderTest(fleet_config(sim, cache=cache, timeout=0.3)) as exporter:
            fresh = await scrape_on_time(exporter)
            sim.set_fault("w", "system_stats", Fault(hang=True))
            await asyncio.sleep(0.25)
            within_limit = await scrape_on_time(exporter, scrape_timeout=0.6)
            await asyncio.sleep(0.35)
            stale = await scrape_on_time(exporter, scrape_timeout=0.6)

    assert fresh.get("cml_running_nodes", worker="w") is not None
    assert within_limit.get("cml_running_nodes", worker="w") is not None
    assert stale.get("cml_running_nodes", worker="w") is None
    assert stale.all("cml_compute_cpu_usage_ratio", worker="w") == []
    assert stale.get("cml_endpoint_up", worker="w", endpoint="system_stats") == 0
    assert stale.get("cml_endpoint_last_success_timestamp_seconds", worker="w", endpoint="system_stats") == (
        fresh.get("cml_endpoint_last_success_timestamp_seconds", worker="w", endpoint="system_stats")
    )
    assert stale.get("cml_up", worker="w") == 1
