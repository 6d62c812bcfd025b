"""Tokens: expiry, concurrent 401s, tokens rejected straight after login, and wrong credentials.

Logins stay bounded (one at a time per worker, backed off after rejections), and the log reports a
rejected login once, not on every scrape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from exporter.config import CacheConfig, Credentials, Secret
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.failures_helpers import assert_complete, failure_reasons, failures, scrape_on_time
from tests.support import ExporterUnderTest, Samples, fleet_config

SHORT_CACHE = CacheConfig(ttl=0.05, licensing_ttl=0.05)
TOKEN_ENDPOINTS = ("system_health", "system_stats", "licensing", "populate_lab_tiles")


async def _scrape_repeatedly(exporter: ExporterUnderTest, count: int, pause: float = 0.06) -> list[Samples]:
    results = []
    for _ in range(count):
        results.append(await scrape_on_time(exporter))
        await asyncio.sleep(pause)
    return results


async def test_expired_tokens_cause_exactly_one_login(simulator: Simulator) -> None:
    """All four authenticated endpoints get 401 at once; they share one new login and retry once."""
    async with ExporterUnderTest(fleet_config(simulator, cache=SHORT_CACHE)) as exporter:
        await _scrape_repeatedly(exporter, 2)
        logins_before = simulator.count("healthy", "authenticate")
        health_before = simulator.count("healthy", "system_health")

        simulator.expire_tokens("healthy")
        simulator.set_fault("healthy", "authenticate", Fault(latency=0.2))
        samples = await scrape_on_time(exporter)

        logins_after = simulator.count("healthy", "authenticate")
        health_after = simulator.count("healthy", "system_health")

    assert logins_before == 1
    assert logins_after == 2
    assert health_after == health_before + 2
    assert_complete(samples, "healthy")
    assert failures(samples, "healthy", "system_health", "http_401") == 0


async def test_concurrent_scrapes_share_one_login(simulator: Simulator) -> None:
    simulator.set_fault("healthy", "authenticate", Fault(latency=0.3))

    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        results = await asyncio.gather(
            scrape_on_time(exporter),
            scrape_on_time(exporter),
            scrape_on_time(exporter, "/probe?target=healthy"),
        )

    assert simulator.count("healthy", "authenticate") == 1
    assert simulator.count("healthy", "system_health") == 1
    for samples in results:
        assert_complete(samples, "healthy")


async def test_short_lived_token_is_renewed_not_per_scrape() -> None:
    """A token valid for 2 s is reused for about half its life, not replaced on every refresh."""
    async with Simulator() as sim:
        sim.add_worker("w", WorkerProfile(token_ttl=2.0))
        async with ExporterUnderTest(fleet_config(sim, cache=SHORT_CACHE)) as exporter:
            results = await _scrape_repeatedly(exporter, 8, pause=0.1)
        logins = sim.count("w", "authenticate")
        health_requests = sim.count("w", "system_health")

    assert health_requests == 8
    assert logins <= 2
    assert all(failure_reasons(samples, "w", "system_health") == set() for samples in results)


async def test_token_rejected_after_login_backs_off(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    for endpoint in TOKEN_ENDPOINTS:
        simulator.set_fault("healthy", endpoint, Fault(status=401))
    caplog.set_level(logging.DEBUG)

    async with ExporterUnderTest(fleet_config(simulator, cache=SHORT_CACHE)) as exporter:
        results = await _scrape_repeatedly(exporter, 6)

    last = results[-1]
    assert simulator.count("healthy", "authenticate") == 2
    assert last.get("cml_endpoint_up", worker="healthy", endpoint="system_information") == 1
    assert last.status("healthy") == "available"
    assert failures(last, "healthy", "system_health", "auth") >= 4
    warnings = [record for record in caplog.records if record.getMessage() == "login rejected; backing off"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


async def test_wrong_password_is_not_retried_per_scrape(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = Credentials("default", "admin", Secret("wrong-password"))

    async with ExporterUnderTest(fleet_config(simulator, credentials=credentials, cache=SHORT_CACHE)) as exporter:
        results = await _scrape_repeatedly(exporter, 6)

    last = results[-1]
    assert simulator.count("healthy", "authenticate") == 1
    assert simulator.count("healthy", "system_health") == 0
    assert failures(last, "healthy", "authenticate", "http_403") == 1
    assert failures(last, "healthy", "system_health", "auth") == 6
    assert last.get("cml_endpoint_breaker_state", worker="healthy", endpoint="authenticate", state="closed") == 1
    assert last.status("healthy") == "available"
    assert last.get("cml_ready", worker="healthy") == 1
    rejected = [record for record in caplog.records if record.getMessage().startswith("login rejected")]
    assert [record.levelno for record in rejected] == [logging.WARNING]


async def test_login_works_again_after_credentials_fixed(simulator: Simulator) -> None:
    """The back-off ends when its interval has passed and the next login succeeds."""
    credentials = Credentials("default", "admin", Secret("wrong-password"))
    config = fleet_config(simulator, credentials=credentials, cache=SHORT_CACHE)
    breaker = dataclasses.replace(config.workers[0].breaker, reset_timeout=0.3)
    config = dataclasses.replace(config, workers=(dataclasses.replace(config.workers[0], breaker=breaker),))

    async with ExporterUnderTest(config) as exporter:
        await _scrape_repeatedly(exporter, 2)
        simulator.set_profile("healthy", WorkerProfile(password="wrong-password"))
        await asyncio.sleep(0.35)
        samples = await scrape_on_time(exporter)

    assert simulator.count("healthy", "authenticate") == 2
    assert_complete(samples, "healthy")
