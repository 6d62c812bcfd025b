"""Circuit breakers: what counts, one trial in half open, growing reset intervals, no shared state."""

from __future__ import annotations

import asyncio

import pytest

from exporter.breaker import Breaker
from exporter.config import BreakerConfig, CacheConfig
from exporter.errors import ProbeError
from exporter.simulator import Fault, Simulator
from tests.failures_helpers import assert_complete, failure_reasons, failures, scrape_on_time
from tests.support import ExporterUnderTest, Samples, fleet_config

SHORT_CACHE = CacheConfig(ttl=0.05, licensing_ttl=0.05)


def _breaker_state(samples: Samples, endpoint: str, worker: str = "healthy") -> str:
    on = [
        labels["state"]
        for labels, value in samples.all("cml_endpoint_breaker_state", worker=worker, endpoint=endpoint)
        if value == 1
    ]
    assert len(on) == 1, on
    return on[0]


async def _scrapes(exporter: ExporterUnderTest, count: int) -> list[Samples]:
    results = []
    for _ in range(count):
        results.append(await scrape_on_time(exporter))
        await asyncio.sleep(0.06)
    return results


@pytest.mark.parametrize(
    ("fault", "reason", "opens"),
    [
        (Fault(status=500), "http_5xx", True),
        (Fault(status=429), "http_429", True),
        (Fault(refuse=True), "connection", True),
        (Fault(status=404), "http_404", False),
        (Fault(status=403), "http_403", False),
        (Fault(body="not_json"), "bad_response", False),
        (Fault(redirect=True), "redirect", False),
    ],
    ids=["5xx", "429", "connection", "404", "403", "bad_response", "redirect"],
)
async def test_only_transient_failures_open_breaker(
    simulator: Simulator, fault: Fault, reason: str, opens: bool
) -> None:
    simulator.set_fault("healthy", "system_stats", fault)
    breaker = BreakerConfig(fail_max=2, reset_timeout=60.0, max_reset_timeout=300.0)

    async with ExporterUnderTest(fleet_config(simulator, cache=SHORT_CACHE, breaker=breaker)) as exporter:
        await _scrapes(exporter, 2)
        requests_before = simulator.count("healthy", "system_stats")
        results = await _scrapes(exporter, 2)
        requests = simulator.count("healthy", "system_stats")

    last = results[-1]
    if opens:
        # aiohttp resends a request once when a reused keep-alive connection turns out closed, so a
        # dropped connection reaches the server twice per attempt.
        assert requests_before == (4 if reason == "connection" else 2)
        assert requests == requests_before
        assert failures(last, "healthy", "system_stats", reason) == 2
        assert failures(last, "healthy", "system_stats", "breaker_open") == 2
        assert _breaker_state(last, "system_stats") == "open"
    else:
        assert requests == 4
        assert failure_reasons(last, "healthy", "system_stats") == {reason}
        assert _breaker_state(last, "system_stats") == "closed"
    assert last.get("cml_endpoint_up", worker="healthy", endpoint="system_health") == 1
    assert last.status("healthy") == "available"


async def _fail(message: str = "down") -> None:
    raise ProbeError("w", "system_stats", "http_5xx", message)


async def _open(breaker: Breaker) -> None:
    for _ in range(breaker.config.fail_max):
        with pytest.raises(ProbeError):
            await breaker.call(_fail)
    assert breaker.state == "open"


async def test_half_open_admits_exactly_one_trial() -> None:
    breaker = Breaker("w", "system_stats", BreakerConfig(fail_max=1, reset_timeout=0.05, max_reset_timeout=1.0))
    await _open(breaker)
    await asyncio.sleep(0.06)
    started = 0
    release = asyncio.Event()

    async def slow_success() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "ok"

    calls = [asyncio.create_task(breaker.call(slow_success)) for _ in range(5)]
    await asyncio.sleep(0.01)
    state_during_trial = breaker.state
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert started == 1
    assert state_during_trial == "half_open"
    assert outcomes.count("ok") == 1
    rejected = [outcome for outcome in outcomes if isinstance(outcome, ProbeError)]
    assert [error.reason for error in rejected] == ["breaker_open"] * 4
    assert breaker.state == "closed"


async def test_cancelled_trial_frees_the_trial_slot() -> None:
    breaker = Breaker("w", "system_stats", BreakerConfig(fail_max=1, reset_timeout=0.05, max_reset_timeout=1.0))
    await _open(breaker)
    await asyncio.sleep(0.06)

    trial = asyncio.create_task(breaker.call(lambda: asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    trial.cancel()
    await asyncio.gather(trial, return_exceptions=True)

    assert await breaker.call(lambda: asyncio.sleep(0, "ok")) == "ok"


async def test_reset_interval_doubles_to_cap_and_resets() -> None:
    config = BreakerConfig(fail_max=1, reset_timeout=0.02, max_reset_timeout=0.07)
    breaker = Breaker("w", "system_stats", config)
    await _open(breaker)
    intervals = [breaker.reset_timeout]

    for _ in range(3):
        await asyncio.sleep(breaker.reset_timeout + 0.01)
        with pytest.raises(ProbeError) as failed:
            await breaker.call(_fail)
        assert failed.value.reason == "http_5xx"
        intervals.append(breaker.reset_timeout)
    with pytest.raises(ProbeError) as held:
        await breaker.call(_fail)
    await asyncio.sleep(breaker.reset_timeout + 0.01)
    await breaker.call(lambda: asyncio.sleep(0))

    assert held.value.reason == "breaker_open"
    assert intervals == [0.02, 0.04, 0.07, 0.07]
    assert breaker.state == "closed"
    assert breaker.reset_timeout == 0.02


async def test_open_breaker_recovers_within_reset_and_ttl(simulator: Simulator) -> None:
    """A worker that is reachable again is reported complete after one reset interval and one TTL."""
    simulator.set_fault("healthy", "*", Fault(status=503))
    breaker = BreakerConfig(fail_max=1, reset_timeout=0.3, max_reset_timeout=1.0)

    async with ExporterUnderTest(fleet_config(simulator, cache=SHORT_CACHE, breaker=breaker)) as exporter:
        down = await _scrapes(exporter, 2)
        simulator.clear_faults("healthy")
        await asyncio.sleep(0.35)
        samples = await scrape_on_time(exporter)

    assert down[-1].status("healthy") == "unavailable"
    assert _breaker_state(down[-1], "system_information") == "open"
    assert_complete(samples, "healthy")
    assert _breaker_state(samples, "system_information") == "closed"


async def test_two_exporters_share_no_state(simulator: Simulator) -> None:
    """Breakers, cached results and tokens belong to one exporter instance, not to the process."""
    breaker = BreakerConfig(fail_max=1, reset_timeout=60.0, max_reset_timeout=300.0)
    config = fleet_config(simulator, breaker=breaker)

    async with ExporterUnderTest(config) as first, ExporterUnderTest(config) as second:
        simulator.set_fault("healthy", "system_stats", Fault(status=503))
        first_samples = await scrape_on_time(first)
        simulator.clear_faults("healthy")
        second_samples = await scrape_on_time(second)

    assert _breaker_state(first_samples, "system_stats") == "open"
    assert _breaker_state(second_samples, "system_stats") == "closed"
    assert_complete(second_samples, "healthy")
    assert simulator.count("healthy", "system_information") == 2
    assert simulator.count("healthy", "authenticate") == 2
