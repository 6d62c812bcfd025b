"""``cml-exporter simulate``: serve a scenario file's fleet until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from exporter.simulator.scenario import ScenarioError, load_scenario
from exporter.simulator.server import Simulator


async def serve_scenario(path: str, ca_file: str | None = None) -> None:
    """Start the scenario's fleet, print one ``NAME URL`` line per worker, and serve until a stop signal.

    Raises:
        ScenarioError: when the scenario file is invalid.
    """
    simulator = Simulator.from_scenario(load_scenario(path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with simulator:
            if ca_file is not None:
                # The CA that signed the HTTPS workers' certificates, for a configuration's tls.ca_file.
                await asyncio.to_thread(Path(ca_file).write_bytes, simulator.ca_cert_pem)
                print(f"# CA certificate written to {ca_file}", flush=True)
            for name in simulator.workers:
                print(f"{name} {simulator.base_url(name)}", flush=True)
            print(f"# control endpoint: {simulator.url}/_sim/counts", flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main_simulate(argv: list[str]) -> int:
    """Run ``simulate --scenario FILE``; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="cml-exporter simulate", description="Serve a simulated fleet of CML controllers on loopback."
    )
    parser.add_argument("--scenario", required=True, metavar="FILE", help="scenario YAML file to serve")
    parser.add_argument(
        "--write-ca", dest="ca_file", metavar="FILE", help="write the CA certificate of the HTTPS workers to FILE"
    )
    arguments = parser.parse_args(argv)
    try:
        asyncio.run(serve_scenario(arguments.scenario, arguments.ca_file))
    except ScenarioError as error:
        print(f"cml-exporter simulate: invalid scenario {arguments.scenario}:\n{error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cml-exporter simulate: cannot listen: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main_simulate(sys.argv[1:]))
