"""Live reload: POST /-/reload and SIGHUP swap in a valid file at once and keep the running one otherwise."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from exporter.config import load_config
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.exporter_process import ExporterProcess, write_config
from tests.support import ExporterUnderTest, Samples


@pytest.fixture
async def fleet() -> AsyncIterator[Simulator]:
    sim = Simulator()
    for name in ("alpha", "beta", "gamma"):
        sim.add_worker(name, WorkerProfile())
    async with sim:
        yield sim


def urls(sim: Simulator, *names: str) -> dict[str, str]:
    return {name: sim.base_url(name) for name in names}


def workers_in(samples: Samples) -> set[str]:
    return {labels["worker"] for _, labels, _ in samples.samples if "worker" in labels}


async def reload(exporter: ExporterUnderTest) -> tuple[int, str]:
    status, body, _ = await exporter.get("/-/reload", method="POST")
    return status, body


async def test_reload_adds_worker_and_probes_it_on_next_scrape(fleet: Simulator, tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "config.yml", urls(fleet, "alpha"))
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        await exporter.scrape()
        write_config(config_file, urls(fleet, "alpha", "beta"))

        status, body = await reload(exporter)
        requests_before_scrape = fleet.count("beta", "system_information")
        samples = await exporter.scrape()

    assert status == 200, body
    assert requests_before_scrape == 0
    assert fleet.count("beta", "system_information") == 1
    assert samples.get("cml_up", worker="beta") == 1
    assert samples.get("cml_exporter_workers") == 2
    assert samples.get("cml_exporter_config_last_reload_successful") == 1


async def test_reload_removes_worker_series_and_state(fleet: Simulator, tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "config.yml", urls(fleet, "alpha", "beta"))
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        before = await exporter.scrape()
        retired = exporter.exporter.fleet.workers["beta"]
        write_config(config_file, urls(fleet, "alpha"))

        status, body = await reload(exporter)
        requests_after_reload = fleet.counts("beta")
        after = await exporter.scrape()

        assert status == 200, body
        assert "beta" in workers_in(before)
        assert workers_in(after) == {"alpha"}
        assert after.get("cml_exporter_workers") == 1
        assert "beta" not in exporter.exporter.fleet.workers
        assert retired.client._session is None, "the removed worker's HTTP session is still open"
        assert fleet.counts("beta") == requests_after_reload


async def test_readded_worker_starts_with_fresh_token_and_counters(fleet: Simulator, tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "config.yml", urls(fleet, "alpha", "beta"))
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        await exporter.scrape()
        logins_before = fleet.count("beta", "authenticate")
        write_config(config_file, urls(fleet, "alpha"))
        await reload(exporter)
        write_config(config_file, urls(fleet, "alpha", "beta"))
        await reload(exporter)

        samples = await exporter.scrape()

    assert logins_before == 1
    assert fleet.count("beta", "authenticate") == 2, "a removed worker's token must not survive its removal"
    assert samples.get("cml_endpoint_requests_total", worker="beta", endpoint="system_information") == 1


async def test_reload_keeps_unchanged_worker_cache(fleet: Simulator, tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "config.yml", urls(fleet, "alpha"))
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        await exporter.scrape()
        requests = fleet.counts("alpha")
        write_config(config_file, urls(fleet, "alpha", "beta"))

        await reload(exporter)
        await exporter.scrape()

    assert fleet.counts("alpha") == requests, "an unchanged worker's cached results must be kept"


async def test_reload_replaces_worker_whose_url_changed(fleet: Simulator, tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "config.yml", {"alpha": fleet.base_url("alpha")})
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        await exporter.scrape()
        write_config(config_file, {"alpha": fleet.base_url("gamma")})

        await reload(exporter)
        await exporter.scrape()

    assert fleet.count("gamma", "system_information") == 1


async def test_invalid_reload_keeps_running_configuration(
    fleet: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_file = write_config(tmp_path / "config.yml", urls(fleet, "alpha"))
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        first = await exporter.scrape()
        write_config(config_file, {"alpha": fleet.base_url("alpha"), "beta": "ftp://example.invalid"})

        with caplog.at_level(logging.ERROR, logger="exporter.server"):
            status, body = await reload(exporter)
        rejected = await exporter.scrape()
        beta_requests_while_rejected = fleet.count("beta", "system_information")
        write_config(config_file, urls(fleet, "alpha", "beta"))
        await asyncio.sleep(0.01)
        fixed_status, _ = await reload(exporter)
        fixed = await exporter.scrape()

    assert status == 500
    assert "running configuration stays in force" in body
    assert rejected.get("cml_exporter_config_last_reload_successful") == 0
    assert workers_in(rejected) == {"alpha"}
    assert rejected.get("cml_up", worker="alpha") == 1
    assert beta_requests_while_rejected == 0
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "workers[1].url" in errors[0].error  # type: ignore[attr-defined]
    assert fixed_status == 200
    assert fixed.get("cml_exporter_config_last_reload_successful") == 1
    first_success = first.get("cml_exporter_config_last_reload_success_timestamp_seconds")
    fixed_success = fixed.get("cml_exporter_config_last_reload_success_timestamp_seconds")
    assert first_success is not None and fixed_success is not None
    assert fixed_success > first_success


async def test_reload_without_config_file_is_rejected(fleet: Simulator, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "config.yml", urls(fleet, "alpha")))
    async with ExporterUnderTest(config) as exporter:
        status, body = await reload(exporter)

    assert status == 400
    assert "--config.file" in body


async def test_reload_during_scrape_answers_scrape(fleet: Simulator, tmp_path: Path) -> None:
    """A worker removed while a scrape waits for it is answered in that scrape, then never again."""
    fleet.set_fault("beta", "system_health", Fault(latency=1.0))
    config_file = write_config(tmp_path / "config.yml", urls(fleet, "alpha", "beta"))
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        scrape = asyncio.create_task(exporter.get("/metrics", scrape_timeout=5))
        await asyncio.sleep(0.2)
        write_config(config_file, urls(fleet, "alpha"))

        reload_status, _ = await reload(exporter)
        status, body, seconds = await scrape
        after = await exporter.scrape()

    assert reload_status == 200
    assert status == 200, body
    assert seconds < 4
    assert workers_in(after) == {"alpha"}


async def test_sighup_reloads_configuration_of_running_process(fleet: Simulator, tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "config.yml", urls(fleet, "alpha"))
    process = ExporterProcess(tmp_path, config_file).start()
    try:
        async with aiohttp.ClientSession() as session:
            await process.wait_ready(session)
            write_config(config_file, urls(fleet, "alpha", "beta"))
            process.signal(signal.SIGHUP)
            added = await scrape_until(session, process.url, lambda s: "beta" in workers_in(s))
            write_config(config_file, urls(fleet, "beta"))
            process.signal(signal.SIGHUP)
            removed = await scrape_until(session, process.url, lambda s: "alpha" not in workers_in(s))
            config_file.write_text("workers: {broken", encoding="utf-8")
            process.signal(signal.SIGHUP)
            rejected = await scrape_until(
                session, process.url, lambda s: s.get("cml_exporter_config_last_reload_successful") == 0
            )
    finally:
        process.stop()

    assert added.get("cml_up", worker="beta") == 1
    assert workers_in(removed) == {"beta"}
    assert workers_in(rejected) == {"beta"}
    assert rejected.get("cml_up", worker="beta") == 1
    output = process.output()
    assert 'level=error msg="configuration reload rejected' in output
    assert "not valid YAML" in output
    assert process.popen is not None and process.popen.returncode == 0


async def scrape_until(session: aiohttp.ClientSession, url: str, condition: object, seconds: float = 10) -> Samples:
    """Scrape /metrics until ``condition(samples)`` holds; fail after ``seconds``."""
    assert callable(condition)
    samples = None
    for _ in range(int(seconds / 0.1)):
        async with session.get(url + "/metrics") as response:
            samples = Samples(await response.text())
        if condition(samples):
            return samples
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds} s; last scrape:\n{samples.text if samples else ''}")
