"""The exporter against the simulator: status rules, caching, single flight, deadlines, breakers, logins."""

from __future__ import annotations

import asyncio
import time

from exporter.config import BreakerConfig, CacheConfig, ExporterSettings
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.support import ExporterUnderTest, Samples, fleet_config

DATA_ENDPOINTS = ("system_information", "system_health", "system_stats", "licensing", "populate_lab_tiles")


async def test_slow_auth_worker_is_available_and_ready() -> None:
    """Login and system_health time out, system_information says ready: the worker must not look stuck."""
    sim = Simulator()
    sim.add_worker("slow-auth", WorkerProfile())
    async with sim:
        sim.set_fault("slow-auth", "authenticate", Fault(latency=30))
        sim.set_fault("slow-auth", "system_health", Fault(latency=30))
        async with ExporterUnderTest(fleet_config(sim, timeout=0.5)) as exporter:
            samples = await exporter.scrape()

    assert samples.status("slow-auth") == "available"
    assert samples.get("cml_up", worker="slow-auth") == 1
    assert samples.get("cml_ready", worker="slow-auth") == 1
    assert samples.get("cml_endpoint_up", worker="slow-auth", endpoint="system_information") == 1
    for endpoint in ("system_health", "system_stats", "licensing", "labs", "authenticate"):
        assert samples.get("cml_endpoint_up", worker="slow-auth", endpoint=endpoint) == 0, endpoint
    assert (
        samples.get("cml_endpoint_failures_total", worker="slow-auth", endpoint="authenticate", reason="timeout") == 1
    )
    for endpoint in ("system_health", "system_stats", "licensing", "labs"):
        failures = samples.all("cml_endpoint_failures_total", worker="slow-auth", endpoint=endpoint)
        assert sum(value for _, value in failures) == 1, endpoint


async def test_status_rows_follow_the_status_table() -> None:
    sim = Simulator()
    for name in ("all-fail", "health-valid", "health-invalid", "stats-only"):
        sim.add_worker(name, WorkerProfile())
    async with sim:
        sim.set_fault("all-fail", "*", Fault(status=502))
        sim.set_fault("health-valid", "system_information", Fault(status=500))
        sim.set_fault("health-invalid", "system_health", Fault(values={"valid": False}))
        sim.set_fault("stats-only", "system_information", Fault(status=500))
        sim.set_fault("stats-only", "system_health", Fault(status=500))
        async with ExporterUnderTest(fleet_config(sim)) as exporter:
            samples = await exporter.scrape()

    assert samples.status("all-fail") == "unavailable"
    assert samples.get("cml_up", worker="all-fail") == 0
    assert samples.status("health-valid") == "available"
    assert samples.get("cml_ready", worker="health-valid") == 0
    assert samples.status("health-invalid") == "available"
    assert samples.get("cml_health_valid", worker="health-invalid") == 0
    assert samples.get("cml_ready", worker="health-invalid") == 1
    assert samples.status("stats-only") == "error"
    assert samples.get("cml_up", worker="stats-only") == 1


async def test_first_scrape_before_any_result_is_unavailable() -> None:
    sim = Simulator()
    sim.add_worker("hanging", WorkerProfile())
    async with sim:
        sim.set_fault("hanging", "*", Fault(hang=True))
        async with ExporterUnderTest(fleet_config(sim, timeout=5.0)) as exporter:
            samples = await exporter.scrape(scrape_timeout=0.8)

    assert samples.status("hanging") == "unavailable"
    assert samples.get("cml_up", worker="hanging") == 0
    assert samples.get("cml_ready", worker="hanging") == 0


async def test_scrapes_inside_ttl_send_one_request_per_endpoint(simulator: Simulator) -> None:
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        await exporter.scrape()
        first = simulator.counts("healthy")
        await exporter.scrape()
        await exporter.scrape("/probe?target=healthy")
        second = simulator.counts("healthy")

    for endpoint in DATA_ENDPOINTS:
        assert first.get(endpoint) == 1, endpoint
    assert first.get("authenticate") == 1
    assert second == first


async def test_concurrent_scrapes_share_one_refresh(simulator: Simulator) -> None:
    simulator.set_fault("healthy", "*", Fault(latency=0.3))
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        results = await asyncio.gather(*(exporter.scrape() for _ in range(5)))

    assert all(samples.status("healthy") == "available" for samples in results)
    for endpoint in DATA_ENDPOINTS:
        assert simulator.count("healthy", endpoint) == 1, endpoint
    assert simulator.count("healthy", "authenticate") == 1


async def test_results_expire_after_ttl(simulator: Simulator) -> None:
    config = fleet_config(simulator, cache=CacheConfig(ttl=0.3, licensing_ttl=300.0))
    async with ExporterUnderTest(config) as exporter:
        await exporter.scrape()
        await asyncio.sleep(0.4)
        await exporter.scrape()

    assert simulator.count("healthy", "system_information") == 2
    assert simulator.count("healthy", "licensing") == 1
    assert simulator.count("healthy", "authenticate") == 1


async def test_hanging_worker_does_not_delay_scrape() -> None:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    sim.add_worker("hanging", WorkerProfile())
    async with sim:
        sim.set_fault("hanging", "*", Fault(hang=True))
        async with ExporterUnderTest(fleet_config(sim, timeout=10.0)) as exporter:
            status, body, seconds = await exporter.get("/metrics", scrape_timeout=1.5)

    assert status == 200
    assert seconds < 1.5
    samples = Samples(body)
    assert samples.status("healthy") == "available"
    assert samples.get("cml_running_nodes", worker="healthy") is not None
    assert samples.get("cml_license_registered", worker="healthy") == 1
    assert samples.status("hanging") == "unavailable"


async def test_worker_recovers_within_breaker_bound() -> None:
    """Unreachable, then reachable: available and ready within max reset interval plus one TTL."""
    sim = Simulator()
    sim.add_worker("late", WorkerProfile())
    async with sim:
        sim.set_boot("late", "refused")
        breaker = BreakerConfig(fail_max=1, reset_timeout=0.3, max_reset_timeout=0.6)
        config = fleet_config(sim, breaker=breaker, cache=CacheConfig(ttl=0.2, licensing_ttl=0.2))
        async with ExporterUnderTest(config) as exporter:
            for _ in range(6):
                samples = await exporter.scrape()
                assert samples.status("late") == "unavailable"
                await asyncio.sleep(0.2)
            sim.set_boot("late", "ready")
            answered_at = time.monotonic()
            while True:
                samples = await exporter.scrape()
                if samples.status("late") == "available" and samples.get("cml_ready", worker="late") == 1:
                    break
                assert time.monotonic() - answered_at < 0.6 + 0.2 + 0.5, "worker stayed stuck past the bound"
                await asyncio.sleep(0.05)


async def test_breaker_opens_skips_calls_and_lets_one_trial_through() -> None:
    sim = Simulator()
    sim.add_worker("flaky", WorkerProfile())
    sim.add_worker("steady", WorkerProfile())
    async with sim:
        sim.set_fault("flaky", "system_stats", Fault(status=503))
        breaker = BreakerConfig(fail_max=2, reset_timeout=0.5, max_reset_timeout=2.0)
        config = fleet_config(sim, breaker=breaker, cache=CacheConfig(ttl=0.05, licensing_ttl=300.0))
        async with ExporterUnderTest(config) as exporter:
            for _ in range(2):
                await exporter.scrape()
                await asyncio.sleep(0.06)
            samples = await exporter.scrape()
            assert samples.get("cml_endpoint_breaker_state", worker="flaky", endpoint="system_stats", state="open") == 1
            assert sim.count("flaky", "system_stats") == 2

            for _ in range(4):
                await asyncio.sleep(0.06)
                samples = await exporter.scrape()
            assert sim.count("flaky", "system_stats") == 2, "requests were sent while the breaker was open"
            failures = samples.get(
                "cml_endpoint_failures_total", worker="flaky", endpoint="system_stats", reason="breaker_open"
            )
            assert failures is not None and failures >= 1
            assert (
                samples.get("cml_endpoint_breaker_state", worker="steady", endpoint="system_stats", state="closed") == 1
            )

            sim.clear_faults("flaky")
            await asyncio.sleep(0.5)
            results = await asyncio.gather(*(exporter.scrape() for _ in range(4)))
            assert sim.count("flaky", "system_stats") == 3, "half open must let exactly one trial through"
            samples = results[-1]

    assert samples.get("cml_endpoint_breaker_state", worker="flaky", endpoint="system_stats", state="closed") == 1
    assert samples.get("cml_endpoint_up", worker="flaky", endpoint="system_stats") == 1


async def test_concurrent_401s_lead_to_one_login(simulator: Simulator) -> None:
    config = fleet_config(simulator, cache=CacheConfig(ttl=0.1, licensing_ttl=0.1))
    async with ExporterUnderTest(config) as exporter:
        await exporter.scrape()
        assert simulator.count("healthy", "authenticate") == 1
        simulator.expire_tokens("healthy")
        await asyncio.sleep(0.15)
        samples = await exporter.scrape()

    assert simulator.count("healthy", "authenticate") == 2
    assert samples.status("healthy") == "available"
    for endpoint in ("system_health", "system_stats", "licensing", "labs"):
        assert samples.get("cml_endpoint_up", worker="healthy", endpoint=endpoint) == 1, endpoint


async def test_unknown_probe_target_gets_400_and_sends_nothing(simulator: Simulator) -> None:
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        answers = [
            await exporter.get("/probe"),
            await exporter.get("/probe?target=nope"),
            await exporter.get("/probe?target=http://127.0.0.1:1/"),
            await exporter.get("/probe?target=healthy&target=healthy"),
        ]

    for status, body, _ in answers:
        assert status == 400
        assert body.count("\n") == 1
    assert "unknown target 'nope'" in answers[1][1]
    assert "looks like a URL" in answers[2][1]
    assert simulator.total_requests() == 0


async def test_probe_reports_one_worker(simulator: Simulator) -> None:
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        samples = await exporter.scrape("/probe?target=healthy")

    assert samples.status("healthy") == "available"
    assert "cml_exporter_workers" not in samples.names()
    assert "process_cpu_seconds_total" not in samples.names()


async def test_concurrency_limit_bounds_parallel_refreshes() -> None:
    sim = Simulator()
    for index in range(4):
        sim.add_worker(f"w{index}", WorkerProfile())
    async with sim:
        sim.set_fault("w0", "*", Fault(latency=0.3))
        sim.set_fault("w1", "*", Fault(latency=0.3))
        sim.set_fault("w2", "*", Fault(latency=0.3))
        sim.set_fault("w3", "*", Fault(latency=0.3))
        settings = ExporterSettings(max_concurrent_workers=1, default_scrape_timeout=0.5)
        async with ExporterUnderTest(fleet_config(sim, settings=settings)) as exporter:
            samples = await exporter.scrape()

    available = [name for name in ("w0", "w1", "w2", "w3") if samples.status(name) == "available"]
    assert len(available) <= 1


async def test_reasons_are_bounded_labels(simulator: Simulator) -> None:
    simulator.set_fault("healthy", "system_stats", Fault(body="not_json"))
    simulator.set_fault("healthy", "licensing", Fault(status=418))
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        samples = await exporter.scrape()

    assert (
        samples.get("cml_endpoint_failures_total", worker="healthy", endpoint="system_stats", reason="bad_response")
        == 1
    )
    assert samples.get("cml_endpoint_failures_total", worker="healthy", endpoint="licensing", reason="http_other") == 1
    assert samples.status("healthy") == "available"


async def test_slow_worker_waiting_for_slots_does_not_time_out() -> None:
    """Queueing behind the worker's other requests must not count against a request's timeout."""
    sim = Simulator()
    sim.add_worker("slow", WorkerProfile())
    async with sim:
        sim.set_fault("slow", "*", Fault(latency=0.35))
        async with ExporterUnderTest(fleet_config(sim, timeout=0.5)) as exporter:
            samples = await exporter.scrape()

    for endpoint in ("system_information", "system_health", "system_stats", "licensing", "labs", "authenticate"):
        assert samples.get("cml_endpoint_up", worker="slow", endpoint=endpoint) == 1, endpoint
    assert samples.all("cml_endpoint_failures_total", worker="slow") == []
