"""``cml-exporter demo``: a simulated fleet of CML workers and the exporter, on loopback, with no configuration."""

from __future__ import annotations

import asyncio
import socket

from exporter.config import (
    CacheConfig,
    Config,
    Credentials,
    ExporterSettings,
    Secret,
    TLSConfig,
    WorkerConfig,
)
from exporter.server import Exporter, serve
from exporter.simulator import BootTimeline, Fault, Simulator, WorkerProfile

# The demo workers, each with the state it shows and why it is in the demo.
DEMO_WORKERS: tuple[tuple[str, str], ...] = (
    ("healthy", "CML 2.9, licensed, labs running: available and ready"),
    ("slow-auth", "login and system_health time out, system_information says ready: available and ready"),
    ("booting", "refuses connections, then answers 502, then ready: false, then becomes ready"),
    ("unlicensed", "CML 2.10 with an unregistered licence: available, ready, cml_license_registered 0"),
    ("legacy", "CML 2.7 without populate_lab_tiles: labs come from the lab list"),
    ("unreachable", "nothing listens at its address: unavailable"),
)
DEMO_PASSWORD = "admin-password"
# Short timeouts so the demo's failing workers show their state within a few seconds.
DEMO_TIMEOUT = 2.0


def _free_port() -> int:
    """Return a loopback port with nothing listening on it, for the unreachable worker."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


def build_simulator() -> Simulator:
    simulator = Simulator(host="127.0.0.1")
    simulator.add_worker("healthy", WorkerProfile())
    simulator.add_worker("slow-auth", WorkerProfile())
    simulator.add_worker("booting", WorkerProfile(boot=BootTimeline(refused=10, bad_gateway=20, not_ready=60)))
    simulator.add_worker("unlicensed", WorkerProfile(version="2.10", licence="unregistered"))
    simulator.add_worker("legacy", WorkerProfile(version="2.7", populate_lab_tiles=False))
    return simulator


def build_config(simulator: Simulator) -> Config:
    credentials = Credentials("default", "admin", Secret(DEMO_PASSWORD))
    urls = {name: simulator.base_url(name) for name in simulator.workers}
    urls["unreachable"] = f"http://127.0.0.1:{_free_port()}"
    workers = tuple(
        WorkerConfig(
            name=name,
            url=urls[name],
            credentials=credentials,
            timeout=DEMO_TIMEOUT,
            tls=TLSConfig(),
            cache=CacheConfig(ttl=10.0, licensing_ttl=60.0),
        )
        for name, _ in DEMO_WORKERS
    )
    return Config(workers=workers, settings=ExporterSettings(default_scrape_timeout=5.0))


def _announce(listen_address: str, config: Config) -> None:
    host, _, port = listen_address.rpartition(":")
    base = f"http://{host or '127.0.0.1'}:{port}"
    print("cml-exporter demo: a simulated CML fleet and the exporter, on loopback only.")
    print(f"  metrics:       {base}/metrics")
    print(f"  one worker:    {base}/probe?target=healthy")
    print(f"  landing page:  {base}/")
    print("  workers:")
    descriptions = dict(DEMO_WORKERS)
    for worker in config.workers:
        print(f"    {worker.name:<12} {descriptions[worker.name]}")
    print("Try: curl -s " + base + "/metrics | grep -E '^cml_(up|ready|service_status)'")
    print("Press Ctrl+C to stop.", flush=True)


async def run_demo(listen_address: str) -> None:
    async with build_simulator() as simulator:
        simulator.set_fault("slow-auth", "authenticate", Fault(latency=30))
        simulator.set_fault("slow-auth", "system_health", Fault(latency=30))
        config = build_config(simulator)
        exporter = Exporter(config)
        ready = asyncio.Event()
        server = asyncio.create_task(serve(exporter, listen_address, ready))
        ready_wait = asyncio.create_task(ready.wait())
        await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            _announce(listen_address, config)
        else:
            ready_wait.cancel()
        await server
