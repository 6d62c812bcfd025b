"""Hostile strings from a worker: quotes, backslashes, newlines, control characters, invalid Unicode, length.

The exposition must stay valid for Prometheus (checked with promtool) and every label value must be
printable and bounded.
"""

from __future__ import annotations

import asyncio
import unicodedata
from asyncio.subprocess import PIPE

import pytest

from exporter.config import CollectConfig
from exporter.labels import MAX_LABEL_LENGTH
from exporter.simulator import ComputeSpec, Fault, LabSpec, RawJSON, Simulator, WorkerProfile
from tests.conftest import require_binary
from tests.failures_helpers import scrape_on_time
from tests.support import ExporterUnderTest, Samples, fleet_config

HOSTILE = [
    'quote " inside',
    "back\\slash\\",
    "new\nline",
    "carriage\rreturn",
    "nul\x00byte",
    "escape\x1b[31mred",
    "tab\tand\x7fdelete",
    "lone \udc80 surrogate",
    "x" * 5000,
    "} 1.0\ncml_up{worker=\"forged\"} 1",
]


def _assert_clean(value: str) -> None:
    assert len(value) <= MAX_LABEL_LENGTH
    assert all(unicodedata.category(char) not in ("Cc", "Cs") for char in value), repr(value)
    value.encode("utf-8")


async def _hostile_exposition(path: str) -> tuple[str, Samples]:
    labs = [
        LabSpec(title=f"lab {index}", owner_username=name, state="STARTED", nodes=("BOOTED",))
        for index, name in enumerate(HOSTILE)
    ]
    computes = [ComputeSpec(hostname=name, id=f"compute-{index}") for index, name in enumerate(HOSTILE)]
    profile = WorkerProfile(version_string=HOSTILE[-1] + HOSTILE[2], labs=labs, computes=computes)
    async with Simulator() as sim:
        sim.add_worker("hostile", profile)
        sim.add_worker("healthy", WorkerProfile())
        # Invalid Unicode escapes and raw control bytes, which json.dumps would never write.
        sim.set_fault(
            "hostile",
            "licensing",
            Fault(values={"product_license.active": RawJSON('"\\udfff\\ud800 bad"'), "features.0.name": "f\x01\n"}),
        )
        config = fleet_config(sim, collect=CollectConfig(per_owner=True))
        async with ExporterUnderTest(config) as exporter:
            samples = await scrape_on_time(exporter, path)
    return samples.text, samples


@pytest.mark.parametrize("path", ["/metrics", "/probe?target=hostile"])
async def test_hostile_strings_keep_exposition_valid(path: str) -> None:
    promtool = require_binary("promtool")

    text, samples = await _hostile_exposition(path)
    process = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(text.encode()), 30)

    # promtool exits 1 for lint findings as well; only a parse error makes the text unusable.
    report = (stdout + stderr).decode()
    assert "error while linting" not in report, report
    assert process.returncode == 0 or "error" not in report.lower(), report
    assert samples.get("cml_up", worker="forged") is None
    assert len(samples.all("cml_compute_cpus", worker="hostile")) == len(HOSTILE)
    assert len(samples.all("cml_owner_labs", worker="hostile")) == len(HOSTILE)
    assert samples.get("cml_labs", worker="hostile", state="STARTED") == len(HOSTILE)
    for _name, labels, _value in samples.samples:
        for value in labels.values():
            _assert_clean(value)


async def test_hostile_strings_do_not_cost_other_workers() -> None:
    _, samples = await _hostile_exposition("/metrics")

    assert samples.status("hostile") == "available"
    assert samples.status("healthy") == "available"
    assert samples.get("cml_license_registered", worker="hostile") == 1
    (labels, _), = samples.all("cml_version_info", worker="hostile")
    _assert_clean(labels["version"])


async def test_host_names_equal_after_cleaning_stay_distinct() -> None:
    """Two long host names that differ only past the label length limit must not become one series."""
    computes = [ComputeSpec(hostname="h" * 300 + suffix, id=f"compute-{suffix}") for suffix in ("a", "b")]
    async with Simulator() as sim:
        sim.add_worker("w", WorkerProfile(computes=computes))
        async with ExporterUnderTest(fleet_config(sim)) as exporter:
            samples = await scrape_on_time(exporter)

    names = {labels["compute"] for labels, _ in samples.all("cml_compute_cpus", worker="w")}
    assert len(names) == 2
    assert len(samples.all("cml_compute_info", worker="w")) == 2
