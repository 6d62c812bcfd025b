"""Worker inventory: a workers_file that another system writes is polled, reloaded and listed on /sd."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config, parse_config
from exporter.errors import ConfigError
from exporter.simulator import Simulator, WorkerProfile
from tests.exporter_process import replace_file, write_config
from tests.support import ExporterUnderTest, Samples

CHECK_INTERVAL = "100ms"


@pytest.fixture
async def fleet() -> AsyncIterator[Simulator]:
    sim = Simulator()
    for name in ("alpha", "beta"):
        sim.add_worker(name, WorkerProfile())
    async with sim:
        yield sim


def inventory_yaml(sim: Simulator, *names: str) -> str:
    return yaml.safe_dump([{"name": name, "url": sim.base_url(name)} for name in names])


def main_config(folder: Path, workers_file: str, **exporter: Any) -> Path:
    settings = {"workers_file_check_interval": CHECK_INTERVAL, **exporter}
    return write_config(folder / "config.yml", {}, workers_file=workers_file, exporter=settings)


def workers_in(samples: Samples) -> set[str]:
    return {labels["worker"] for _, labels, _ in samples.samples if "worker" in labels}


async def scrape_until(exporter: ExporterUnderTest, condition: Callable[[Samples], bool]) -> Samples:
    deadline = time.monotonic() + 5
    while True:
        samples = await exporter.scrape()
        if condition(samples):
            return samples
        assert time.monotonic() < deadline, f"condition not met within 5 s; last scrape:\n{samples.text}"
        await asyncio.sleep(0.05)


async def test_changed_inventory_adds_and_retires_workers(fleet: Simulator, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(inventory_yaml(fleet, "alpha"), encoding="utf-8")
    config_file = main_config(tmp_path, "inventory.yml")
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        first = await exporter.scrape()

        replace_file(inventory, inventory_yaml(fleet, "alpha", "beta"))
        added = await scrape_until(exporter, lambda s: "beta" in workers_in(s))
        replace_file(inventory, inventory_yaml(fleet, "beta"))
        retired = await scrape_until(exporter, lambda s: "alpha" not in workers_in(s))

    assert workers_in(first) == {"alpha"}
    assert added.get("cml_up", worker="beta") == 1
    assert workers_in(retired) == {"beta"}
    assert retired.get("cml_exporter_workers") == 1
    assert retired.get("cml_exporter_config_last_reload_successful") == 1


async def test_broken_inventory_keeps_running_workers(fleet: Simulator, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(inventory_yaml(fleet, "alpha"), encoding="utf-8")
    config_file = main_config(tmp_path, "inventory.yml")
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        await exporter.scrape()

        replace_file(inventory, "- {name: beta, url: [not, a, url]}\n")
        broken = await scrape_until(exporter, lambda s: s.get("cml_exporter_config_last_reload_successful") == 0)
        inventory.unlink()
        await asyncio.sleep(0.3)
        missing = await exporter.scrape()
        replace_file(inventory, inventory_yaml(fleet, "alpha", "beta"))
        fixed = await scrape_until(exporter, lambda s: s.get("cml_exporter_config_last_reload_successful") == 1)

    assert workers_in(broken) == {"alpha"}
    assert broken.get("cml_up", worker="alpha") == 1
    assert workers_in(missing) == {"alpha"}
    assert missing.get("cml_exporter_config_last_reload_successful") == 0
    assert workers_in(fixed) == {"alpha", "beta"}


async def test_unchanged_inventory_is_not_reloaded(fleet: Simulator, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(inventory_yaml(fleet, "alpha"), encoding="utf-8")
    config_file = main_config(tmp_path, "inventory.yml")
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        before = (await exporter.scrape()).get("cml_exporter_config_last_reload_success_timestamp_seconds")
        await asyncio.sleep(0.5)
        after = (await exporter.scrape()).get("cml_exporter_config_last_reload_success_timestamp_seconds")

    assert before == after


async def test_file_sd_inventory_names_workers_by_label(fleet: Simulator, tmp_path: Path) -> None:
    groups = [
        {"targets": [fleet.base_url("alpha")], "labels": {"name": "alpha", "site": "east"}},
        {"targets": [fleet.base_url("beta")], "labels": {"worker": "beta", "credentials": "default"}},
    ]
    (tmp_path / "inventory.json").write_text(json.dumps(groups), encoding="utf-8")
    config_file = main_config(tmp_path, "inventory.json")
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        samples = await exporter.scrape()

    assert samples.get("cml_up", worker="alpha") == 1
    assert samples.get("cml_up", worker="beta") == 1


def test_file_sd_group_yields_one_worker_per_target(tmp_path: Path) -> None:
    groups = [{"targets": ["cml-01.example.net", "https://cml-02.example.net:8443"]}]
    (tmp_path / "inventory.json").write_text(json.dumps(groups), encoding="utf-8")
    raw = {"credentials": {"default": {"username": "admin", "password": "x"}}, "workers_file": "inventory.json"}

    config = parse_config(raw, tmp_path)

    assert [(worker.name, worker.url) for worker in config.workers] == [
        ("cml-01.example.net", "https://cml-01.example.net"),
        ("cml-02.example.net", "https://cml-02.example.net:8443"),
    ]
    assert config.workers_file == str(tmp_path / "inventory.json")


def test_file_sd_name_label_on_group_of_two_is_rejected(tmp_path: Path) -> None:
    groups = [{"targets": ["cml-01.example.net", "cml-02.example.net"], "labels": {"name": "cml"}}]
    (tmp_path / "inventory.json").write_text(json.dumps(groups), encoding="utf-8")
    raw = {"credentials": {"default": {"username": "admin", "password": "x"}}, "workers_file": "inventory.json"}

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)

    assert caught.value.problems == [
        "workers_file[0].labels: a name label needs a group with exactly one target; split the group"
    ]


def test_inventory_problems_name_inventory_entry(tmp_path: Path) -> None:
    (tmp_path / "inventory.yml").write_text(
        "- {name: alpha, url: 'https://cml-01.example.net'}\n- {name: main-1, url: 'https://cml-02.example.net'}\n"
        "- {name: beta, url: 'ftp://cml-03.example.net'}\n",
        encoding="utf-8",
    )
    raw = {
        "credentials": {"default": {"username": "admin", "password": "x"}},
        "workers": [{"name": "main-1", "url": "https://cml-00.example.net"}],
        "workers_file": "inventory.yml",
    }

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)

    assert caught.value.problems == [
        "workers_file[1].name: duplicate worker name 'main-1', first used by workers[0]",
        "workers_file[2].url: scheme 'ftp' is not supported; expected http or https",
    ]


def test_missing_inventory_at_start_is_rejected(tmp_path: Path) -> None:
    raw = {"credentials": {"default": {"username": "admin", "password": "x"}}, "workers_file": "absent.yml"}

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)

    path = str(tmp_path / "absent.yml")
    assert caught.value.problems == [f"workers_file: cannot read {path!r}: No such file or directory"]


def test_invalid_check_interval_names_key(tmp_path: Path) -> None:
    raw = {"exporter": {"workers_file_check_interval": "often"}}

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)

    assert caught.value.problems[0].startswith("exporter.workers_file_check_interval: invalid duration 'often'")


async def test_sd_lists_configured_workers_as_probe_targets(fleet: Simulator, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(inventory_yaml(fleet, "alpha"), encoding="utf-8")
    config_file = main_config(tmp_path, "inventory.yml")
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        status, body, _ = await exporter.get("/sd")
        replace_file(inventory, inventory_yaml(fleet, "alpha", "beta"))
        await scrape_until(exporter, lambda s: "beta" in workers_in(s))
        requests = fleet.all_counts()
        _, after, _ = await exporter.get("/sd")

    assert status == 200
    assert json.loads(body) == [{"targets": ["alpha"], "labels": {}}]
    assert json.loads(after) == [{"targets": ["alpha"], "labels": {}}, {"targets": ["beta"], "labels": {}}]
    assert fleet.all_counts() == requests, "/sd must not probe any worker"


async def test_change_during_reload_is_not_lost(
    fleet: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewrite that lands while a reload applies the previous version is picked up by the next check."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(inventory_yaml(fleet, "alpha"), encoding="utf-8")
    config_file = main_config(tmp_path, "inventory.yml")
    async with ExporterUnderTest(load_config(config_file), str(config_file)) as exporter:
        fleet_object = exporter.exporter.fleet
        apply = fleet_object.apply

        async def apply_then_rewrite(config: Any) -> None:
            await apply(config)
            replace_file(inventory, inventory_yaml(fleet, "alpha", "beta"))

        monkeypatch.setattr(fleet_object, "apply", apply_then_rewrite)
        inventory.write_text(inventory_yaml(fleet, "alpha") + "# touched\n", encoding="utf-8")
        assert await exporter.exporter.reload()
        monkeypatch.setattr(fleet_object, "apply", apply)

        samples = await scrape_until(exporter, lambda samples: "beta" in workers_in(samples))

    assert workers_in(samples) >= {"alpha", "beta"}
