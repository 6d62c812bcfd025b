"""Scenario files and the ``simulate`` command of the CML fleet simulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from exporter.simulator import ENDPOINTS, ScenarioError, Simulator, load_scenario, parse_scenario
from exporter.simulator.scenario import parse_duration

SCENARIOS = Path(__file__).resolve().parent / "data" / "scenarios"
ROOT = Path(__file__).resolve().parent.parent
ALLOWED_ENDPOINTS = ", ".join(("*", *ENDPOINTS))


def test_fleet_scenario_builds_every_worker() -> None:
    scenario = load_scenario(SCENARIOS / "fleet.yaml")

    workers = {worker.name: worker for worker in scenario.workers}

    assert list(workers) == [
        "healthy",
        "slow-auth",
        "booting",
        "unlicensed",
        "modern",
        "big",
        "edge-1",
        "edge-2",
        "edge-3",
    ]
    assert (scenario.host, scenario.port) == ("127.0.0.1", 0)
    assert workers["healthy"].profile.token_ttl == 86400
    assert workers["slow-auth"].faults["authenticate"].latency == 30
    assert workers["booting"].profile.boot.bad_gateway == 10
    assert workers["unlicensed"].profile.licence == "unregistered"
    assert workers["modern"].profile.version == "2.10"
    assert len(workers["big"].profile.labs) == 200
    assert workers["big"].own_port and workers["big"].tls
    assert workers["edge-2"].profile.admin is False
    assert workers["edge-2"].profile.username == "alice"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "invalid-unknown-endpoint",
            f"workers[2].faults.system_helth: unknown endpoint; expected one of {ALLOWED_ENDPOINTS}",
        ),
        (
            "invalid-bad-duration",
            "defaults.token_ttl: invalid duration '5 minutes'; expected seconds or a string such as 500ms, 5s, 2m, 1h",
        ),
        (
            "invalid-unknown-key",
            "workers[0].licence_state: unknown key; expected one of name, replicas, port, version, version_string, "
            "licence, registration_expires, authorization_expires, admin, username, password, token_ttl, "
            "populate_lab_tiles, boot, lab_count, nodes_per_lab, labs, computes, own_port, tls, tls_hostname, faults",
        ),
        (
            "invalid-non-loopback",
            "listen.host: '0.0.0.0' is not a loopback address; set listen.allow_non_loopback: true",
        ),
        (
            "invalid-fault-field",
            "workers[0].faults.*.latancy: unknown key; expected one of latency, status, retry_after, hang, "
            "stall_after, trickle, body, redirect, refuse, values",
        ),
        (
            "invalid-many",
            "workers[0].version: invalid value '3.0'; expected one of 2.7, 2.8, 2.9, 2.10\n"
            "workers[0].boot.refused: invalid duration 'soon'; expected seconds or a string such as 500ms, 5s, 2m, 1h\n"
            "workers: duplicate worker names: a",
        ),
    ],
)
def test_invalid_scenario_names_key_path(name: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        load_scenario(SCENARIOS / f"{name}.yaml")

    assert str(error.value) == message


def test_missing_scenario_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"cannot be read"):
        load_scenario(tmp_path / "absent.yaml")


def test_non_loopback_host_allowed_when_asked() -> None:
    scenario = parse_scenario({"listen": {"host": "192.0.2.1", "allow_non_loopback": True}, "workers": [{"name": "a"}]})

    assert scenario.host == "192.0.2.1"
    assert scenario.allow_non_loopback is True


def test_simulator_rejects_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="is not a loopback address"):
        Simulator(host="0.0.0.0")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("1h30m", 5400.0), (3, 3.0), (0.25, 0.25)],
)
def test_parse_duration_accepts_prometheus_style(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 s", "-1s", "1x", True, -2, None])
def test_parse_duration_rejects_invalid(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


async def test_values_scenario_serves_bad_numbers() -> None:
    sim = Simulator.from_scenario(load_scenario(SCENARIOS / "values.yaml"))

    async with sim, aiohttp.ClientSession() as client:
        base = sim.base_url("broken-stats")
        async with client.post(
            f"{base}/api/v0/authenticate", json={"username": "admin", "password": "admin-password"}
        ) as response:
            token = await response.json()
        async with client.get(f"{base}/api/v0/system_stats", headers={"Authorization": f"Bearer {token}"}) as response:
            raw = await response.read()

    stats = json.loads(raw)
    assert b'"count": 1e400' in raw
    assert b'"total": NaN' in raw
    assert {compute["stats"]["cpu"]["percent"] for compute in stats["computes"].values()} == {"N/A"}
    assert "controller" not in stats


async def test_fleet_scenario_serves_over_http_and_https() -> None:
    sim = Simulator.from_scenario(load_scenario(SCENARIOS / "fleet.yaml"))

    async with sim, aiohttp.ClientSession() as client:
        async with client.get(f"{sim.base_url('healthy')}/api/v0/system_information") as response:
            healthy = response.status
        async with client.get(f"{sim.base_url('big')}/api/v0/system_information", ssl=False) as response:
            big = response.status
        # The booting worker is a prefix worker, so its refused phase drops the connection.
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with client.get(f"{sim.base_url('booting')}/api/v0/system_information"):
                pass
        phase = sim.boot_phase("booting")

    assert (healthy, big) == (200, 200)
    assert sim.base_url("big").startswith("https://")
    assert phase == "refused"


async def test_simulate_command_prints_urls_and_stops_on_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "two.yaml"
    scenario.write_text("workers:\n  - name: one\n  - name: two\n    own_port: true\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter.simulator.cli",
        "--scenario",
        str(scenario),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    lines = [(await asyncio.wait_for(process.stdout.readline(), 10)).decode().split() for _ in range(2)]

    async with aiohttp.ClientSession() as client:
        for _, url in lines:
            async with client.get(f"{url}/api/v0/system_information") as response:
                assert response.status == 200
    process.send_signal(signal.SIGTERM)
    returncode = await asyncio.wait_for(process.wait(), 10)

    assert [name for name, _ in lines] == ["one", "two"]
    assert lines[0][1].startswith("http://127.0.0.1:")
    assert lines[0][1].endswith("/w/one")
    assert returncode == 0


async def test_simulate_command_rejects_invalid_scenario() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter.simulator.cli",
        "--scenario",
        str(SCENARIOS / "invalid-unknown-key.yaml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 10)

    assert process.returncode == 2
    assert b"workers[0].licence_state: unknown key" in stderr


async def test_simulate_command_writes_ca_that_verifies_https(tmp_path: Path) -> None:
    import ssl

    scenario = tmp_path / "tls.yaml"
    scenario.write_text("workers:\n  - name: secure\n    own_port: true\n    tls: true\n")
    ca_file = tmp_path / "ca.pem"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter.simulator.cli",
        "--scenario",
        str(scenario),
        "--write-ca",
        str(ca_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    announcement = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
    _, url = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().split()

    context = ssl.create_default_context(cafile=str(ca_file))
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{url}/api/v0/system_information", ssl=context) as response,
    ):
        status = response.status
    process.send_signal(signal.SIGTERM)
    returncode = await asyncio.wait_for(process.wait(), 10)

    assert announcement.startswith("# CA certificate written to")
    assert url.startswith("https://127.0.0.1:")
    assert status == 200
    assert returncode == 0
