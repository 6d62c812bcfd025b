"""The fleet: every configured worker, the running configuration, and the scrape deadline logic."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from exporter.config import Config, ExporterSettings
from exporter.probe import start_refresh
from exporter.snapshot import WorkerSnapshot
from exporter.worker import Worker

log = logging.getLogger(__name__)

# Maximum scrape timeout header honoured; larger, negative or non-numeric values fall back to the
# configured default_scrape_timeout.
MAX_SCRAPE_TIMEOUT_SECONDS = 3600.0


class Fleet:
    """Own the workers of the running configuration and serve scrapes from their cached results."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.workers: dict[str, Worker] = {}
        self._limit = asyncio.Semaphore(config.settings.max_concurrent_workers)
        # Set at shutdown, so scrapes still waiting for refreshes get their response at once.
        self._stopping = asyncio.Event()
        self.reload_successful = True
        self.reload_success_at: float | None = time.time()

    @property
    def settings(self) -> ExporterSettings:
        return self.config.settings

    async def start(self) -> None:
        for worker_config in self.config.workers:
            worker = Worker(worker_config, self.config.settings)
            await worker.start()
            self.workers[worker.name] = worker

    def stop_waiting(self) -> None:
        """Release scrapes that wait for refreshes now, so they respond with the latest completed results."""
        self._stopping.set()

    async def close(self) -> None:
        self.stop_waiting()
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(worker.close() for worker in workers))

    async def apply(self, config: Config) -> None:
        """Swap in a new configuration: removed or changed workers lose all their state at once."""
        old = self.workers
        new: dict[str, Worker] = {}
        started: list[Worker] = []
        try:
            for worker_config in config.workers:
                current = old.get(worker_config.name)
                if current is not None and current.config == worker_config and current.settings == config.settings:
                    new[worker_config.name] = current
                    continue
                worker = Worker(worker_config, config.settings)
                await worker.start()
                started.append(worker)
                new[worker_config.name] = worker
        except BaseException:
            # Nothing has been swapped yet: the running workers stay, the half-built ones go.
            await asyncio.gather(*(worker.close() for worker in started))
            raise
        # The swap is one assignment with no await before it, so every scrape sees either the old
        # set or the new one; a retired worker's series, breakers, token and session go together.
        retired = [worker for name, worker in old.items() if new.get(name) is not worker]
        if config.settings.max_concurrent_workers != self.config.settings.max_concurrent_workers:
            self._limit = asyncio.Semaphore(config.settings.max_concurrent_workers)
        self.workers = new
        self.config = config
        await asyncio.gather(*(worker.close() for worker in retired))
        log.info(
            "configuration applied",
            extra={"workers": len(new), "added": len(set(new) - set(old)), "removed": len(set(old) - set(new))},
        )

    def scrape_timeout(self, header: str | None) -> float:
        """Seconds a scrape may take: Prometheus's scrape timeout header minus the offset, else the default."""
        settings = self.config.settings
        timeout = settings.default_scrape_timeout
        if header:
            try:
                value = float(header)
            except ValueError:
                value = math.nan
            # nan, inf and absurd values would turn the deadline off; Prometheus never sends them.
            if math.isfinite(value) and 0 < value <= MAX_SCRAPE_TIMEOUT_SECONDS:
                timeout = value - settings.scrape_timeout_offset
            else:
                log.debug("ignoring invalid scrape timeout header", extra={"value": header[:32]})
        return max(timeout, 0.05)

    async def collect(self, names: list[str], wait_seconds: float) -> list[WorkerSnapshot]:
        """Refresh what is due for the named workers, wait at most ``wait_seconds``, and snapshot them.

        Refreshes still running at the deadline go on in the background; the scrape is answered with the
        latest completed results.
        """
        workers = [self.workers[name] for name in names if name in self.workers]
        tasks = {task for worker in workers if (task := start_refresh(worker, self._limit)) is not None}
        if tasks and not self._stopping.is_set():
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait([asyncio.gather(*tasks, return_exceptions=True), stopping], timeout=wait_seconds,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
        return [worker.snapshot() for worker in workers]
