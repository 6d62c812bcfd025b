"""Smoke run of the benchmark harness: it must produce every figure and its JSON file.

The figures are timings of a loaded machine, so only their presence and kind are checked here,
plus the request counts, which do not depend on speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
WORKERS = 3
LABS = 5


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    output = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable, "-m", "bench",
        "--workers", str(WORKERS), "--latency-ms", "1", "--rounds", "1", "--ttl", "2",
        "--scrapers", "2", "--cached-scrapes", "2", "--naive-labs", str(LABS), "--output", str(output),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    files = sorted(output.glob("bench-*.json"))
    assert len(files) == 1, f"expected one results file in {output}, found {files}"
    return finished.stdout, json.loads(files[0].read_text()), output


def _is_seconds(value: object) -> bool:
    return isinstance(value, float) and value >= 0


def test_bench_writes_results_and_latest(bench_run: tuple[str, dict[str, Any], Path]) -> None:
    _, results, output = bench_run

    latest = json.loads((output / "latest.json").read_text())

    assert latest == results
    assert results["machine"]["nproc"] >= 1
    assert results["machine"]["cpu_model"]
    assert results["machine"]["python"] == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"


def test_bench_fleet_case_has_every_figure(bench_run: tuple[str, dict[str, Any], Path]) -> None:
    _, results, _ = bench_run

    [case] = results["fleet"]

    assert case["workers"] == WORKERS
    assert case["latency_seconds"] == pytest.approx(0.001)
    assert case["ideal_cold_seconds"] == pytest.approx(0.002)
    assert _is_seconds(case["cold"]["seconds"])
    assert _is_seconds(case["cold"]["exporter_cpu_seconds"])
    assert _is_seconds(case["cold"]["simulator_cpu_seconds"])
    assert _is_seconds(case["cached"]["seconds_median"])
    assert _is_seconds(case["cached"]["exporter_cpu_seconds_per_scrape"])
    [refresh] = case["refresh_rounds"]
    assert len(refresh["scrape_seconds"]) == 2
    assert all(_is_seconds(seconds) for seconds in refresh["scrape_seconds"])
    assert _is_seconds(refresh["exporter_cpu_seconds"])
    assert _is_seconds(refresh["simulator_cpu_seconds"])
    assert case["memory_bytes"]["exporter"]["peak_rss"] > 0
    assert case["memory_bytes"]["simulator"]["peak_rss"] > 0
    assert case["series"] > 0
    assert case["response_bytes"] > 0


def test_bench_counts_simulator_requests(bench_run: tuple[str, dict[str, Any], Path]) -> None:
    _, results, _ = bench_run

    [case] = results["fleet"]
    cold = case["cold"]["requests"]
    refresh = case["refresh_rounds"][0]["requests"]

    assert cold["by_endpoint"]["authenticate"] == WORKERS
    assert cold["by_endpoint"]["system_information"] == WORKERS
    assert cold["per_worker"] == cold["total"] / WORKERS
    assert case["cached"]["requests"]["total"] == 0
    assert refresh["total"] > 0
    assert refresh["max_per_worker_endpoint"] == 1


def test_bench_compares_with_naive_collector(bench_run: tuple[str, dict[str, Any], Path]) -> None:
    _, results, _ = bench_run

    [comparison] = results["naive"]

    assert comparison["labs"] == LABS
    # The naive walk: login, four system calls, the lab list, then one call per lab.
    assert comparison["naive"]["requests"] == 6 + LABS
    assert _is_seconds(comparison["naive"]["seconds"])
    for mode in ("exporter_with_lab_tiles", "exporter_with_lab_list"):
        assert _is_seconds(comparison[mode]["seconds"])
        assert comparison[mode]["requests"] > 0
        assert comparison[mode]["speedup"] > 0


def test_bench_prints_tables_and_targets(bench_run: tuple[str, dict[str, Any], Path]) -> None:
    stdout, results, _ = bench_run

    assert "| N | L ms | cold s |" in stdout
    assert "| labs | L ms | naive s |" in stdout
    assert "| target | value | limit | met |" in stdout
    assert any(target["target"].endswith("per TTL") for target in results["targets"])
