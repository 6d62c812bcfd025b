"""Test support: run the real exporter over real sockets in front of the simulator, and read its output."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import (
    BreakerConfig,
    CacheConfig,
    CollectConfig,
    Config,
    Credentials,
    ExporterSettings,
    Secret,
    TLSConfig,
    WorkerConfig,
)
from exporter.server import Exporter, make_app
from exporter.simulator import Simulator

PASSWORD = "admin-password"


def worker_config(name: str, url: str, **overrides: Any) -> WorkerConfig:
    """A worker configuration with short test timings; keyword arguments override any field."""
    values: dict[str, Any] = {
        "name": name,
        "url": url,
        "credentials": Credentials("default", "admin", Secret(PASSWORD)),
        "timeout": 1.0,
        "tls": TLSConfig(),
        "cache": CacheConfig(ttl=15.0, licensing_ttl=300.0),
        "breaker": BreakerConfig(fail_max=3, reset_timeout=30.0, max_reset_timeout=300.0),
        "collect": CollectConfig(),
    }
    values.update(overrides)
    return WorkerConfig(**values)


def fleet_config(simulator: Simulator, names: Iterable[str] | None = None, **overrides: Any) -> Config:
    """A configuration with one worker per simulator worker (or the given names)."""
    settings = overrides.pop("settings", ExporterSettings(default_scrape_timeout=5.0))
    chosen = list(names) if names is not None else simulator.workers
    workers = tuple(worker_config(name, simulator.base_url(name), **overrides) for name in chosen)
    return Config(workers=workers, settings=settings)


class ExporterUnderTest:
    """The exporter served on a real loopback port; ``get`` scrapes it like Prometheus does."""

    def __init__(self, config: Config, config_file: str | None = None) -> None:
        self.exporter = Exporter(config, config_file)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> ExporterUnderTest:
        await self.exporter.start()
        self._runner = web.AppRunner(make_app(self.exporter), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.exporter.close()

    async def __aenter__(self) -> ExporterUnderTest:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def get(self, path: str, scrape_timeout: float | None = None, method: str = "GET") -> tuple[int, str, float]:
        """Request ``path``; return the status, the body and the seconds it took."""
        assert self._session is not None
        headers = {}
        if scrape_timeout is not None:
            headers["X-Prometheus-Scrape-Timeout-Seconds"] = str(scrape_timeout)
        started = time.monotonic()
        async with self._session.request(method, self.url + path, headers=headers) as response:
            body = await response.text()
            return response.status, body, time.monotonic() - started

    async def scrape(self, path: str = "/metrics", scrape_timeout: float | None = None) -> Samples:
        status, body, _ = await self.get(path, scrape_timeout)
        assert status == 200, body
        return Samples(body)


class Samples:
    """Parsed exposition text, looked up by metric name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.append((sample.name, dict(sample.labels), sample.value))

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the one sample matching name and labels, or None when there is none."""
        matches = [
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        ]
        assert len(matches) <= 1, f"{name}{labels} matches {len(matches)} samples"
        return matches[0] if matches else None

    def all(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (sample_labels, value)
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        ]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def status(self, worker: str) -> str:
        on = [labels["status"] for labels, value in self.all("cml_service_status", worker=worker) if value == 1]
        assert len(on) == 1, f"worker {worker} has statuses {on}"
        return on[0]

    def is_nan_free(self) -> bool:
        return all(not math.isnan(value) for _, _, value in self.samples)


def replace_worker(config: Config, name: str, **changes: Any) -> Config:
    workers = tuple(dataclasses.replace(w, **changes) if w.name == name else w for w in config.workers)
    return dataclasses.replace(config, workers=workers)
