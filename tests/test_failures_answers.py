"""Wrong answers: error pages, redirects, bodies that are not the expected JSON, and unusable values.

A bad body fails only its endpoint, with reason bad_response (or the HTTP class), and a bad value costs
only the series that depend on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exporter.simulator import Fault, RawJSON, Simulator, WorkerProfile
from tests.failures_helpers import assert_complete, failure_reasons, failures, scrape_on_time
from tests.support import ExporterUnderTest, Samples, fleet_config

ENDPOINT_PATHS = {
    "system_information": "system_information",
    "system_health": "system_health",
    "system_stats": "system_stats",
    "licensing": "licensing",
}


@pytest.fixture
async def fleet() -> AsyncIterator[Simulator]:
    sim = Simulator()
    sim.add_worker("healthy", WorkerProfile())
    sim.add_worker("bad", WorkerProfile())
    async with sim:
        yield sim


async def _scrape_with_fault(sim: Simulator, endpoint: str, fault: Fault) -> Samples:
    sim.set_fault("bad", endpoint, fault)

    async with ExporterUnderTest(fleet_config(sim)) as exporter:
        samples = await scrape_on_time(exporter)

    assert_complete(samples, "healthy")
    return samples


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(status=502), "http_5xx"),
        (Fault(status=418), "http_other"),
        (Fault(redirect=True), "redirect"),
        (Fault(body="html"), "bad_response"),
        (Fault(body="not_json"), "bad_response"),
        (Fault(body="empty"), "bad_response"),
        (Fault(body=b'{"computes": {"478b75b9'), "bad_response"),
        (Fault(body="wrong_shape"), "bad_response"),
        (Fault(body="null"), "bad_response"),
        (Fault(body=b"[" * 100_000 + b"]" * 100_000), "bad_response"),
        (Fault(body=b'{"valid": 1' + b"0" * 5000 + b"}"), "bad_response"),
    ],
    ids=["nginx_502", "teapot", "redirect_to_login", "html_200", "not_json", "empty", "cut_json", "wrong_shape",
         "null", "deeply_nested", "too_many_digits"],
)
@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_PATHS))
async def test_bad_answer_fails_only_its_endpoint(
    fleet: Simulator, endpoint: str, fault: Fault, reason: str
) -> None:
    samples = await _scrape_with_fault(fleet, endpoint, fault)

    assert failure_reasons(samples, "bad", endpoint) == {reason}
    assert failures(samples, "bad", endpoint, reason) == 1
    assert samples.get("cml_endpoint_up", worker="bad", endpoint=endpoint) == 0
    for other in set(ENDPOINT_PATHS) - {endpoint}:
        assert samples.get("cml_endpoint_up", worker="bad", endpoint=other) == 1, other
    assert samples.get("cml_endpoint_up", worker="bad", endpoint="labs") == 1
    assert samples.get("cml_up", worker="bad") == 1
    assert samples.status("bad") == "available"
    assert samples.get("cml_ready", worker="bad") == (0 if endpoint == "system_information" else 1)
    assert fleet.count("bad", endpoint) == 1


async def test_redirect_is_not_followed(fleet: Simulator) -> None:
    await _scrape_with_fault(fleet, "system_health", Fault(redirect=True))

    assert fleet.count("bad", "other") == 0


@pytest.mark.parametrize(
    "body", ["html", "not_json", "wrong_shape", "null", "empty"]
)
async def test_bad_lab_tiles_fall_back_to_lab_list(fleet: Simulator, body: str) -> None:
    samples = await _scrape_with_fault(fleet, "populate_lab_tiles", Fault(body=body))

    assert samples.get("cml_endpoint_up", worker="bad", endpoint="labs") == 1
    assert samples.get("cml_labs", worker="bad", state="STARTED") == samples.get(
        "cml_labs", worker="healthy", state="STARTED"
    )
    assert fleet.count("bad", "labs") == 1


async def test_bad_lab_list_reports_bad_response(fleet: Simulator) -> None:
    fleet.set_fault("bad", "populate_lab_tiles", Fault(status=404))

    samples = await _scrape_with_fault(fleet, "labs", Fault(body="wrong_shape"))

    assert failures(samples, "bad", "labs", "bad_response") == 1
    assert samples.all("cml_labs", worker="bad") == []
    assert samples.status("bad") == "available"


@pytest.mark.parametrize(
    "value",
    ["N/A", None, RawJSON("NaN"), RawJSON("Infinity"), RawJSON("-Infinity"), RawJSON("1e400"),
     RawJSON("1" + "0" * 400), True, [], {"value": 1}, -5],
    ids=["n_a", "null", "nan", "inf", "minus_inf", "float_overflow", "huge_int", "bool", "list", "object",
         "negative"],
)
async def test_unusable_number_drops_only_its_series(fleet: Simulator, value: object) -> None:
    fault = Fault(values={"stats.memory.used": value})

    samples = await _scrape_with_fault(fleet, "system_stats", fault)

    assert failure_reasons(samples, "bad", "system_stats") == set()
    assert samples.get("cml_endpoint_up", worker="bad", endpoint="system_stats") == 1
    assert samples.all("cml_compute_memory_used_bytes", worker="bad") == []
    assert len(samples.all("cml_compute_memory_total_bytes", worker="bad")) == 2
    assert len(samples.all("cml_compute_cpu_usage_ratio", worker="bad")) == 2
    assert samples.get("cml_running_nodes", worker="bad") is not None
    assert samples.is_nan_free()


async def test_huge_finite_number_is_kept(fleet: Simulator) -> None:
    samples = await _scrape_with_fault(fleet, "system_stats", Fault(values={"stats.disk.total": 1e300}))

    values = [value for _, value in samples.all("cml_compute_disk_total_bytes", worker="bad")]
    assert values == [1e300, 1e300]


@pytest.mark.parametrize(
    ("path", "value", "missing", "kept"),
    [
        ("valid", "N/A", "cml_health_valid", "cml_licensed"),
        ("is_licensed", None, "cml_licensed", "cml_health_valid"),
        ("controller", "broken", "cml_controller_valid", "cml_health_valid"),
        ("computes", [], "cml_compute_valid", "cml_health_valid"),
    ],
)
async def test_bad_health_field_drops_only_its_series(
    fleet: Simulator, path: str, value: object, missing: str, kept: str
) -> None:
    samples = await _scrape_with_fault(fleet, "system_health", Fault(values={path: value}))

    assert samples.get("cml_endpoint_up", worker="bad", endpoint="system_health") == 1
    assert samples.all(missing, worker="bad") == []
    assert samples.all(kept, worker="bad") != []
    assert samples.status("bad") == "available"


async def test_bad_ready_value_means_not_ready(fleet: Simulator) -> None:
    samples = await _scrape_with_fault(fleet, "system_information", Fault(values={"ready": "yes"}))

    assert samples.get("cml_endpoint_up", worker="bad", endpoint="system_information") == 1
    assert samples.get("cml_ready", worker="bad") == 0
    assert samples.all("cml_version_info", worker="bad") != []


async def test_bad_licence_strings_drop_only_their_series(fleet: Simulator) -> None:
    fault = Fault(values={"registration.status": 7, "registration.expires": "N/A", "features.0.in_use": "N/A"})

    samples = await _scrape_with_fault(fleet, "licensing", fault)

    assert samples.get("cml_license_registered", worker="bad") is None
    assert samples.get("cml_license_registration_expiry_timestamp_seconds", worker="bad") is None
    assert samples.get("cml_license_in_compliance", worker="bad") == 1
    assert samples.get("cml_license_authorization_expiry_timestamp_seconds", worker="bad") is not None
    assert samples.all("cml_license_feature_limit", worker="bad") != []
