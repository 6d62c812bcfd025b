"""Structure rules for the Grafana dashboards in dashboards/ and the example Prometheus configurations."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
PROMETHEUS_CONFIGS = ROOT / "deploy" / "prometheus"
BOARD_FILES = ("cml-fleet.json", "cml-worker.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Every series a dashboard may query: the exporter's metrics, the client library's process metrics and
# the ALERTS series that Prometheus writes.
KNOWN_METRICS = {
    "cml_up",
    "cml_ready",
    "cml_service_status",
    "cml_service_status_since_timestamp_seconds",
    "cml_version_info",
    "cml_health_valid",
    "cml_controller_valid",
    "cml_licensed",
    "cml_license_info",
    "cml_license_registered",
    "cml_license_in_compliance",
    "cml_license_registration_expiry_timestamp_seconds",
    "cml_license_authorization_expiry_timestamp_seconds",
    "cml_license_feature_in_use",
    "cml_license_feature_limit",
    "cml_labs",
    "cml_nodes",
    "cml_running_nodes",
    "cml_compute_info",
    "cml_compute_valid",
    "cml_compute_admission_state",
    "cml_compute_cpu_usage_ratio",
    "cml_compute_cpus",
    "cml_compute_memory_used_bytes",
    "cml_compute_memory_total_bytes",
    "cml_compute_disk_used_bytes",
    "cml_compute_disk_total_bytes",
    "cml_compute_running_nodes",
    "cml_endpoint_up",
    "cml_endpoint_last_success_timestamp_seconds",
    "cml_endpoint_duration_seconds",
    "cml_endpoint_requests_total",
    "cml_endpoint_failures_total",
    "cml_endpoint_breaker_state",
    "cml_probe_duration_seconds",
    "cml_exporter_build_info",
    "cml_exporter_workers",
    "cml_exporter_config_last_reload_successful",
    "cml_exporter_config_last_reload_success_timestamp_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "ALERTS",
}

# Gauges whose only values are 0 and 1: a panel that shows one of them directly maps both values.
YES_NO_GAUGES = {
    "cml_up",
    "cml_ready",
    "cml_health_valid",
    "cml_controller_valid",
    "cml_licensed",
    "cml_license_registered",
    "cml_license_in_compliance",
    "cml_compute_valid",
    "cml_endpoint_up",
    "cml_exporter_config_last_reload_successful",
}

# State sets: a panel that shows one directly maps every state the exporter emits.
STATE_SETS = {
    "cml_service_status": {"available", "unavailable", "error"},
    "cml_endpoint_breaker_state": {"closed", "open", "half_open"},
    "cml_compute_admission_state": {"UNREGISTERED", "REGISTERED", "ONLINE", "READY"},
}

# Words in PromQL that look like metric names but are functions, keywords or label names.
PROMQL_WORDS = {
    "sum", "count", "max", "min", "avg", "by", "without", "rate", "irate", "increase", "vector",
    "or", "and", "unless", "on", "ignoring", "group_left", "group_right", "time", "label_replace",
    "bool", "offset", "group",
}  # fmt: skip


def load_board(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def query_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel that runs queries, including panels nested in collapsed rows."""
    for panel in board["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def promql_of_label_values(query: str) -> str:
    """Turn Grafana's label_values(selector, label) into an equivalent PromQL query."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
    assert match, f"unexpected variable query {query!r}"
    return f"group by ({match[2]}) ({match[1]})"


def all_exprs(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield (where, PromQL) for every panel target and query variable of a board."""
    for panel in query_panels(board):
        for target in panel["targets"]:
            yield f"panel {panel['id']} {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", promql_of_label_values(variable["query"]["query"])


def metric_names(expr: str) -> set[str]:
    """Return the metric names an expression selects, ignoring label matchers, strings and ranges."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_matchers)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_groupings))
    return {word for word in words - PROMQL_WORDS if not word.startswith("$")}


def panel_mapping_texts(panel: dict[str, Any]) -> list[dict[str, str]]:
    """Return each value mapping of a panel, defaults and overrides alike, as {value: text}."""
    mappings = list(panel["fieldConfig"]["defaults"].get("mappings", []))
    for override in panel["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "mappings":
                mappings.extend(prop["value"])
    return [{value: option["text"] for value, option in mapping["options"].items()} for mapping in mappings]


def is_aggregated_count(expr: str) -> bool:
    """Tell whether an expression counts or sums workers rather than showing one worker's value."""
    return expr.startswith(("sum", "count", "1 -")) or "sum by" in expr or "1 - " in expr


@pytest.fixture(params=BOARD_FILES)
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_board(request.param)


def test_committed_json_matches_builder() -> None:
    builder = load_builder()

    for name, build in builder.DASHBOARDS.items():
        committed = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert committed == builder.render(build()), f"{name} is stale: run python3 dashboards/build.py"


def test_board_has_stable_uid_and_schema(board: dict[str, Any]) -> None:
    assert board["uid"] in {"cml-fleet", "cml-worker"}
    assert board["schemaVersion"] == 39
    requires = {item["id"]: item["version"] for item in board["__requires"]}
    assert requires["grafana"] == "10.4.0"


def test_uids_differ_between_boards() -> None:
    uids = [load_board(name)["uid"] for name in BOARD_FILES]

    assert len(set(uids)) == len(uids)


def test_datasource_variable_is_prometheus(board: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_panel_and_target_uses_datasource_variable(board: dict[str, Any]) -> None:
    for panel in query_panels(board):
        assert panel["datasource"] == DATASOURCE, f"panel {panel['id']} {panel['title']!r}"
        assert panel["targets"], f"panel {panel['id']} {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, f"panel {panel['id']} target {target['refId']}"


def test_query_variables_use_datasource_and_label_values(board: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}

    for name in ("job", "worker"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["query"]["query"].startswith("label_values(")


def test_every_panel_has_unit(board: dict[str, Any]) -> None:
    for panel in query_panels(board):
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit, f"panel {panel['id']} {panel['title']!r} has no unit"


def test_yes_no_gauges_are_mapped(board: dict[str, Any]) -> None:
    for panel in query_panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            if not metric_names(expr) & YES_NO_GAUGES or is_aggregated_count(expr):
                continue
            mappings = panel_mapping_texts(panel)
            assert {"0": "No", "1": "Yes"} in mappings, f"panel {panel['id']} {panel['title']!r}: {expr}"


def test_state_sets_map_every_state(board: dict[str, Any]) -> None:
    for panel in query_panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            shown = metric_names(expr) & STATE_SETS.keys()
            if not shown or is_aggregated_count(expr):
                continue
            texts = [set(mapping.values()) for mapping in panel_mapping_texts(panel)]
            for metric in shown:
                assert STATE_SETS[metric] in texts, f"panel {panel['id']} {panel['title']!r} lacks {metric} states"


def test_state_set_encoding_matches_mapping() -> None:
    """The number a state-set query returns is the index of its state in the mapping."""
    builder = load_builder()

    query = builder.status_code_query('worker="w"')

    assert query == (
        'max by (worker) (cml_service_status{worker="w", status="unavailable"})'
        ' + 2 * max by (worker) (cml_service_status{worker="w", status="error"})'
    )
    options = builder._number_mapping(builder.SERVICE_STATUSES)["options"]
    assert {value: option["text"] for value, option in options.items()} == {
        "0": "available",
        "1": "unavailable",
        "2": "error",
    }


def test_every_rate_uses_rate_interval(board: dict[str, Any]) -> None:
    for where, expr in all_exprs(board):
        for function, window in re.findall(r"\b(rate|irate|increase)\((?:[^\[\]()]|\([^()]*\))*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{where}: {function} over {window}"
        assert expr.count("rate(") + expr.count("increase(") == expr.count("[$__rate_interval]"), where


def test_queries_name_only_known_metrics(board: dict[str, Any]) -> None:
    for where, expr in all_exprs(board):
        unknown = metric_names(expr) - KNOWN_METRICS
        assert not unknown, f"{where}: unknown metrics {sorted(unknown)}"


def test_worker_series_are_selected_by_job_and_worker(board: dict[str, Any]) -> None:
    for where, expr in all_exprs(board):
        names = metric_names(expr)
        if not any(name.startswith("cml_") and not name.startswith("cml_exporter_") for name in names):
            continue
        for selector in re.findall(r"\bcml_[a-z_]+\{([^}]*)\}", expr):
            assert 'job=~"$job"' in selector, f"{where}: {selector}"
            if not where.startswith("variable"):
                assert re.search(r'worker=~?"\$worker"', selector), f"{where}: {selector}"


def test_panel_ids_are_unique(board: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in board["panels"]]
    ids += [nested["id"] for panel in board["panels"] for nested in panel.get("panels", [])]

    assert len(ids) == len(set(ids))


def test_grid_positions_do_not_overlap(board: dict[str, Any]) -> None:
    boxes = [(panel["id"], panel["gridPos"]) for panel in board["panels"]]

    for panel_id, pos in boxes:
        assert pos["x"] >= 0, panel_id
        assert pos["y"] >= 0, panel_id
        assert pos["w"] > 0, panel_id
        assert pos["h"] > 0, panel_id
        assert pos["x"] + pos["w"] <= 24, f"panel {panel_id} is wider than the grid"
    for (first_id, a), (second_id, b) in itertools.combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, f"panels {first_id} and {second_id} overlap"


def test_fleet_table_links_rows_to_worker_board() -> None:
    fleet = load_board("cml-fleet.json")
    worker_uid = load_board("cml-worker.json")["uid"]

    table = next(panel for panel in fleet["panels"] if panel["title"] == "Workers")
    links = [
        link
        for override in table["fieldConfig"]["overrides"]
        if override["matcher"]["options"] == "worker"
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]

    assert len(links) == 1
    assert links[0]["url"].startswith(f"/d/{worker_uid}/")
    assert "var-worker=${__data.fields.worker}" in links[0]["url"]
    assert "${datasource:queryparam}" in links[0]["url"]


def test_fleet_shows_firing_cml_alerts_with_runbook_links() -> None:
    fleet = load_board("cml-fleet.json")
    rules = yaml.safe_load((ROOT / "alerts" / "cml-exporter.rules.yml").read_text())
    runbooks = {
        rule["alert"]: rule["annotations"]["runbook_url"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }

    alerts = next(panel for panel in fleet["panels"] if panel["title"] == "CML alerts firing")
    runbook_column = next(
        override for override in alerts["fieldConfig"]["overrides"] if override["matcher"]["options"] == "Runbook"
    )
    properties = {prop["id"]: prop["value"] for prop in runbook_column["properties"]}
    anchors = {name: option["text"] for name, option in properties["mappings"][0]["options"].items()}
    base_url = next(v for v in fleet["templating"]["list"] if v["name"] == "runbook_url")["query"]

    assert 'ALERTS{alertname=~"Cml.*", alertstate="firing"}' in alerts["targets"][0]["expr"]
    assert properties["links"][0]["url"] == "${runbook_url}#${__value.text}"
    for name, runbook_url in runbooks.items():
        assert f"{base_url}#{anchors[name]}" == runbook_url, name



def substitute_variables(expr: str) -> str:
    """Replace Grafana variables with values that make each query valid PromQL."""
    values = {
        "$__rate_interval": "1m",
        "$datasource": "prometheus",
        "$exporter_job": "cml-exporter",
        "$job": "cml-exporter",
        "$worker": "worker-01",
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    return expr


def test_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    """Each panel and variable query is valid PromQL once its variables are substituted."""
    promtool = require_binary("promtool")
    rules = []
    for name in BOARD_FILES:
        for where, expr in all_exprs(load_board(name)):
            rules.append({"record": f"dashboard:query_{len(rules)}", "expr": substitute_variables(expr)})
            assert not re.search(r"\$[A-Za-z_]", rules[-1]["expr"]), f"{name} {where}: unsubstituted variable"
    rule_file = tmp_path / "queries.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))

    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "config", ["prometheus.fleet.yml", "prometheus.multi-target.yml", "prometheus.http-sd.yml"]
)
def test_prometheus_config_passes_promtool(config: str) -> None:
    promtool = require_binary("promtool")

    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIGS / config)], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr


def scrape_job(config: str, job_name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((PROMETHEUS_CONFIGS / config).read_text())
    return next(job for job in loaded["scrape_configs"] if job["job_name"] == job_name)


@pytest.mark.parametrize("config", ["prometheus.multi-target.yml", "prometheus.http-sd.yml"])
def test_multi_target_job_probes_workers_by_name(config: str) -> None:
    workers = scrape_job(config, "cml-workers")
    relabels = workers["relabel_configs"]

    assert workers["metrics_path"] == "/probe"
    assert {"source_labels": ["__address__"], "target_label": "__param_target"} in relabels
    assert {"source_labels": ["__param_target"], "target_label": "instance"} in relabels
    assert any(relabel.get("target_label") == "__address__" for relabel in relabels)
    assert scrape_job(config, "cml-exporter")["metrics_path"] == "/metrics"


def test_sample_file_sd_lists_worker_names() -> None:
    groups = json.loads((PROMETHEUS_CONFIGS / "workers.json").read_text())

    names = [name for group in groups for name in group["targets"]]

    assert names
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in names), names
