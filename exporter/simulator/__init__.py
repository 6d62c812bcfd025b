"""A fleet of simulated CML 2.x controllers on loopback, for the exporter's tests, demo and benchmark.

async with Simulator() as sim:
    sim.add_worker("w", WorkerProfile(version="2.10"))
    sim.set_fault("w", "system_health", Fault(latency=30))
    url = sim.base_url("w")  # the exporter appends /api/v0/<path>
"""

from exporter.simulator.faults import DELETE, Fault, RawJSON
from exporter.simulator.profile import (
    BootTimeline,
    ComputeSpec,
    LabSpec,
    LinkSpec,
    NodeSpec,
    WorkerProfile,
    generate_labs,
)
from exporter.simulator.scenario import Scenario, ScenarioError, ScenarioWorker, load_scenario, parse_scenario
from exporter.simulator.server import Simulator
from exporter.simulator.worker import BOOT_PHASES, ENDPOINTS, RequestRecord

__all__ = [
    "BOOT_PHASES",
    "DELETE",
    "ENDPOINTS",
    "BootTimeline",
    "ComputeSpec",
    "Fault",
    "LabSpec",
    "LinkSpec",
    "NodeSpec",
    "RawJSON",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "ScenarioWorker",
    "Simulator",
    "WorkerProfile",
    "generate_labs",
    "load_scenario",
    "parse_scenario",
]
