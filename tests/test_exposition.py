"""The fast text renderer must write exactly what prometheus_client's generate_latest writes."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.collector import worker_families
from exporter.config import CollectConfig
from exporter.exposition import WorkerRenderer, render
from exporter.simulator import Fault, LabSpec, Simulator, WorkerProfile
from exporter.snapshot import WorkerSnapshot
from tests.support import ExporterUnderTest, fleet_config, replace_worker


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _reference(snapshots: list[WorkerSnapshot]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(worker_families(snapshots)))
    return generate_latest(registry)


def _snapshots(exporter: ExporterUnderTest) -> list[WorkerSnapshot]:
    return [worker.snapshot() for worker in exporter.exporter.fleet.workers.values()]


async def test_renderer_matches_generate_latest() -> None:
    owner = 'o"w\\ner'
    lab = LabSpec(title="quoted", owner_username=owner, state="STARTED", nodes=("BOOTED", "QUEUED"))
    sim = Simulator()
    sim.add_worker("odd-labels", WorkerProfile(labs=[lab]))
    sim.add_worker("old", WorkerProfile(version="2.7", populate_lab_tiles=False))
    async with sim:
        sim.set_fault("old", "system_stats", Fault(status=503))
        config = replace_worker(fleet_config(sim), "odd-labels", collect=CollectConfig(per_owner=True))
        async with ExporterUnderTest(config) as exporter:
            await exporter.get("/metrics")
            snapshots = _snapshots(exporter)

            text = WorkerRenderer().render(snapshots).encode()
            plain = render(worker_families(snapshots))

    assert text == _reference(snapshots)
    assert plain == _reference(snapshots)
    assert b'owner="o\\"w\\\\ner"' in text


async def test_renderer_renders_again_after_change(simulator: Simulator) -> None:
    renderer = WorkerRenderer()
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        await exporter.get("/metrics")
        first = _snapshots(exporter)
        before = renderer.render(first)
        simulator.set_fault("healthy", "*", Fault(status=500))
        worker = exporter.exporter.fleet.workers["healthy"]
        worker.record_success("system_health", None, 0.5)

        second = _snapshots(exporter)
        after = renderer.render(second)

    assert before.encode() == _reference(first)
    assert after.encode() == _reference(second)
    assert after != before


async def test_unchanged_fleet_reuses_rendered_output(simulator: Simulator) -> None:
    renderer = WorkerRenderer()
    async with ExporterUnderTest(fleet_config(simulator)) as exporter:
        await exporter.get("/metrics")
        snapshots = _snapshots(exporter)

        first = renderer.render_bytes(snapshots)
        second = renderer.render_bytes(_snapshots(exporter))
        exporter.exporter.fleet.workers["healthy"].record_success("system_health", None, 0.5)
        third = renderer.render_bytes(_snapshots(exporter))

    assert first == _reference(snapshots)
    assert second is first
    assert third is not first
    assert third != first
