"""Back-pressure: 429 and 503 with Retry-After hold back every request to that worker, up to a cap."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from exporter.config import CacheConfig, ExporterSettings
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.failures_helpers import assert_complete, failures, scrape_on_time
from tests.support import ExporterUnderTest, Samples, fleet_config

# Every scrape finds the endpoints due, so only the hold keeps requests back.
SHORT_CACHE = CacheConfig(ttl=0.05, licensing_ttl=0.05)


def _last_success(samples: Samples, endpoint: str) -> float | None:
    return samples.get("cml_endpoint_last_success_timestamp_seconds", worker="busy", endpoint=endpoint)


async def _fleet() -> Simulator:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    sim.add_worker("busy", WorkerProfile())
    await sim.start()
    return sim


@pytest.mark.parametrize(("status", "header"), [(429, "seconds"), (503, "http_date")])
async def test_retry_after_holds_worker_back(status: int, header: str) -> None:
    sim = await _fleet()
    try:
        async with ExporterUnderTest(fleet_config(sim, cache=SHORT_CACHE)) as exporter:
            first = await scrape_on_time(exporter)
            # An HTTP date has whole seconds, so this one holds for between one and two seconds.
            value = "2" if header == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
            sim.set_fault("busy", "system_stats", Fault(status=status, retry_after=value))
            await asyncio.sleep(0.06)
            second = await scrape_on_time(exporter)
            sent_before_hold = sim.total_requests()
            busy_before_hold = sum(sim.counts("busy").values())

            held = []
            for _ in range(3):
                await asyncio.sleep(0.1)
                held.append(await scrape_on_time(exporter))
            busy_during_hold = sum(sim.counts("busy").values())
            sim.clear_faults("busy")

            await asyncio.sleep(2.2)
            after = await scrape_on_time(exporter)
            busy_after_hold = sum(sim.counts("busy").values())
    finally:
        await sim.stop()

    assert sent_before_hold > 0
    reason = "http_429" if status == 429 else "http_5xx"
    assert failures(second, "busy", "system_stats", reason) == 1
    assert busy_during_hold == busy_before_hold
    assert all(samples.status("healthy") == "available" for samples in held)
    assert _last_success(held[-1], "system_information") == _last_success(second, "system_information")
    assert _last_success(second, "system_information") > _last_success(first, "system_information")
    assert busy_after_hold > busy_during_hold
    held_until = held[-1].get("cml_retry_after_until_timestamp_seconds", worker="busy")
    assert held_until is not None
    assert held_until > time.time() - 2.2
    assert after.get("cml_retry_after_until_timestamp_seconds", worker="busy") is None
    assert_complete(after, "busy")
    assert_complete(after, "healthy")


async def test_retry_after_is_capped_by_configuration() -> None:
    sim = await _fleet()
    settings = ExporterSettings(default_scrape_timeout=5.0, retry_after_max=0.5)
    try:
        async with ExporterUnderTest(fleet_config(sim, cache=SHORT_CACHE, settings=settings)) as exporter:
            sim.set_fault("busy", "system_information", Fault(status=429, retry_after="3600"))
            await scrape_on_time(exporter)
            sim.clear_faults("busy")
            count_in_hold = sim.count("busy", "system_information")
            await asyncio.sleep(0.2)
            await scrape_on_time(exporter)
            count_still_held = sim.count("busy", "system_information")

            await asyncio.sleep(0.5)
            samples = await scrape_on_time(exporter)
            count_after_cap = sim.count("busy", "system_information")
    finally:
        await sim.stop()

    assert count_in_hold == 1
    assert count_still_held == 1
    assert count_after_cap == 2
    assert_complete(samples, "busy")


async def test_invalid_retry_after_is_ignored() -> None:
    sim = await _fleet()
    try:
        async with ExporterUnderTest(fleet_config(sim, cache=SHORT_CACHE)) as exporter:
            sim.set_fault("busy", "system_stats", Fault(status=503, retry_after="soon, maybe"))
            await scrape_on_time(exporter)
            before = sim.count("busy", "system_information")
            await asyncio.sleep(0.06)
            await scrape_on_time(exporter)
            after = sim.count("busy", "system_information")
    finally:
        await sim.stop()

    assert after == before + 1


async def test_login_retry_after_holds_only_logins() -> None:
    """A rate-limited login must not hide system_information, which says whether the worker is ready."""
    sim = await _fleet()
    try:
        sim.set_fault("busy", "authenticate", Fault(status=429, retry_after="120"))
        async with ExporterUnderTest(fleet_config(sim, cache=SHORT_CACHE)) as exporter:
            first = await scrape_on_time(exporter)
            for _ in range(3):
                await asyncio.sleep(0.1)
                last = await scrape_on_time(exporter)
            logins = sim.count("busy", "authenticate")
            information_requests = sim.count("busy", "system_information")
    finally:
        await sim.stop()

    assert failures(first, "busy", "authenticate", "http_429") == 1
    assert logins == 1
    assert information_requests >= 3
    assert last.status("busy") == "available"
    assert last.get("cml_ready", worker="busy") == 1
    assert last.get("cml_retry_after_until_timestamp_seconds", worker="busy") is None
