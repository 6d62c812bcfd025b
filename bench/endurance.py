"""Endurance run: a flapping simulated fleet scraped by two concurrent scrapers.

Usage: python3 bench/endurance.py [--seconds 600] [--workers 8] [--seed 1]

Prints one line of figures: scrapes, errors, the slowest scrape, and open file descriptors, asyncio
tasks, client sessions and resident memory after warm-up and at the end. tests/test_failures_endurance.py
runs the same code for about 15 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.config import BreakerConfig, CacheConfig  # imported after the sys.path set-up above
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.support import ExporterUnderTest, fleet_config

SCRAPE_TIMEOUT = 2.0
FLAP_INTERVAL = 0.25
# Faults a flapping worker picks from at each switch; None is a healthy spell.
FAULTS: tuple[Fault | None, ...] = (
    None,
    None,
    Fault(status=500),
    Fault(status=503, retry_after="1"),
    Fault(status=429, retry_after="1"),
    Fault(refuse=True),
    Fault(hang=True),
    Fault(body="html"),
    Fault(body="truncated"),
    Fault(body="wrong_shape"),
    Fault(redirect=True),
    Fault(latency=0.3),
    Fault(trickle=0.01),
    Fault(status=401),
)
FAULT_ENDPOINTS = ("*", "system_information", "system_health", "system_stats", "authenticate", "populate_lab_tiles")


@dataclasses.dataclass
class Resources:
    fds: int
    tasks: int
    sessions: int
    rss_mb: float


@dataclasses.dataclass
class Report:
    scrapes: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    slowest: float = 0.0
    warm: Resources | None = None
    end: Resources | None = None

    def line(self) -> str:
        return (
            f"scrapes={self.scrapes} errors={len(self.errors)} slowest_seconds={self.slowest:.3f} "
            f"warm={self.warm} end={self.end}"
        )


def measure() -> Resources:
    gc.collect()
    sessions = sum(1 for obj in gc.get_objects() if isinstance(obj, aiohttp.ClientSession) and not obj.closed)
    with open("/proc/self/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    return Resources(
        fds=len(os.listdir("/proc/self/fd")),
        tasks=len(asyncio.all_tasks()),
        sessions=sessions,
        rss_mb=rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
    )


# Hanging and trickling faults keep a few connections and handler tasks alive at any moment, so one
# sample after warm-up and one at the end differ by chance. The warm-up figure is the highest of a few
# samples and the end figure the lowest: a leak still shows, because it raises every later sample.
SAMPLE_COUNT = 5
SAMPLE_INTERVAL = 0.2


async def _samples() -> list[Resources]:
    samples = []
    for _ in range(SAMPLE_COUNT):
        samples.append(measure())
        await asyncio.sleep(SAMPLE_INTERVAL)
    return samples


def _combine(samples: list[Resources], pick: Callable[[Iterable[float]], float]) -> Resources:
    return Resources(
        fds=int(pick(sample.fds for sample in samples)),
        tasks=int(pick(sample.tasks for sample in samples)),
        sessions=int(pick(sample.sessions for sample in samples)),
        rss_mb=pick(sample.rss_mb for sample in samples),
    )


async def _flap(sim: Simulator, names: list[str], rng: random.Random, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name in names:
            sim.clear_faults(name)
            fault = rng.choice(FAULTS)
            if fault is not None:
                sim.set_fault(name, rng.choice(FAULT_ENDPOINTS), fault)
            if rng.random() < 0.1:
                sim.expire_tokens(name)
        await asyncio.sleep(FLAP_INTERVAL)


async def _scraper(exporter: ExporterUnderTest, paths: list[str], report: Report, stop: asyncio.Event) -> None:
    index = 0
    while not stop.is_set():
        path = paths[index % len(paths)]
        index += 1
        status, body, seconds = await exporter.get(path, SCRAPE_TIMEOUT)
        report.scrapes += 1
        report.slowest = max(report.slowest, seconds)
        if status != 200:
            report.errors.append(f"{path}: HTTP {status}: {body[:200]}")
        elif seconds >= SCRAPE_TIMEOUT:
            report.errors.append(f"{path}: {seconds:.2f}s, over the {SCRAPE_TIMEOUT}s scrape timeout")


async def run(seconds: float, workers: int = 6, seed: int = 1, warm_up: float | None = None) -> Report:
    """Run the fleet for ``seconds`` and return the figures; resources are measured after ``warm_up``."""
    warm_up = seconds / 3 if warm_up is None else warm_up
    rng = random.Random(seed)
    names = [f"worker-{index:02d}" for index in range(workers)]
    sim = Simulator()
    for name in names:
        sim.add_worker(name, WorkerProfile())
    report = Report()
    stop = asyncio.Event()
    async with sim:
        config = fleet_config(
            sim,
            cache=CacheConfig(ttl=0.2, licensing_ttl=0.5),
            breaker=BreakerConfig(fail_max=2, reset_timeout=0.5, max_reset_timeout=2.0),
        )
        async with ExporterUnderTest(config) as exporter:
            paths = ["/metrics", *(f"/probe?target={name}" for name in names)]
            tasks = [
                asyncio.create_task(_flap(sim, names[1:], rng, stop)),
                asyncio.create_task(_scraper(exporter, ["/metrics"], report, stop)),
                asyncio.create_task(_scraper(exporter, paths, report, stop)),
            ]
            await asyncio.sleep(warm_up)
            report.warm = _combine(await _samples(), max)
            await asyncio.sleep(max(0.0, seconds - warm_up - 2 * SAMPLE_COUNT * SAMPLE_INTERVAL))
            report.end = _combine(await _samples(), min)
            stop.set()
            await asyncio.gather(*tasks)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the run, in seconds")
    parser.add_argument("--workers", type=int, default=8, help="simulated workers; all but the first flap")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault sequence")
    arguments = parser.parse_args()
    warnings.simplefilter("error", ResourceWarning)
    started = time.monotonic()
    report = asyncio.run(run(arguments.seconds, arguments.workers, arguments.seed))
    print(f"{report.line()} wall_seconds={time.monotonic() - started:.0f}")
    for error in report.errors[:20]:
        print("error:", error)


if __name__ == "__main__":
    main()
