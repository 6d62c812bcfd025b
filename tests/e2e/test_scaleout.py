"""Scale-out end to end: two exporter replicas share a simulated fleet through Prometheus's hashmod sharding.

Prometheus runs deploy/prometheus/prometheus.sharded.yml with only the addresses and intervals
rewritten. It discovers the workers from one replica's /sd, sends each worker's /probe to the
replica of its shard, and scrapes each replica's own metrics with /metrics?scope=exporter. The test
checks that every worker is probed by exactly one replica, the one its hash names, and that
queries see the whole fleet.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from e2e_stack import PrometheusAPI, Stack, free_port, wait_until_ready, write_yaml

from exporter.config import CacheConfig, ExporterSettings
from exporter.simulator import Simulator, WorkerProfile
from tests.conftest import require_binary
from tests.support import ExporterUnderTest, fleet_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHARDED_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.sharded.yml"
WORKERS = tuple(f"cml-{index:02d}" for index in range(8))
REPLICAS = 2
# Long enough that a worker probed twice within the test means two replicas probed it.
CACHE = CacheConfig(ttl=120.0, licensing_ttl=300.0)


def shard_of(name: str) -> int:
    """The shard Prometheus's hashmod relabelling assigns: the md5 digest's last 8 bytes, modulo REPLICAS."""
    digest = hashlib.md5(name.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % REPLICAS


def sharded_config(replicas: list[str]) -> dict[str, Any]:
    """Load the sharded example and point its discovery, shards and exporter job at the test's replicas."""
    config = yaml.safe_load(SHARDED_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
    config.pop("rule_files", None)
    config.pop("alerting", None)
    for job in config["scrape_configs"]:
        job["scrape_timeout"] = "1s"
        for http_sd in job.get("http_sd_configs", []):
            http_sd.update({"url": f"http://{replicas[0]}/sd", "refresh_interval": "1s"})
        for relabel in job.get("relabel_configs", []):
            if relabel.get("action") == "hashmod":
                assert relabel["modulus"] == REPLICAS
            if relabel.get("target_label") == "__address__":
                relabel["replacement"] = replicas[int(relabel["regex"])]
        for static in job.get("static_configs", []):
            assert len(static["targets"]) == REPLICAS
            static["targets"] = list(replicas)
    return config


async def wait_for_fleet(prometheus: PrometheusAPI, stack: Stack, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await prometheus.query('count(cml_up{job="cml-workers"} == 1)')
        if result and float(result[0]["value"][1]) == len(WORKERS):
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"Prometheus did not see every worker up within {seconds} s:\n{stack.diagnostics()}")


async def test_each_worker_probed_by_exactly_one_replica(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    assert {shard_of(name) for name in WORKERS} == set(range(REPLICAS)), "choose names that fill every shard"
    sim = Simulator()
    for name in WORKERS:
        sim.add_worker(name, WorkerProfile())
    stack = Stack(tmp_path)
    async with sim:
        config = fleet_config(sim, cache=CACHE, settings=ExporterSettings(default_scrape_timeout=5.0))
        replicas = [await ExporterUnderTest(config).start() for _ in range(REPLICAS)]
        try:
            addresses = [urlsplit(replica.url).netloc for replica in replicas]
            config_file = write_yaml(tmp_path / "prometheus.yml", sharded_config(addresses))
            port = free_port()
            process = stack.start("prometheus", [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ])
            async with aiohttp.ClientSession() as session:
                base_url = f"http://127.0.0.1:{port}"
                await wait_until_ready(session, f"{base_url}/-/ready", process)
                prometheus = PrometheusAPI(session, base_url)
                await wait_for_fleet(prometheus, stack)

                worker_series = await prometheus.query('cml_up{job="cml-workers"}')
                exporter_up = await prometheus.query('up{job="cml-exporter"}')
                exporter_workers = await prometheus.query('cml_exporter_workers{job="cml-exporter"}')
                worker_series_from_exporter_job = await prometheus.query('cml_up{job="cml-exporter"}')
                targets = await prometheus.get("/api/v1/targets", state="active")
            probed_by = {
                name: [index for index, replica in enumerate(replicas) if has_probed(replica, name)]
                for name in WORKERS
            }
            requests = {name: sim.count(name, "system_information") for name in WORKERS}
            logins = {name: sim.count(name, "authenticate") for name in WORKERS}
        finally:
            await stack.close()
            for replica in replicas:
                await replica.stop()

    assert {series["metric"]["instance"] for series in worker_series} == set(WORKERS)
    assert {series["metric"]["worker"] for series in worker_series} == set(WORKERS)
    assert [float(series["value"][1]) for series in exporter_up] == [1.0] * REPLICAS
    assert [float(series["value"][1]) for series in exporter_workers] == [len(WORKERS)] * REPLICAS
    assert worker_series_from_exporter_job == [], "scope=exporter must carry no worker series"
    scrape_urls = {
        target["labels"]["instance"]: urlsplit(target["scrapeUrl"]).netloc
        for target in targets["activeTargets"]
        if target["labels"]["job"] == "cml-workers"
    }
    assert scrape_urls == {name: addresses[shard_of(name)] for name in WORKERS}
    assert probed_by == {name: [shard_of(name)] for name in WORKERS}
    assert requests == dict.fromkeys(WORKERS, 1), "each worker must be probed once, by its own replica"
    assert logins == dict.fromkeys(WORKERS, 1)


def has_probed(replica: ExporterUnderTest, name: str) -> bool:
    """Whether ``replica`` contains a result of ``name``'s system_information endpoint."""
    snapshot = replica.exporter.fleet.workers[name].snapshot()
    return snapshot.endpoints["system_information"].attempt is not None
