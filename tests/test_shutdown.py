"""Graceful shutdown: SIGTERM answers the scrapes in flight, closes every session and exits with 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from exporter.simulator import Fault, Simulator
from tests.exporter_process import ExporterProcess, write_config
from tests.support import Samples


async def test_sigterm_answers_waiting_scrape_and_exits_zero(simulator: Simulator, tmp_path: Path) -> None:
    simulator.set_fault("healthy", "system_health", Fault(latency=30))
    config_file = write_config(
        tmp_path / "config.yml", {"healthy": simulator.base_url("healthy")}, defaults={"timeout": "40s"}
    )
    process = ExporterProcess(tmp_path, config_file).start()
    try:
        async with aiohttp.ClientSession() as session:
            await process.wait_ready(session)
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "20"}
            scrape = asyncio.create_task(session.get(process.url + "/metrics", headers=headers))
            await asyncio.sleep(1.0)

            signalled = time.monotonic()
            process.signal(signal.SIGTERM)
            response = await scrape
            answered_after = time.monotonic() - signalled
            body = await response.text()
            response.release()
            code = await process.wait_exit(10)
    finally:
        process.stop()

    samples = Samples(body)
    output = process.output()
    assert response.status == 200
    assert answered_after < 3, "the waiting scrape must be answered at shutdown, not at its deadline"
    assert samples.get("cml_up", worker="healthy") == 1
    assert samples.get("cml_endpoint_up", worker="healthy", endpoint="system_health") == 0
    assert code == 0
    assert 'msg="shutting down"' in output
    assert 'msg=stopped' in output
    assert "Traceback" not in output
    assert "Unclosed" not in output


async def test_sigterm_cancels_hung_refresh_and_exits_zero(simulator: Simulator, tmp_path: Path) -> None:
    simulator.set_fault("healthy", "*", Fault(hang=True))
    config_file = write_config(
        tmp_path / "config.yml", {"healthy": simulator.base_url("healthy")}, defaults={"timeout": "60s"}
    )
    process = ExporterProcess(tmp_path, config_file).start()
    try:
        async with aiohttp.ClientSession() as session:
            await process.wait_ready(session)
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "1"}
            async with session.get(process.url + "/metrics", headers=headers) as response:
                status = response.status
                body = await response.text()

            process.signal(signal.SIGTERM)
            code = await process.wait_exit(10)
    finally:
        process.stop()

    output = process.output()
    assert status == 200
    assert Samples(body).status("healthy") == "unavailable"
    assert code == 0
    assert "Traceback" not in output
    assert "Unclosed" not in output
    assert "Task was destroyed" not in output


async def test_sigint_stops_like_sigterm(simulator: Simulator, tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "config.yml", {"healthy": simulator.base_url("healthy")})
    process = ExporterProcess(tmp_path, config_file).start()
    try:
        async with aiohttp.ClientSession() as session:
            await process.wait_ready(session)
            async with session.get(process.url + "/metrics") as response:
                await response.read()

            process.signal(signal.SIGINT)
            code = await process.wait_exit(10)
    finally:
        process.stop()

    assert code == 0
    assert "Traceback" not in process.output()
