"""The simulator as its own process, so the benchmark can measure its CPU apart from the exporter's.

Run by the harness as ``python -m bench.simulate --workers N --latency SECONDS``. It prints one JSON
line, ``{"url": CONTROL_ROOT, "workers": {NAME: BASE_URL}}``, once every worker is served, then serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal

from exporter.simulator import Fault, Simulator, WorkerProfile, generate_labs


def worker_name(index: int) -> str:
    return f"w{index:04d}"


def build_simulator(workers: int, latency: float, lab_workers: int) -> Simulator:
    """Build ``workers`` default workers under path prefixes, plus the lab-heavy pair when asked.

    The lab-heavy pair holds ``lab_workers`` labs each: ``labs-tiles`` answers populate_lab_tiles,
    ``labs-list`` answers 404 there like a controller without it.
    """
    simulator = Simulator()
    # One shared profile object, so its response bodies are encoded once for the whole fleet.
    profile = WorkerProfile()
    for index in range(1, workers + 1):
        simulator.add_worker(worker_name(index), profile)
    if lab_workers:
        heavy = WorkerProfile(labs=generate_labs(lab_workers))
        simulator.add_worker("labs-tiles", heavy)
        simulator.add_worker("labs-list", dataclasses.replace(heavy, populate_lab_tiles=False))
    if latency > 0:
        for name in simulator.workers:
            simulator.set_fault(name, "*", Fault(latency=latency))
    return simulator


async def serve(workers: int, latency: float, lab_workers: int) -> None:
    simulator = build_simulator(workers, latency, lab_workers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with simulator:
        urls = {name: simulator.base_url(name) for name in simulator.workers}
        print(json.dumps({"url": simulator.url, "workers": urls}), flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description="Serve a benchmark fleet.")
    parser.add_argument("--workers", type=int, default=10, help="default workers to serve (10)")
    parser.add_argument("--latency", type=float, default=0.0, help="delay before every answer, in seconds (0)")
    parser.add_argument(
        "--lab-workers", type=int, default=0, metavar="LABS", help="add two workers with LABS labs each (0: none)"
    )
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.workers, arguments.latency, arguments.lab_workers))


if __name__ == "__main__":
    main()
