"""Label values from workers are cleaned, bounded and unambiguous."""

from __future__ import annotations

from exporter.labels import MAX_LABEL_LENGTH, REPLACEMENT, clean_label
from exporter.simulator import Fault, Simulator, WorkerProfile
from tests.support import ExporterUnderTest, fleet_config


def test_surrogates_and_controls_become_replacement_character() -> None:
    assert clean_label("a\ud800b\nc\x00d") == f"a{REPLACEMENT}b{REPLACEMENT}c{REPLACEMENT}d"


def test_bidirectional_overrides_are_replaced() -> None:
    assert clean_label("admin\u202egnp.exe") == f"admin{REPLACEMENT}gnp.exe"


def test_long_value_is_cut_with_ellipsis() -> None:
    cleaned = clean_label("x" * 5000)

    assert len(cleaned) == MAX_LABEL_LENGTH
    assert cleaned.endswith("…")


def test_missing_value_gets_fallback() -> None:
    assert clean_label(None) == "unknown"
    assert clean_label("") == "unknown"


async def test_unknown_admission_state_keeps_one_state_set() -> None:
    sim = Simulator()
    sim.add_worker("newer", WorkerProfile())
    async with sim:
        sim.set_fault("newer", "system_health", Fault(values={"admission_state": "DRAINING"}))
        async with ExporterUnderTest(fleet_config(sim)) as exporter:
            samples = await exporter.scrape()

    computes = {labels["compute"] for labels, _ in samples.all("cml_compute_admission_state", worker="newer")}
    assert computes == {"cml-controller", "cml-compute-01"}
    for compute in computes:
        states = dict(
            (labels["state"], value)
            for labels, value in samples.all("cml_compute_admission_state", worker="newer", compute=compute)
        )
        assert states["DRAINING"] == 1
        assert sum(states.values()) == 1
        assert states["READY"] == 0
