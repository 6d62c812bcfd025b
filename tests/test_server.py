"""The HTTP surface and command line: exposition validity, docs coverage, landing page, health, demo, probe."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Simulator, WorkerProfile
from tests.conftest import require_binary
from tests.support import PASSWORD, ExporterUnderTest, Samples, fleet_config

ROOT = Path(__file__).resolve().parent.parent


def test_exposition_passes_promtool(exporter_exposition: str) -> None:
    promtool = require_binary("promtool")

    result = subprocess.run(
        [promtool, "check", "metrics"], input=exporter_exposition, capture_output=True, text=True, timeout=60
    )

    # promtool lints too; only errors about the format itself fail the check.
    assert result.returncode == 0 or "error" not in result.stderr.lower(), result.stderr
    assert "parse" not in result.stderr.lower(), result.stderr


def _documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(cml_[a-z_]+)`", text, re.MULTILINE))


def test_metrics_doc_lists_every_exposed_metric(exporter_exposition: str) -> None:
    exposed = {family.name for family in text_string_to_metric_families(exporter_exposition)}
    exposed_cml = {name + ("_total" if name.endswith(("requests", "failures")) else "") for name in exposed}
    exposed_cml = {
        name + "_info" if name in {"cml_version", "cml_license", "cml_exporter_build"} else name
        for name in exposed_cml
        if name.startswith("cml_")
    }

    assert exposed_cml - _documented_metrics() == set(), "exposed but not in docs/metrics.md"
    assert _documented_metrics() - exposed_cml == set(), "documented but never exposed"


def test_every_worker_has_always_present_series(exporter_exposition: str) -> None:
    samples = Samples(exporter_exposition)
    workers = {labels["worker"] for labels, _ in samples.all("cml_up")}

    assert workers == {"healthy", "unlicensed", "not-ready", "broken-stats", "throttled"}
    for worker in workers:
        assert samples.get("cml_ready", worker=worker) is not None
        assert len(samples.all("cml_service_status", worker=worker)) == 3
        assert len(samples.all("cml_endpoint_up", worker=worker)) == 6
    assert samples.status("not-ready") == "available"
    assert samples.get("cml_ready", worker="not-ready") == 0
    assert samples.get("cml_license_registered", worker="unlicensed") == 0
    assert samples.get("cml_endpoint_breaker_state", worker="broken-stats", endpoint="system_stats", state="open") == 1
    assert samples.status("throttled") == "available"
    held_until = samples.get("cml_retry_after_until_timestamp_seconds", worker="throttled")
    # The worker asked for 600 s; exporter.retry_after_max caps it at its default of 300 s. The
    # exposition is made once per session, so some of those seconds have passed already.
    assert held_until is not None
    assert time.time() < held_until <= time.time() + 300
    assert samples.get("cml_retry_after_until_timestamp_seconds", worker="healthy") is None


async def test_landing_page_lists_workers_and_escapes_text() -> None:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile(version_string="<script>alert(1)</script>"))
    async with sim, ExporterUnderTest(fleet_config(sim)) as exporter:
        await exporter.scrape()
        status, page, _ = await exporter.get("/")

    assert status == 200
    assert "healthy" in page
    assert "available" in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page
    assert PASSWORD not in page


async def test_health_ready_and_sd_endpoints(simulator: Simulator) -> None:
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        healthy = await exporter.get("/-/healthy")
        ready = await exporter.get("/-/ready")
        sd = await exporter.get("/sd")

    assert healthy[0] == 200
    assert ready[0] == 200
    assert sd[0] == 200
    assert '"targets": ["healthy"]' in sd[1]
    assert simulator.total_requests() == 0


async def test_scrape_timeout_header_sets_deadline() -> None:
    sim = Simulator()
    sim.add_worker("hanging", WorkerProfile())
    async with sim:
        from exporter.simulator import Fault

        sim.set_fault("hanging", "*", Fault(hang=True))
        async with ExporterUnderTest(fleet_config(sim, timeout=10.0)) as exporter:
            status, _, seconds = await exporter.get("/metrics", scrape_timeout=1.0)

    assert status == 200
    assert 0.3 <= seconds < 1.0


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


def _wait_for_http(url: str, process: subprocess.Popen[str], seconds: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the process exited early"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds}s")


def test_demo_shows_every_worker_in_its_true_state() -> None:
    import urllib.request

    port = _free_port()
    command = [sys.executable, "-m", "exporter", "demo", "--web.listen-address", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/-/healthy", process)
        samples = None
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=15) as response:
                samples = Samples(response.read().decode())
    finally:
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=20)

    assert samples is not None
    assert samples.status("healthy") == "available"
    assert samples.get("cml_ready", worker="healthy") == 1
    assert samples.status("slow-auth") == "available"
    assert samples.get("cml_ready", worker="slow-auth") == 1
    assert samples.get("cml_endpoint_up", worker="slow-auth", endpoint="system_health") == 0
    assert samples.status("booting") == "unavailable"
    assert samples.get("cml_license_registered", worker="unlicensed") == 0
    assert samples.status("legacy") == "available"
    assert samples.get("cml_labs", worker="legacy", state="STARTED") == 2
    assert samples.status("unreachable") == "unavailable"
    assert f"http://127.0.0.1:{port}/metrics" in output
    assert process.returncode == 0, errors


async def test_probe_command_output(tmp_path: Path) -> None:
    import asyncio

    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    async with sim:
        config = tmp_path / "config.yaml"
        config.write_text(
            "credentials: {default: {username: admin, password: '${CML_TEST_PASSWORD}'}}\n"
            f"workers: [{{name: healthy, url: '{sim.base_url('healthy')}'}}]\n"
        )
        command = [sys.executable, "-m", "exporter", "probe", "healthy", "--config.file", str(config)]
        environment = {**os.environ, "CML_TEST_PASSWORD": PASSWORD}
        process = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)

    text = out.decode()
    assert process.returncode == 0, err.decode()
    for endpoint in ("system_information", "system_health", "system_stats", "licensing", "labs", "authenticate"):
        assert re.search(rf"^  {endpoint}\s+ok\s", text, re.MULTILINE), text
    assert "status: available   ready: yes" in text
    assert PASSWORD not in text + err.decode()


@pytest.mark.parametrize("address", ["9877", "host:", "host:99999"])
def test_serve_rejects_bad_listen_address(address: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("workers: []\n")
    command = [sys.executable, "-m", "exporter", "--config.file", str(config), "--web.listen-address", address]

    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    assert result.returncode == 2
    assert "invalid listen address" in result.stderr


async def test_landing_page_does_not_expire_results(simulator: Simulator) -> None:
    """Viewing / between scrapes must neither mark workers unavailable nor move their status-since time."""
    import asyncio

    from exporter.config import CacheConfig

    config = fleet_config(simulator, timeout=0.2, cache=CacheConfig(ttl=0.2, licensing_ttl=0.2))
    async with ExporterUnderTest(config) as exporter:
        first = await exporter.scrape()
        await asyncio.sleep(0.6)
        status, page, _ = await exporter.get("/")
        second = await exporter.scrape()

    assert status == 200
    assert "class='available'" in page
    since = first.get("cml_service_status_since_timestamp_seconds", worker="healthy")
    assert second.get("cml_service_status_since_timestamp_seconds", worker="healthy") == since


async def test_failed_reload_answers_with_problems(simulator: Simulator, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("workers: [{name: healthy, url: 'ftp://nowhere'}]\n")
    async with ExporterUnderTest(fleet_config(simulator), str(config_file)) as exporter:
        status, body, _ = await exporter.get("/-/reload", method="POST")
        samples = await exporter.scrape()

    assert status == 500
    assert "workers[0].url: scheme 'ftp' is not supported" in body
    assert samples.get("cml_exporter_config_last_reload_successful") == 0
    assert samples.status("healthy") == "available"


@pytest.mark.parametrize("header", ["nan", "inf", "1e309", "-1", "abc", "100000"])
async def test_invalid_scrape_timeout_header_uses_default(header: str) -> None:
    import aiohttp

    from exporter.config import ExporterSettings
    from exporter.simulator import Fault

    sim = Simulator()
    sim.add_worker("hanging", WorkerProfile())
    async with sim:
        sim.set_fault("hanging", "*", Fault(hang=True))
        settings = ExporterSettings(default_scrape_timeout=0.5)
        async with ExporterUnderTest(fleet_config(sim, timeout=10.0, settings=settings)) as exporter:
            started = time.monotonic()
            async with aiohttp.ClientSession() as session:
                headers = {"X-Prometheus-Scrape-Timeout-Seconds": header}
                async with session.get(exporter.url + "/metrics", headers=headers) as response:
                    status = response.status
                    await response.read()
            seconds = time.monotonic() - started

    assert status == 200
    assert seconds < 2.0


async def test_slow_dns_does_not_delay_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookups that fill the default thread pool must not hold up rendering the response."""
    import socket as socket_module

    original = socket_module.getaddrinfo

    def slow_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and host.endswith(".slowdns.test"):
            time.sleep(2.0)
            raise socket_module.gaierror(socket_module.EAI_NONAME, "not found")
        return original(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket_module, "getaddrinfo", slow_getaddrinfo)
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    async with sim:
        from exporter.config import Config, ExporterSettings
        from tests.support import worker_config

        workers = [worker_config("healthy", sim.base_url("healthy"))]
        workers += [worker_config(f"slow-{index}", f"http://w{index}.slowdns.test", timeout=5.0) for index in range(16)]
        config = Config(workers=tuple(workers), settings=ExporterSettings())
        async with ExporterUnderTest(config) as exporter:
            status, body, seconds = await exporter.get("/metrics", scrape_timeout=1.5)

    assert status == 200
    assert seconds < 1.5
    assert Samples(body).status("healthy") == "available"


async def test_probe_command_cleans_worker_text(tmp_path: Path) -> None:
    import asyncio

    sim = Simulator()
    sim.add_worker("odd", WorkerProfile(version_string="2.9.1\x1b]0;pwned\x07\r\nstatus: available"))
    async with sim:
        config = tmp_path / "config.yaml"
        config.write_text(
            "credentials: {default: {username: admin, password: admin-password}}\n"
            f"workers: [{{name: odd, url: '{sim.base_url('odd')}'}}]\n"
        )
        command = [sys.executable, "-m", "exporter", "probe", "odd", "--config.file", str(config)]
        process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, _ = await asyncio.wait_for(process.communicate(), 60)

    text = out.decode()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert [line for line in text.splitlines() if line.startswith("status:")] == [
        "status: available   ready: yes   version: 2.9.1\ufffd]0;pwned\ufffd\ufffd\ufffdstatus: available"
    ]
