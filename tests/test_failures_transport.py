"""Transport failures: refused connections, unresolvable names, TLS errors, silent and slow servers.

Every scrape must return 200 on time, the healthy worker must stay complete, and the failing worker's
endpoints must show the bounded reason for what went wrong.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter.config import Config, ExporterSettings, TLSConfig
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.failures_helpers import (
    assert_complete,
    exporter_tasks,
    failures,
    scrape_on_time,
    unused_port,
    wait_for,
)
from tests.support import ExporterUnderTest, worker_config

API_ENDPOINTS = ("system_information", "system_health", "system_stats", "licensing", "labs")


def _config(simulator: Simulator, name: str, url: str, **overrides: Any) -> Config:
    workers = (
        worker_config("healthy", simulator.base_url("healthy")),
        worker_config(name, url, **overrides),
    )
    return Config(workers=workers, settings=ExporterSettings(default_scrape_timeout=5.0))


class SilentServer:
    """A TCP server on loopback that reads requests, never responds, and counts when the client hangs up."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.received = b""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self._writers.append(writer)
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
        except ConnectionError:
            pass
        self.closed += 1
        writer.close()

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    async with SilentServer() as server:
        yield server


async def test_refused_connection_reports_connection(simulator: Simulator) -> None:
    config = _config(simulator, "gone", f"http://127.0.0.1:{unused_port()}")

    async with ExporterUnderTest(config) as exporter:
        samples = await scrape_on_time(exporter)

    assert_complete(samples, "healthy")
    assert samples.get("cml_up", worker="gone") == 0
    assert samples.status("gone") == "unavailable"
    assert failures(samples, "gone", "system_information", "connection") == 1
    assert failures(samples, "gone", "authenticate", "connection") == 1
    # Authenticated endpoints never got as far as their own request: they fail for want of a token.
    assert failures(samples, "gone", "system_health", "auth") == 1
    assert samples.get("cml_endpoint_requests_total", worker="gone", endpoint="system_health") == 0


async def test_invalid_host_name_fails_without_lookup(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .invalid name never resolves (RFC 6761), so no DNS query may leave the host for it."""
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    config = _config(simulator, "nowhere", "http://cml-worker.invalid:8080")

    async with ExporterUnderTest(config) as exporter:
        started = time.monotonic()
        samples = await scrape_on_time(exporter)
        seconds = time.monotonic() - started

    assert seconds < 0.5
    assert not any("invalid" in host for host in looked_up), looked_up
    assert_complete(samples, "healthy")
    assert samples.status("nowhere") == "unavailable"
    assert failures(samples, "nowhere", "system_information", "dns") == 1
    assert failures(samples, "nowhere", "authenticate", "dns") == 1


@pytest.mark.parametrize("case", ["self_signed", "wrong_ca", "wrong_host_name"])
async def test_tls_failure_reports_tls(case: str, tmp_path: Path) -> None:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    sim.add_worker("secure", WorkerProfile(), tls_hostname="other-host.example" if case == "wrong_host_name" else None,
                   tls=True)
    async with sim:
        ca_file = tmp_path / "ca.pem"
        if case == "wrong_ca":
            ca_file.write_bytes(trustme.CA().cert_pem.bytes())
        else:
            ca_file.write_bytes(sim.ca_cert_pem)
        tls = TLSConfig() if case == "self_signed" else TLSConfig(ca_file=str(ca_file))
        config = _config(sim, "secure", sim.base_url("secure"), tls=tls)

        async with ExporterUnderTest(config) as exporter:
            samples = await scrape_on_time(exporter)

        assert sim.count("secure", "system_information") == 0

    assert_complete(samples, "healthy")
    assert samples.status("secure") == "unavailable"
    assert failures(samples, "secure", "system_information", "tls") == 1
    assert failures(samples, "secure", "authenticate", "tls") == 1


async def test_tls_with_right_ca_succeeds(tmp_path: Path) -> None:
    """The counterpart of the TLS failures: the same worker with its CA configured is complete."""
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    sim.add_worker("secure", WorkerProfile(), tls=True)
    async with sim:
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(sim.ca_cert_pem)
        config = _config(sim, "secure", sim.base_url("secure"), tls=TLSConfig(ca_file=str(ca_file)))

        async with ExporterUnderTest(config) as exporter:
            samples = await scrape_on_time(exporter)

    assert_complete(samples, "secure")


async def test_silent_server_times_out_and_closes(simulator: Simulator, silent_server: SilentServer) -> None:
    config = _config(simulator, "silent", f"http://127.0.0.1:{silent_server.port}")

    async with ExporterUnderTest(config) as exporter:
        samples = await scrape_on_time(exporter)
        await wait_for(lambda: silent_server.closed == silent_server.opened, within=1.0)
        await wait_for(lambda: not exporter_tasks(), within=1.0)

    assert silent_server.opened >= 1
    assert b"GET /api/v0/system_information" in silent_server.received
    assert_complete(samples, "healthy")
    assert samples.status("silent") == "unavailable"
    assert failures(samples, "silent", "system_information", "timeout") == 1
    duration = samples.get("cml_endpoint_duration_seconds", worker="silent", endpoint="system_information")
    assert duration is not None
    assert 0.9 <= duration < 1.5


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(body="truncated"), "connection"),
        (Fault(stall_after=10), "timeout"),
        (Fault(trickle=0.05), "timeout"),
        (Fault(hang=True), "timeout"),
    ],
    ids=["stops_mid_body", "stalls_mid_body", "trickles", "never_answers"],
)
async def test_broken_body_fails_only_that_endpoint(fault: Fault, reason: str) -> None:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    sim.add_worker("slow", WorkerProfile())
    async with sim:
        sim.set_fault("slow", "system_stats", fault)
        config = _config(sim, "slow", sim.base_url("slow"))

        async with ExporterUnderTest(config) as exporter:
            samples = await scrape_on_time(exporter)
            await wait_for(lambda: not exporter_tasks(), within=1.0)

        requests = sim.count("slow", "system_stats")

    assert requests == 1
    assert_complete(samples, "healthy")
    assert failures(samples, "slow", "system_stats", reason) == 1
    assert samples.get("cml_endpoint_up", worker="slow", endpoint="system_stats") == 0
    assert samples.get("cml_running_nodes", worker="slow") is None
    assert samples.get("cml_endpoint_up", worker="slow", endpoint="system_health") == 1
    assert samples.status("slow") == "available"
