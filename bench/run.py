"""Run the benchmark: start the simulator and the exporter as child processes, scrape, measure, report.

``python -m bench`` (or ``python bench/run.py``) runs every fleet size and latency, then the
comparison with the naive collector, prints Markdown tables and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

if __package__ in (None, ""):
    # Run as a script (python bench/run.py): make the repository importable like python -m bench does.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import naive
from bench.processes import Child, start_exporter, start_simulator

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
PASSWORD = "admin-password"
# Slack after a TTL before the next refresh round, so every cached result has expired when it starts.
EXPIRY_MARGIN = 0.5
MIB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    """The cases and settings of one benchmark run; the defaults are the published benchmark."""

    sizes: tuple[int, ...] = (10, 100, 1000)
    latencies: tuple[float, ...] = (0.005, 0.050)
    rounds: int = 1
    scrapers: int = 3
    cached_scrapes: int = 5
    # The exporter's default TTL; the cold and cached scrapes of 1000 workers must end within it.
    ttl: float = 15.0
    scrape_timeout: float = 30.0
    max_concurrent_workers: int = 256
    naive_labs: int = 200
    output: Path = RESULTS_DIR


@dataclass
class Scrape:
    seconds: float
    body: bytes

    @property
    def series(self) -> int:
        return sum(1 for line in self.body.splitlines() if line and not line.startswith(b"#"))

    def values(self, name: str) -> list[float]:
        """Return the values of every sample of metric ``name``."""
        prefix = name.encode() + b"{"
        return [float(line.rsplit(b" ", 1)[1]) for line in self.body.splitlines() if line.startswith(prefix)]


class Scraper:
    """Scrape the exporter like Prometheus does, and read the simulator's request counters."""

    def __init__(self, session: aiohttp.ClientSession, exporter_url: str, control_url: str, timeout: float) -> None:
        self._session = session
        self._exporter_url = exporter_url
        self._control_url = control_url
        self._headers = {SCRAPE_TIMEOUT_HEADER: str(timeout)}

    async def scrape(self, path: str = "/metrics") -> Scrape:
        started = time.monotonic()
        async with self._session.get(self._exporter_url + path, headers=self._headers) as response:
            body = await response.read()
            if response.status != 200:
                msg = f"GET {path}: HTTP {response.status}, expected 200: {body[:200]!r}"
                raise RuntimeError(msg)
        return Scrape(time.monotonic() - started, body)

    async def counts(self) -> dict[str, dict[str, int]]:
        async with self._session.get(self._control_url + "/_sim/counts") as response:
            return await response.json()  # type: ignore[no-any-return]

    async def reset_counts(self) -> None:
        async with self._session.post(self._control_url + "/_sim/reset") as response:
            response.raise_for_status()


def request_figures(counts: dict[str, dict[str, int]], workers: int) -> dict[str, Any]:
    """Summarise the simulator's counters: totals per endpoint, per worker, and the busiest worker endpoint."""
    by_endpoint: dict[str, int] = {}
    busiest = 0
    for endpoints in counts.values():
        for endpoint, count in endpoints.items():
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + count
            busiest = max(busiest, count)
    total = sum(by_endpoint.values())
    return {
        "total": total,
        "per_worker": total / workers if workers else 0.0,
        "by_endpoint": dict(sorted(by_endpoint.items())),
        "max_per_worker_endpoint": busiest,
    }


class Meter:
    """CPU seconds of the exporter and the simulator between two points in time."""

    def __init__(self, exporter: Child, simulator: Child) -> None:
        self._exporter = exporter
        self._simulator = simulator
        self._start = self._read()

    def _read(self) -> tuple[float, float]:
        return self._exporter.cpu_seconds(), self._simulator.cpu_seconds()

    def stop(self) -> dict[str, float]:
        exporter, simulator = self._read()
        return {"exporter_cpu_seconds": exporter - self._start[0], "simulator_cpu_seconds": simulator - self._start[1]}


def write_config(path: Path, urls: dict[str, str], options: Options) -> Path:
    lines = [
        "exporter:",
        f"  max_concurrent_workers: {options.max_concurrent_workers}",
        "defaults:",
        "  timeout: 5s",
        f"  cache: {{ttl: {int(options.ttl * 1000)}ms}}",
        "credentials:",
        f"  default: {{username: admin, password: {PASSWORD}}}",
        "workers:",
    ]
    lines += [f"  - {{name: {name}, url: '{url}'}}" for name, url in urls.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _workers_up(scrape: Scrape) -> int:
    return sum(1 for value in scrape.values("cml_up") if value == 1)


async def _cold(scraper: Scraper, meter: Meter, workers: int) -> tuple[Scrape, dict[str, Any]]:
    scrape = await scraper.scrape()
    figures = {
        "seconds": scrape.seconds,
        "workers_up": _workers_up(scrape),
        **meter.stop(),
        "requests": request_figures(await scraper.counts(), workers),
    }
    return scrape, figures


async def _cached(scraper: Scraper, meter: Meter, workers: int, repeats: int) -> dict[str, Any]:
    scrapes = [await scraper.scrape() for _ in range(repeats)]
    cpu = meter.stop()
    seconds = [scrape.seconds for scrape in scrapes]
    return {
        "seconds_median": statistics.median(seconds),
        "seconds_max": max(seconds),
        "workers_up": min(_workers_up(scrape) for scrape in scrapes),
        "exporter_cpu_seconds_per_scrape": cpu["exporter_cpu_seconds"] / repeats,
        "requests": request_figures(await scraper.counts(), workers),
    }


async def _refresh_round(scraper: Scraper, meter: Meter, workers: int, scrapers: int) -> dict[str, Any]:
    """Scrape with every result expired, from ``scrapers`` concurrent scrapers, as an HA pair or more would."""
    started = time.monotonic()
    scrapes = await asyncio.gather(*(scraper.scrape() for _ in range(scrapers)))
    wall = time.monotonic() - started
    cpu = meter.stop()
    return {
        "wall_seconds": wall,
        "scrape_seconds": [scrape.seconds for scrape in scrapes],
        "workers_up": min(_workers_up(scrape) for scrape in scrapes),
        **cpu,
        "requests": request_figures(await scraper.counts(), workers),
    }


async def run_fleet_case(workers: int, latency: float, options: Options, workdir: Path) -> dict[str, Any]:
    """Measure one fleet size and latency: cold, cached and refresh scrapes, CPU, memory and requests."""
    tag = f"{workers}-{latency * 1000:g}ms"
    simulator, announcement = start_simulator(workers, latency, 0, workdir / f"simulator-{tag}.log")
    exporter: Child | None = None
    try:
        config = write_config(workdir / f"config-{tag}.yaml", announcement["workers"], options)
        exporter, url = await start_exporter(config, workdir / f"exporter-{tag}.log")
        timeout = aiohttp.ClientTimeout(total=options.scrape_timeout + 30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            scraper = Scraper(session, url, announcement["url"], options.scrape_timeout)
            await scraper.reset_counts()
            cold_scrape, cold = await _cold(scraper, Meter(exporter, simulator), workers)
            expires_at = time.monotonic() + options.ttl + EXPIRY_MARGIN
            await scraper.reset_counts()
            cached = await _cached(scraper, Meter(exporter, simulator), workers, options.cached_scrapes)
            rounds = []
            for _ in range(options.rounds):
                await asyncio.sleep(max(0.0, expires_at - time.monotonic()))
                await scraper.reset_counts()
                rounds.append(await _refresh_round(scraper, Meter(exporter, simulator), workers, options.scrapers))
                expires_at = time.monotonic() + options.ttl + EXPIRY_MARGIN
        memory = {"exporter": exporter.memory(), "simulator": simulator.memory()}
    finally:
        if exporter is not None:
            exporter.stop()
        simulator.stop()
    return {
        "workers": workers,
        "latency_seconds": latency,
        "ideal_cold_seconds": 2 * latency,
        "ideal_refresh_seconds": latency,
        "series": cold_scrape.series,
        "response_bytes": len(cold_scrape.body),
        "cold": cold,
        "cached": cached,
        "refresh_rounds": rounds,
        "memory_bytes": memory,
    }


def _lab_total(scrape: Scrape) -> int:
    return int(sum(scrape.values("cml_labs")))


async def run_naive_case(latency: float, options: Options, workdir: Path) -> dict[str, Any]:
    """Compare the exporter's cold probe of one worker with ``naive_labs`` labs against the naive collector."""
    labs = options.naive_labs
    tag = f"naive-{latency * 1000:g}ms"
    simulator, announcement = start_simulator(0, latency, labs, workdir / f"simulator-{tag}.log")
    exporter: Child | None = None
    try:
        urls = announcement["workers"]
        walk = await asyncio.to_thread(naive.collect, urls["labs-tiles"], "admin", PASSWORD)
        if sum(walk.labs.values()) != labs:
            msg = f"naive collector counted {sum(walk.labs.values())} labs, expected {labs}"
            raise RuntimeError(msg)
        config = write_config(workdir / f"config-{tag}.yaml", urls, options)
        exporter, url = await start_exporter(config, workdir / f"exporter-{tag}.log")
        timeout = aiohttp.ClientTimeout(total=options.scrape_timeout + 30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            scraper = Scraper(session, url, announcement["url"], options.scrape_timeout)
            probes = {}
            for name in ("labs-tiles", "labs-list"):
                await scraper.reset_counts()
                scrape = await scraper.scrape(f"/probe?target={name}")
                if _workers_up(scrape) != 1:
                    msg = f"exporter reported worker {name} down, so the comparison would be meaningless"
                    raise RuntimeError(msg)
                if _lab_total(scrape) != labs:
                    msg = f"exporter reported {_lab_total(scrape)} labs on {name}, expected {labs}"
                    raise RuntimeError(msg)
                requests = request_figures(await scraper.counts(), 1)["total"]
                speedup = walk.seconds / scrape.seconds
                probes[name] = {"seconds": scrape.seconds, "requests": requests, "speedup": speedup}
    finally:
        if exporter is not None:
            exporter.stop()
        simulator.stop()
    return {
        "latency_seconds": latency,
        "labs": labs,
        "naive": {"seconds": walk.seconds, "requests": walk.requests},
        "exporter_with_lab_tiles": probes["labs-tiles"],
        "exporter_with_lab_list": probes["labs-list"],
    }


def machine() -> dict[str, Any]:
    """Describe the machine: CPUs, CPU model, Python and kernel, as the published table needs them."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _refresh_seconds(case: dict[str, Any]) -> float:
    return max(max(entry["scrape_seconds"]) for entry in case["refresh_rounds"])


def _min_up(case: dict[str, Any]) -> int:
    """Return the fewest workers up in any scrape of the case; below N, some figures cover fewer workers."""
    counts = [case["cold"]["workers_up"], case["cached"]["workers_up"]]
    counts += [entry["workers_up"] for entry in case["refresh_rounds"]]
    return min(counts)


def _max_per_ttl(case: dict[str, Any]) -> int:
    return max(entry["requests"]["max_per_worker_endpoint"] for entry in case["refresh_rounds"])


def check_targets(fleet: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compare the figures with the published targets; a target whose case did not run is left out."""
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, met: bool) -> None:
        targets.append({"target": name, "value": value, "limit": limit, "met": met})

    for case in fleet:
        workers, latency = case["workers"], case["latency_seconds"]
        cold = case["cold"]["seconds"]
        if workers == 100 and latency == 0.050:
            ratio = cold / case["ideal_cold_seconds"]
            add("N=100 L=50ms cold scrape / ideal", ratio, 3.0, ratio <= 3.0)
        if workers == 1000 and latency == 0.050:
            add("N=1000 L=50ms cold scrape seconds", cold, 3.0, cold < 3.0)
            cached = case["cached"]["seconds_median"]
            add("N=1000 L=50ms cached scrape seconds", cached, 0.150, cached < 0.150)
            rss = case["memory_bytes"]["exporter"]["peak_rss"] / MIB
            add("N=1000 L=50ms exporter peak RSS MiB", rss, 150.0, rss < 150.0)
        busiest = _max_per_ttl(case)
        add(f"N={workers} L={latency * 1000:g}ms requests per endpoint per worker per TTL", busiest, 1, busiest <= 1)
    for comparison in (entry for entry in comparisons if entry["labs"] == 200):
        speedup = comparison["exporter_with_lab_tiles"]["speedup"]
        name = f"{comparison['labs']} labs L={comparison['latency_seconds'] * 1000:g}ms speed-up over naive"
        add(name, speedup, 20.0, speedup >= 20)
    return targets


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def fleet_table(fleet: list[dict[str, Any]]) -> str:
    header = [
        "N", "L ms", "cold s", "ideal s", "cold/ideal", "cached ms", "refresh s", "req/worker cold",
        "req/worker/TTL", "max req/endpoint/TTL", "exp CPU s cold", "exp CPU s refresh", "exp CPU ms cached",
        "sim CPU s refresh", "exp peak RSS MiB", "series", "min up",
    ]
    lines = [_row(header), _row(["---:"] * len(header))]
    for case in fleet:
        rounds = case["refresh_rounds"]
        lines.append(
            _row(
                [
                    str(case["workers"]),
                    f"{case['latency_seconds'] * 1000:g}",
                    f"{case['cold']['seconds']:.3f}",
                    f"{case['ideal_cold_seconds']:.3f}",
                    f"{case['cold']['seconds'] / case['ideal_cold_seconds']:.1f}",
                    f"{case['cached']['seconds_median'] * 1000:.1f}",
                    f"{_refresh_seconds(case):.3f}",
                    f"{case['cold']['requests']['per_worker']:.1f}",
                    f"{max(entry['requests']['per_worker'] for entry in rounds):.1f}",
                    str(_max_per_ttl(case)),
                    f"{case['cold']['exporter_cpu_seconds']:.2f}",
                    f"{statistics.mean(entry['exporter_cpu_seconds'] for entry in rounds):.2f}",
                    f"{case['cached']['exporter_cpu_seconds_per_scrape'] * 1000:.0f}",
                    f"{statistics.mean(entry['simulator_cpu_seconds'] for entry in rounds):.2f}",
                    f"{case['memory_bytes']['exporter']['peak_rss'] / MIB:.0f}",
                    str(case["series"]),
                    str(_min_up(case)),
                ]
            )
        )
    return "\n".join(lines)


def naive_table(comparisons: list[dict[str, Any]]) -> str:
    header = [
        "labs", "L ms", "naive s", "naive requests", "exporter s (lab tiles)", "requests", "speed-up",
        "exporter s (lab list)", "requests", "speed-up",
    ]
    lines = [_row(header), _row(["---:"] * len(header))]
    for comparison in comparisons:
        tiles, listing = comparison["exporter_with_lab_tiles"], comparison["exporter_with_lab_list"]
        lines.append(
            _row(
                [
                    str(comparison["labs"]),
                    f"{comparison['latency_seconds'] * 1000:g}",
                    f"{comparison['naive']['seconds']:.3f}",
                    str(comparison["naive"]["requests"]),
                    f"{tiles['seconds']:.3f}",
                    str(tiles["requests"]),
                    f"{tiles['speedup']:.0f}x",
                    f"{listing['seconds']:.3f}",
                    str(listing["requests"]),
                    f"{listing['speedup']:.1f}x",
                ]
            )
        )
    return "\n".join(lines)


def targets_table(targets: list[dict[str, Any]]) -> str:
    lines = [_row(["target", "value", "limit", "met"]), _row(["---", "---:", "---:", "---"])]
    for target in targets:
        met = "yes" if target["met"] else "**no**"
        lines.append(_row([target["target"], f"{target['value']:.3f}", f"{target['limit']:g}", met]))
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    info = results["machine"]
    return "\n\n".join(
        [
            f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), Python {info['python']}, Linux {info['kernel']}; "
            f"TTL {results['options']['ttl']:g}s, {results['options']['scrapers']} concurrent scrapers, "
            f"max_concurrent_workers {results['options']['max_concurrent_workers']}",
            fleet_table(results["fleet"]),
            naive_table(results["naive"]),
            targets_table(results["targets"]),
        ]
    )


async def run(options: Options) -> dict[str, Any]:
    """Run every case and return the results document, targets included."""
    fleet = []
    comparisons = []
    with tempfile.TemporaryDirectory(prefix="cml-bench-") as directory:
        workdir = Path(directory)
        for workers in options.sizes:
            for latency in options.latencies:
                print(f"fleet: N={workers} L={latency * 1000:g}ms ...", file=sys.stderr, flush=True)
                fleet.append(await run_fleet_case(workers, latency, options, workdir))
        if options.naive_labs:
            for latency in options.latencies:
                print(f"naive: {options.naive_labs} labs L={latency * 1000:g}ms ...", file=sys.stderr, flush=True)
                comparisons.append(await run_naive_case(latency, options, workdir))
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "options": {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(options).items()},
        "fleet": fleet,
        "naive": comparisons,
        "targets": check_targets(fleet, comparisons),
    }


def write_results(results: dict[str, Any], directory: Path) -> Path:
    """Write the results as a timestamped JSON file and as latest.json; return the timestamped path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def _numbers(text: str, kind: type) -> tuple[Any, ...]:
    return tuple(kind(part) for part in text.split(",") if part)


def parse_options(argv: list[str]) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", default="10,100,1000", help="fleet sizes, comma-separated (10,100,1000)")
    parser.add_argument("--latency-ms", default="5,50", help="latency per request, ms (5,50)")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="refresh rounds per case (1)")
    parser.add_argument("--scrapers", type=int, default=defaults.scrapers, help="concurrent scrapers per round (3)")
    parser.add_argument("--cached-scrapes", type=int, default=defaults.cached_scrapes, help="cached scrapes (5)")
    parser.add_argument("--ttl", type=float, default=defaults.ttl, help="cache TTL given to the exporter, seconds (15)")
    parser.add_argument(
        "--max-concurrent-workers", type=int, default=defaults.max_concurrent_workers, help="exporter setting (256)"
    )
    parser.add_argument(
        "--naive-labs", type=int, default=defaults.naive_labs, help="labs for the naive comparison, 0 skips it (200)"
    )
    parser.add_argument("--output", type=Path, default=defaults.output, help="directory for the JSON results")
    arguments = parser.parse_args(argv)
    return Options(
        sizes=_numbers(arguments.workers, int),
        latencies=tuple(value / 1000 for value in _numbers(arguments.latency_ms, float)),
        rounds=arguments.rounds,
        scrapers=arguments.scrapers,
        cached_scrapes=arguments.cached_scrapes,
        ttl=arguments.ttl,
        max_concurrent_workers=arguments.max_concurrent_workers,
        naive_labs=arguments.naive_labs,
        output=arguments.output,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(run(options))
    path = write_results(results, options.output)
    print(report(results))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
