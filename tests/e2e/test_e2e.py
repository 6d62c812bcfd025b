"""End to end: simulated CML workers, the exporter, Prometheus with the project's rules, Alertmanager.

The test runs once per scrape mode: fleet (/metrics), multi-target with file_sd and multi-target
with the exporter's /sd endpoint (both /probe, relabelled as in deploy/prometheus/). It checks that
every dashboard query returns data for the workers that have it, that every rule evaluates, and that
the stuck worker's alert reaches the webhook while the alerts it inhibits do not.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from e2e_stack import (
    HOST,
    PrometheusAPI,
    Stack,
    Webhook,
    alertmanager_config,
    exporter_command,
    free_port,
    prometheus_config,
    shortened_rules,
    substitute,
    wait_until_ready,
    write_yaml,
)

from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.conftest import require_binary

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
WORKERS = ("healthy", "stuck", "booting", "unlicensed", "breaker")
JOBS = {"fleet": "cml-exporter", "multi-target": "cml-workers", "http-sd": "cml-workers"}

# The workers that must have each series, from which endpoints succeed on each worker: "stuck"
# refuses every connection, "booting" serves the API with ready: false, "unlicensed" has an
# unregistered licence and "breaker" answers 503 to system_stats. Series not listed must exist for
# every worker.
SYSTEM_STATS_WORKERS = {"healthy", "unlicensed"}
REACHABLE_WORKERS = {"healthy", "booting", "unlicensed", "breaker"}
LICENSED_WORKERS = {"healthy", "breaker"}
REQUIRED_WORKERS: dict[str, set[str]] = {
    "cml_version_info": REACHABLE_WORKERS,
    "cml_health_valid": REACHABLE_WORKERS - {"booting"},
    "cml_controller_valid": REACHABLE_WORKERS - {"booting"},
    "cml_licensed": REACHABLE_WORKERS - {"booting"},
    "cml_license_info": REACHABLE_WORKERS - {"booting"},
    "cml_license_registered": REACHABLE_WORKERS - {"booting"},
    "cml_license_in_compliance": REACHABLE_WORKERS - {"booting"},
    "cml_license_registration_expiry_timestamp_seconds": LICENSED_WORKERS,
    "cml_license_authorization_expiry_timestamp_seconds": LICENSED_WORKERS,
    "cml_license_feature_in_use": REACHABLE_WORKERS - {"booting"},
    "cml_license_feature_limit": REACHABLE_WORKERS - {"booting"},
    "cml_labs": REACHABLE_WORKERS - {"booting"},
    "cml_nodes": REACHABLE_WORKERS - {"booting"},
    "cml_running_nodes": SYSTEM_STATS_WORKERS,
    "cml_compute_info": SYSTEM_STATS_WORKERS,
    "cml_compute_valid": SYSTEM_STATS_WORKERS,
    "cml_compute_admission_state": SYSTEM_STATS_WORKERS,
    "cml_compute_cpu_usage_ratio": SYSTEM_STATS_WORKERS,
    "cml_compute_cpus": SYSTEM_STATS_WORKERS,
    "cml_compute_memory_used_bytes": SYSTEM_STATS_WORKERS,
    "cml_compute_memory_total_bytes": SYSTEM_STATS_WORKERS,
    "cml_compute_disk_used_bytes": SYSTEM_STATS_WORKERS,
    "cml_compute_disk_total_bytes": SYSTEM_STATS_WORKERS,
    "cml_compute_running_nodes": SYSTEM_STATS_WORKERS,
    "cml_endpoint_last_success_timestamp_seconds": REACHABLE_WORKERS,
    "cml_endpoint_requests_total": REACHABLE_WORKERS,
    "cml_endpoint_failures_total": {"stuck", "breaker"},
    # Firing alerts: the workers of the alerts that DELIVERED and INHIBITED below list.
    "ALERTS": {"stuck", "booting", "unlicensed"},
}

# Alerts the webhook must receive, and alerts that fire in Prometheus but that Alertmanager inhibits.
DELIVERED = [
    {"alertname": "CmlWorkerStuckUnavailable", "worker": "stuck", "severity": "critical"},
    {"alertname": "CmlWorkerStuckNotReady", "worker": "booting", "severity": "critical"},
    {"alertname": "CmlLicenseNotRegistered", "worker": "unlicensed", "severity": "warning"},
]
INHIBITED = [
    {"alertname": "CmlWorkerUnavailable", "worker": "stuck"},
    {"alertname": "CmlWorkerNotReady", "worker": "booting"},
]
ALERT_TIMEOUT = 45.0


@dataclass
class Query:
    board: str
    where: str
    expr: str


def dashboard_queries(board_file: str) -> list[Query]:
    board = json.loads((DASHBOARDS / board_file).read_text(encoding="utf-8"))
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} target {target['refId']}"
            queries.append(Query(board_file, where, target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            selector, label = variable["query"]["query"].removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
            expr = f"group by ({label.strip()}) ({selector})"
            queries.append(Query(board_file, f"variable {variable['name']}", expr))
    return queries


def required_workers(expr: str) -> set[str]:
    """Return the workers that must appear in a query's result: those that have all its series."""
    workers = set(WORKERS)
    for metric, required in REQUIRED_WORKERS.items():
        if f"{metric}{{" in expr or f"{metric}[" in expr:
            workers &= required
    return workers


async def wait_for(
    check: Callable[[], Awaitable[bool]], seconds: float, what: str, diagnostics: Callable[[], str]
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"timed out after {seconds} s waiting for {what}\n{diagnostics()}")


def profile(licence: str = "registered") -> WorkerProfile:
    """Return a worker profile whose licence dates lie a year ahead, so no expiry alert fires."""
    expires = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 365 * 86400))
    return WorkerProfile(licence=licence, registration_expires=expires, authorization_expires=expires)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator()
    sim.add_worker("healthy", profile())
    sim.add_worker("stuck", profile(), own_port=True)
    sim.add_worker("booting", profile())
    sim.add_worker("unlicensed", profile("unregistered"))
    sim.add_worker("breaker", profile())
    await sim.start()
    try:
        sim.set_boot("stuck", "refused")
        sim.set_boot("booting", "not_ready")
        sim.set_fault("breaker", "system_stats", Fault(status=503))
        yield sim
    finally:
        await sim.stop()


def exporter_config(sim: Simulator) -> dict[str, Any]:
    return {
        # The 1 s cache TTL lets each 1 s scrape refresh the workers. The breaker opens after two
        # failures and then stays open for the whole test.
        "defaults": {
            "timeout": "2s",
            "cache": {"ttl": "1s", "licensing_ttl": "1s"},
            "breaker": {"fail_max": 2, "reset_timeout": "5m", "max_reset_timeout": "5m"},
        },
        "credentials": {"default": {"username": "admin", "password": "admin-password"}},
        "workers": [{"name": name, "url": sim.base_url(name)} for name in WORKERS],
    }


async def start_stack(
    stack: Stack, session: aiohttp.ClientSession, sim: Simulator, mode: str
) -> tuple[PrometheusAPI, str, Webhook]:
    """Start the exporter, the webhook, Alertmanager and Prometheus; return the APIs the test reads."""
    prometheus = require_binary("prometheus")
    alertmanager = require_binary("prometheus-alertmanager")
    folder = stack.folder

    exporter_address = f"{HOST}:{free_port()}"
    config_file = write_yaml(folder / "exporter.yml", exporter_config(sim))
    exporter = stack.start(
        "exporter",
        [*exporter_command(), f"--config.file={config_file}", f"--web.listen-address={exporter_address}"],
    )

    webhook, webhook_url = await stack.serve_webhook()
    alertmanager_address = f"{HOST}:{free_port()}"
    am_config = write_yaml(folder / "alertmanager.yml", alertmanager_config(webhook_url))
    am_process = stack.start(
        "alertmanager",
        [
            alertmanager,
            f"--config.file={am_config}",
            f"--web.listen-address={alertmanager_address}",
            "--cluster.listen-address=",
            f"--storage.path={folder / 'alertmanager-data'}",
        ],
    )

    rules = write_yaml(folder / "rules.yml", shortened_rules())
    workers_file = folder / "workers.json"
    workers_file.write_text(json.dumps([{"targets": list(WORKERS)}]), encoding="utf-8")
    config = prometheus_config(mode, exporter_address, alertmanager_address, rules, workers_file)
    prometheus_address = f"{HOST}:{free_port()}"
    prometheus_process = stack.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={write_yaml(folder / 'prometheus.yml', config)}",
            f"--storage.tsdb.path={folder / 'prometheus-data'}",
            f"--web.listen-address={prometheus_address}",
        ],
    )

    await wait_until_ready(session, f"http://{exporter_address}/-/healthy", exporter)
    await wait_until_ready(session, f"http://{alertmanager_address}/-/ready", am_process)
    await wait_until_ready(session, f"http://{prometheus_address}/-/ready", prometheus_process)
    return PrometheusAPI(session, f"http://{prometheus_address}"), f"http://{alertmanager_address}", webhook


async def check_dashboard_queries(api: PrometheusAPI, job: str) -> list[str]:
    """Run every dashboard query and return a message for each one without the data it should have."""
    problems = []
    fleet_values = {"datasource": "prometheus", "job": job, "worker": ".*", "exporter_job": "cml-exporter",
                    "__rate_interval": "1m", "runbook_url": ""}
    for query in dashboard_queries("cml-fleet.json"):
        result = await api.query(substitute(query.expr, fleet_values))
        problems += result_problems(query, result, required_workers(query.expr), "")
    for query in dashboard_queries("cml-worker.json"):
        workers = required_workers(query.expr) if "$worker" in query.expr else {"healthy"}
        for worker in sorted(workers):
            values = {**fleet_values, "worker": worker}
            result = await api.query(substitute(query.expr, values))
            problems += result_problems(query, result, {worker}, worker)
    return problems


def result_problems(query: Query, result: list[dict[str, Any]], workers: set[str], worker: str) -> list[str]:
    where = f"{query.board} {query.where}" + (f" with worker={worker}" if worker else "")
    if not result:
        return [f"{where}: no data for {query.expr}"]
    returned = {series["metric"].get("worker") for series in result}
    if returned == {None} or worker:
        return []
    missing = workers - returned
    return [f"{where}: no data for workers {sorted(missing)}"] if missing else []


async def received_all(webhook: Webhook) -> bool:
    return all(webhook.received(**expected) for expected in DELIVERED)


@pytest.mark.parametrize("mode", ["fleet", "multi-target", "http-sd"])
async def test_stack_serves_dashboards_and_alerts(mode: str, simulator: Simulator, tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await run_scenario(stack, session, simulator, mode)
    finally:
        await stack.close()


async def run_scenario(stack: Stack, session: aiohttp.ClientSession, sim: Simulator, mode: str) -> None:
    api, alertmanager_url, webhook = await start_stack(stack, session, sim, mode)
    job = JOBS[mode]

    async def delivered() -> bool:
        return await received_all(webhook)

    await wait_for(delivered, ALERT_TIMEOUT, f"alerts {DELIVERED} at the webhook", stack.diagnostics)
    # Alertmanager flushes a group every second (group_interval), so an inhibited alert that leaked
    # would have arrived by now.
    await asyncio.sleep(3)

    for expected in DELIVERED:
        assert webhook.received(**expected), expected
    for inhibited in INHIBITED:
        labels = ", ".join(f'{key}="{value}"' for key, value in inhibited.items())
        firing = await api.query(f'ALERTS{{{labels}, alertstate="firing"}}')
        assert firing, f"{inhibited} should fire in Prometheus"
        assert not webhook.received(**inhibited), f"{inhibited} reached the webhook although inhibited"
    assert not [alert for alert in webhook.alerts if alert["labels"].get("worker") == "healthy"]

    async with api.session.get(f"{alertmanager_url}/api/v2/alerts") as response:
        am_alerts = await response.json()
    for inhibited in INHIBITED:
        matching = [a for a in am_alerts if all(a["labels"].get(k) == v for k, v in inhibited.items())]
        assert matching, f"{inhibited} is not in Alertmanager"
        assert matching[0]["status"]["inhibitedBy"], f"{inhibited} is not inhibited"

    rules = await api.rules()
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert rules
    assert not unhealthy

    targets = await api.get("/api/v1/targets")
    up_jobs = {(target["labels"]["job"], target["labels"]["instance"]) for target in targets["activeTargets"]}
    if mode != "fleet":
        assert {("cml-workers", name) for name in WORKERS} <= up_jobs

    problems = await check_dashboard_queries(api, job)
    assert not problems, "\n".join(problems)

    # The breaker of system_stats on "breaker" is open, so the worker receives no more requests there.
    open_state = await api.query(
        f'max(cml_endpoint_breaker_state{{job="{job}", worker="breaker", endpoint="system_stats", state="open"}})'
    )
    assert open_state[0]["value"][1] == "1"
    sent = sim.count("breaker", "system_stats")
    await asyncio.sleep(3)
    assert sim.count("breaker", "system_stats") == sent
    assert sim.count("healthy", "system_information") > sent


def test_generated_configs_are_valid(tmp_path: Path) -> None:
    """The configurations the e2e test writes pass promtool and amtool."""
    promtool = require_binary("promtool")
    amtool = require_binary("amtool")
    rules = write_yaml(tmp_path / "rules.yml", shortened_rules())
    workers_file = tmp_path / "workers.json"
    workers_file.write_text("[]", encoding="utf-8")
    for mode in JOBS:
        config = write_yaml(tmp_path / f"{mode}.yml",
                            prometheus_config(mode, "127.0.0.1:9", "127.0.0.1:9", rules, workers_file))
        result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    am = write_yaml(tmp_path / "am.yml", alertmanager_config("http://127.0.0.1:9/alerts"))
    result = subprocess.run([amtool, "check-config", str(am)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(rules.read_text())["groups"]
