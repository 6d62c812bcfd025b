"""Build the Grafana dashboards cml-fleet.json and cml-worker.json from the panel lists below.

Run `python3 dashboards/build.py` after changing this file and commit the JSON it writes;
tests/test_dashboards.py fails while the committed JSON differs from what this script builds.
The JSON targets Grafana 10.4 or later (schemaVersion 39).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

Panel = dict[str, Any]

SCHEMA_VERSION = 39
MIN_GRAFANA_VERSION = "10.4.0"
FLEET_UID = "cml-fleet"
WORKER_UID = "cml-worker"
RULES_FILE = Path(__file__).resolve().parent.parent / "alerts" / "cml-exporter.rules.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Worker series are selected by job and worker. In multi-target mode the exporter's own /metrics
# scrape carries the same worker series as the /probe scrape, so every query also takes the max by
# worker, which keeps one value per worker whichever jobs the variable selects.
FLEET = 'job=~"$job", worker=~"$worker"'
ONE = 'job=~"$job", worker="$worker"'
EXPORTER = 'job=~"$exporter_job"'

SERVICE_STATUSES = ("available", "unavailable", "error")
BREAKER_STATES = ("closed", "open", "half_open")
ADMISSION_STATES = ("UNREGISTERED", "REGISTERED", "ONLINE", "READY")

STATE_COLORS = {
    "available": "green",
    "unavailable": "red",
    "error": "orange",
    "closed": "green",
    "open": "red",
    "half_open": "yellow",
    "UNREGISTERED": "red",
    "REGISTERED": "orange",
    "ONLINE": "yellow",
    "READY": "green",
}


# Value mappings. A panel shows a state set as one number per series, the index of the state that is 1
# (see _encode_state_set), and maps that index back to the state's name.


def _number_mapping(states: tuple[str, ...]) -> dict[str, Any]:
    options = {
        str(index): {"text": state, "color": STATE_COLORS[state], "index": index}
        for index, state in enumerate(states)
    }
    return {"type": "value", "options": options}


YES_NO = {
    "type": "value",
    "options": {
        "0": {"text": "No", "color": "red", "index": 0},
        "1": {"text": "Yes", "color": "green", "index": 1},
    },
}


def _encode_state_set(metric: str, label: str, selector: str, by: str, states: tuple[str, ...]) -> str:
    """Return a query whose value is the index in `states` of the state that is 1, per `by` group.

    The exporter sets exactly one state of a state set to 1. The first state has index 0, so its
    term would add nothing and is left out.
    """
    terms = []
    for index, state in enumerate(states[1:], start=1):
        term = f'max by ({by}) ({metric}{{{selector}, {label}="{state}"}})'
        terms.append(term if index == 1 else f"{index} * {term}")
    return " + ".join(terms)


def status_code_query(selector: str, by: str = "worker") -> str:
    return _encode_state_set("cml_service_status", "status", selector, by, SERVICE_STATUSES)


# Panel builders. Each returns a panel without id and gridPos; _layout() assigns both.


def target(expr: str, legend: str = "__auto", ref_id: str = "A", *, instant: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "refId": ref_id,
        "range": not instant,
        "instant": instant,
    }
    if instant:
        result["format"] = "table"
    return result


def _panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    unit: str,
    *,
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    size: tuple[int, int] = (12, 8),
) -> Panel:
    defaults: dict[str, Any] = {"unit": unit, "mappings": mappings or []}
    if mappings:
        # Colour comes from the mappings; the base threshold only colours unmapped values.
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "text", "value": None}]}
    if custom:
        defaults["custom"] = custom
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
        "_size": size,
    }


def stat(title: str, targets: list[dict[str, Any]], unit: str = "none", **kwargs: Any) -> Panel:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": kwargs.pop("text_mode", "auto"),
    }
    kwargs.setdefault("size", (4, 4))
    return _panel("stat", title, targets, unit, options=options, **kwargs)


def timeseries(title: str, targets: list[dict[str, Any]], unit: str, **kwargs: Any) -> Panel:
    options = {
        "legend": {
            "displayMode": "table",
            "placement": "right",
            "showLegend": True,
            "calcs": ["lastNotNull"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if kwargs.pop("stacked", False):
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return _panel("timeseries", title, targets, unit, options=options, custom=custom, **kwargs)


def timeline(
    title: str, targets: list[dict[str, Any]], mappings: list[dict[str, Any]], **kwargs: Any
) -> Panel:
    options = {
        "mergeValues": True,
        "showValue": "auto",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    custom = {"fillOpacity": 80, "lineWidth": 0}
    kwargs.setdefault("unit", "none")
    return _panel(
        "state-timeline", title, targets, options=options, custom=custom, mappings=mappings, **kwargs
    )


def table(
    title: str, targets: list[dict[str, Any]], transformations: list[dict[str, Any]], **kwargs: Any
) -> Panel:
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}
    kwargs.setdefault("unit", "none")
    panel = _panel("table", title, targets, options=options, **kwargs)
    panel["transformations"] = transformations
    return panel


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def by_query(ref_id: str, mappings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "matcher": {"id": "byFrameRefID", "options": ref_id},
        "properties": [{"id": "mappings", "value": mappings}],
    }


def column(name: str, properties: list[dict[str, Any]]) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name}, "properties": properties}


def _columns(renames: dict[str, str]) -> list[dict[str, Any]]:
    """Return the transformations that merge instant table queries and rename their columns."""
    excluded = {"Time": True, "job": True, "instance": True, "__name__": True}
    order = {name: index for index, name in enumerate(renames)}
    return [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {"excludeByName": excluded, "renameByName": renames, "indexByName": order},
        },
    ]


# Variables and dashboard frame.


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
    }


def query_variable(
    name: str, label: str, query: str, *, multi: bool, description: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {},
        "hide": 0,
        "includeAll": multi,
        "multi": multi,
        # Without allValue, "All" expands to an alternation of every value, which grows with the fleet.
        **({"allValue": ".*"} if multi else {}),
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
    }


def job_variable() -> dict[str, Any]:
    return query_variable(
        "job",
        "Job",
        "label_values(cml_up, job)",
        multi=True,
        description="Jobs that carry worker series: cml-exporter (/metrics) or cml-workers (/probe).",
    )


def exporter_job_variable() -> dict[str, Any]:
    return query_variable(
        "exporter_job",
        "Exporter job",
        "label_values(cml_exporter_build_info, job)",
        multi=True,
        description="Jobs that scrape the exporter's own /metrics.",
    )


def _layout(panels: list[Panel]) -> list[Panel]:
    """Give each panel an id and a gridPos, filling 24-unit-wide lines from left to right."""
    x = y = line_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        width, height = panel.pop("_size")
        if panel["type"] == "row" or x + width > 24:
            x, y, line_height = 0, y + line_height, 0
        panel["id"] = panel_id
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        x += width
        line_height = max(line_height, height)
        if panel["type"] == "row":
            x, y, line_height = 0, y + height, 0
    return panels


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": MIN_GRAFANA_VERSION},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["cml", "cml-exporter"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "liveNow": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "weekStart": "",
        "fiscalYearStartMonth": 0,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "CML dashboards",
                "type": "dashboards",
                "tags": ["cml-exporter"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": _layout(panels),
    }


# The fleet dashboard.


def _fleet_counts() -> list[Panel]:
    by_status = f"sum by (status) (max by (worker, status) (cml_service_status{{{FLEET}}}))"
    return [
        row("Fleet"),
        stat(
            "Worker count",
            [target(f"count(max by (worker) (cml_up{{{FLEET}}}))", "workers")],
            description="Configured workers that the selected jobs report.",
        ),
        stat(
            "Workers by status",
            [target(by_status, "{{status}}")],
            size=(8, 4),
            description="Workers in each service status. Unavailable means that no API call succeeded.",
        ),
        stat(
            "Ready",
            [target(f"sum(max by (worker) (cml_ready{{{FLEET}}}))", "ready")],
            description="Workers whose system_information reports ready: true.",
        ),
        stat(
            "Unlicensed",
            [target(f"count(max by (worker) (cml_licensed{{{FLEET}}}) == 0) or vector(0)", "unlicensed")],
            description="Workers whose system health reports is_licensed false.",
        ),
        stat(
            "Open breaker",
            [
                target(
                    f'count(max by (worker) (cml_endpoint_breaker_state{{{FLEET}, state="open"}}) == 1)'
                    " or vector(0)",
                    "open breaker",
                )
            ],
            description="Workers with at least one endpoint whose circuit breaker is open.",
        ),
    ]


def _fleet_table() -> Panel:
    link = (
        f"/d/{WORKER_UID}/cml-worker?var-worker=${{__data.fields.worker}}"
        "&${datasource:queryparam}&${job:queryparam}&${__url_time_range}"
    )
    worker_link = [{"id": "links", "value": [{"title": "Open the worker dashboard", "url": link}]}]
    targets = [
        target(f"max by (worker) (cml_up{{{FLEET}}})", ref_id="A", instant=True),
        target(status_code_query(FLEET), ref_id="B", instant=True),
        target(f"max by (worker) (cml_ready{{{FLEET}}})", ref_id="C", instant=True),
        target(f"max by (worker, version) (cml_version_info{{{FLEET}}})", ref_id="D", instant=True),
        target(f'max by (worker) (cml_labs{{{FLEET}, state="STARTED"}})', ref_id="E", instant=True),
        target(f"max by (worker) (cml_running_nodes{{{FLEET}}})", ref_id="F", instant=True),
        target(f"max by (worker) (cml_licensed{{{FLEET}}})", ref_id="G", instant=True),
        target(
            f"max by (worker, registration_status) (cml_license_info{{{FLEET}}})", ref_id="H", instant=True
        ),
        target(
            f"1000 * max by (worker) (cml_endpoint_last_success_timestamp_seconds{{{FLEET}}})",
            ref_id="I",
            instant=True,
        ),
    ]
    renames = {
        "worker": "worker",
        "Value #A": "Up",
        "Value #B": "Status",
        "Value #C": "Ready",
        "version": "Version",
        "Value #E": "Labs running",
        "Value #F": "Nodes running",
        "Value #G": "Licensed",
        "registration_status": "Registration",
        "Value #I": "Last successful probe",
    }
    transformations = _columns(renames)
    transformations[1]["options"]["excludeByName"].update({"Value #D": True, "Value #H": True})
    overrides = [
        column("worker", worker_link),
        column(
            "Status",
            [
                {"id": "mappings", "value": [_number_mapping(SERVICE_STATUSES)]},
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            ],
        ),
        *(
            column(
                name,
                [
                    {"id": "mappings", "value": [YES_NO]},
                    {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                ],
            )
            for name in ("Up", "Ready", "Licensed")
        ),
        column("Last successful probe", [{"id": "unit", "value": "dateTimeFromNow"}]),
    ]
    return table(
        "Workers",
        targets,
        transformations,
        overrides=overrides,
        size=(24, 10),
        description="One row per worker. The worker name links to the worker dashboard. "
        "The last successful probe is the latest success of any endpoint, empty before the first one.",
    )


def _fleet_history() -> list[Panel]:
    return [
        row("History"),
        timeline(
            "Service status",
            [target(status_code_query(FLEET), "{{worker}}")],
            [_number_mapping(SERVICE_STATUSES)],
            size=(24, 8),
        ),
        timeseries(
            "Labs by state",
            [target(f"sum by (state) (max by (worker, state) (cml_labs{{{FLEET}}}))", "{{state}}")],
            "none",
        ),
        timeseries(
            "Nodes by state",
            [target(f"sum by (state) (max by (worker, state) (cml_nodes{{{FLEET}}}))", "{{state}}")],
            "none",
        ),
        timeseries(
            "Labs running per worker",
            [target(f'max by (worker) (cml_labs{{{FLEET}, state="STARTED"}})', "{{worker}}")],
            "none",
        ),
        timeseries(
            "Nodes running per worker",
            [target(f"max by (worker) (cml_running_nodes{{{FLEET}}})", "{{worker}}")],
            "none",
        ),
    ]


def _fleet_probes() -> list[Panel]:
    rate = "[$__rate_interval]"
    return [
        row("Probes"),
        timeseries(
            "Workers with the endpoint down",
            [
                target(
                    f"sum by (endpoint) (1 - max by (worker, endpoint) (cml_endpoint_up{{{FLEET}}}))",
                    "{{endpoint}}",
                )
            ],
            "none",
            description="Workers whose latest request to the endpoint failed or was skipped.",
        ),
        timeseries(
            "Failures by reason",
            [
                target(
                    "sum by (reason) (max by (worker, endpoint, reason)"
                    f" (rate(cml_endpoint_failures_total{{{FLEET}}}{rate})))",
                    "{{reason}}",
                )
            ],
            "cps",
            stacked=True,
            description="Failed requests per second. The breaker_open reason counts calls an open breaker skipped.",
        ),
        timeseries(
            "Requests sent",
            [
                target(
                    "sum by (endpoint) (max by (worker, endpoint)"
                    f" (rate(cml_endpoint_requests_total{{{FLEET}}}{rate})))",
                    "{{endpoint}}",
                )
            ],
            "reqps",
            stacked=True,
        ),
        timeseries(
            "Slowest endpoint request",
            [target(f"max by (endpoint) (cml_endpoint_duration_seconds{{{FLEET}}})", "{{endpoint}}")],
            "s",
            description="Duration of the latest request to each endpoint, from the slowest worker.",
        ),
        timeseries(
            "Probe duration",
            [target(f"max by (worker) (cml_probe_duration_seconds{{{FLEET}}})", "{{worker}}")],
            "s",
            size=(24, 8),
            description="Duration of the latest refresh of each worker.",
        ),
    ]


def _fleet_exporter() -> list[Panel]:
    rate = "[$__rate_interval]"
    build = target(
        f"max by (instance, version, python_version) (cml_exporter_build_info{{{EXPORTER}}})", instant=True
    )
    return [
        row("Exporter"),
        table(
            "Build",
            [build],
            _columns({"instance": "Instance", "version": "Version", "python_version": "Python"}),
            size=(8, 6),
            overrides=[column("Value", [{"id": "custom.hidden", "value": True}])],
        ),
        stat(
            "Configured workers", [target(f"max(cml_exporter_workers{{{EXPORTER}}})", "workers")], size=(4, 6)
        ),
        stat(
            "Last reload successful",
            [target(f"min(cml_exporter_config_last_reload_successful{{{EXPORTER}}})", "reload")],
            mappings=[YES_NO],
            size=(4, 6),
        ),
        stat(
            "Last successful reload",
            [
                target(
                    f"1000 * max(cml_exporter_config_last_reload_success_timestamp_seconds{{{EXPORTER}}})",
                    "reload",
                )
            ],
            unit="dateTimeFromNow",
            size=(8, 6),
        ),
        timeseries(
            "Exporter CPU",
            [target(f"rate(process_cpu_seconds_total{{{EXPORTER}}}{rate})", "{{instance}}")],
            "percentunit",
        ),
        timeseries(
            "Exporter resident memory",
            [target(f"process_resident_memory_bytes{{{EXPORTER}}}", "{{instance}}")],
            "bytes",
        ),
    ]


def _alert_names() -> list[str]:
    """Return the names of the alerts in alerts/cml-exporter.rules.yml, in file order."""
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    return list(dict.fromkeys(names))


def _fleet_alerts() -> list[Panel]:
    # Grafana cannot lower-case a value inside a link, but the runbook's section anchors are the
    # lower-case alert names. So the query copies alertname into a runbook column, and a value
    # mapping on that column turns each known name into its anchor, which the link reads as text.
    alerts = target(
        'label_replace(ALERTS{alertname=~"Cml.*", alertstate="firing"}, "runbook", "$1", "alertname", "(.+)")',
        instant=True,
    )
    anchors = {
        "type": "value",
        "options": {name: {"text": name.lower(), "index": index} for index, name in enumerate(_alert_names())},
    }
    runbook_link = {"id": "links", "value": [{"title": "Runbook", "url": "${runbook_url}#${__value.text}"}]}
    renames = {
        "alertname": "Alert",
        "severity": "Severity",
        "worker": "worker",
        "endpoint": "Endpoint",
        "compute": "Compute host",
        "runbook": "Runbook",
    }
    transformations = _columns(renames)
    transformations[1]["options"]["excludeByName"].update({"Value": True, "alertstate": True})
    return [
        row("Alerts"),
        table(
            "CML alerts firing",
            [alerts],
            transformations,
            size=(24, 8),
            overrides=[column("Runbook", [{"id": "mappings", "value": [anchors]}, runbook_link])],
            description="Firing alerts whose name starts with Cml. The Runbook column links to the alert's "
            "section of the runbook, whose address the hidden runbook_url variable holds.",
        ),
    ]


def fleet_dashboard() -> dict[str, Any]:
    worker = query_variable("worker", "Worker", 'label_values(cml_up{job=~"$job"}, worker)', multi=True)
    runbook = {
        "name": "runbook_url",
        "label": "Runbook URL",
        # The same address as the runbook_url annotations in alerts/cml-exporter.rules.yml.
        "description": "Address of docs/runbook.md of cml-exporter; each alert links to its section.",
        "type": "textbox",
        "query": "https://github.com/cml-exporter/cml-exporter/blob/main/docs/runbook.md",
        "current": {},
        "hide": 2,
        "options": [],
    }
    panels = [
        *_fleet_counts(),
        _fleet_table(),
        *_fleet_history(),
        *_fleet_probes(),
        *_fleet_alerts(),
        *_fleet_exporter(),
    ]
    return dashboard(
        FLEET_UID,
        "CML fleet",
        "Every CML worker that cml-exporter probes: status, readiness, licences, labs, probes and alerts.",
        [datasource_variable(), job_variable(), worker, exporter_job_variable(), runbook],
        panels,
    )


# The worker dashboard.


def _worker_overview() -> list[Panel]:
    return [
        row("Overview"),
        stat(
            "Status", [target(status_code_query(ONE), "status")], mappings=[_number_mapping(SERVICE_STATUSES)]
        ),
        stat("Up", [target(f"max(cml_up{{{ONE}}})", "up")], mappings=[YES_NO]),
        stat("Ready", [target(f"max(cml_ready{{{ONE}}})", "ready")], mappings=[YES_NO]),
        stat(
            "Status since",
            [target(f"1000 * max(cml_service_status_since_timestamp_seconds{{{ONE}}})", "since")],
            unit="dateTimeFromNow",
        ),
        stat(
            "Version",
            [target(f"max by (version) (cml_version_info{{{ONE}}})", "{{version}}")],
            text_mode="name",
        ),
        stat("Probe duration", [target(f"max(cml_probe_duration_seconds{{{ONE}}})", "probe")], unit="s"),
        timeline(
            "Status, readiness and licence",
            [
                target(status_code_query(ONE), "status", "A"),
                target(f"max(cml_up{{{ONE}}})", "up", "B"),
                target(f"max(cml_ready{{{ONE}}})", "ready", "C"),
                target(f"max(cml_health_valid{{{ONE}}})", "health valid", "D"),
                target(f"max(cml_controller_valid{{{ONE}}})", "controller valid", "E"),
                target(f"max(cml_licensed{{{ONE}}})", "licensed", "F"),
            ],
            [YES_NO],
            size=(24, 8),
            overrides=[by_query("A", [_number_mapping(SERVICE_STATUSES)])],
        ),
    ]


def _worker_endpoints() -> list[Panel]:
    rate = "[$__rate_interval]"
    breaker = _encode_state_set("cml_endpoint_breaker_state", "state", ONE, "endpoint", BREAKER_STATES)
    targets = [
        target(f"max by (endpoint) (cml_endpoint_up{{{ONE}}})", ref_id="A", instant=True),
        target(breaker, ref_id="B", instant=True),
        target(f"max by (endpoint) (cml_endpoint_duration_seconds{{{ONE}}})", ref_id="C", instant=True),
        target(
            f"1000 * max by (endpoint) (cml_endpoint_last_success_timestamp_seconds{{{ONE}}})",
            ref_id="D",
            instant=True,
        ),
    ]
    renames = {
        "endpoint": "Endpoint",
        "Value #A": "Up",
        "Value #B": "Breaker",
        "Value #C": "Latest duration",
        "Value #D": "Last success",
    }
    overrides = [
        column(
            "Up",
            [
                {"id": "mappings", "value": [YES_NO]},
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            ],
        ),
        column(
            "Breaker",
            [
                {"id": "mappings", "value": [_number_mapping(BREAKER_STATES)]},
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            ],
        ),
        column("Latest duration", [{"id": "unit", "value": "s"}]),
        column("Last success", [{"id": "unit", "value": "dateTimeFromNow"}]),
    ]
    return [
        row("Endpoints"),
        table(
            "Endpoints now",
            targets,
            _columns(renames),
            overrides=overrides,
            size=(24, 8),
            description="The latest outcome of each endpoint. Last success is empty until the first success.",
        ),
        timeline(
            "Endpoint up", [target(f"max by (endpoint) (cml_endpoint_up{{{ONE}}})", "{{endpoint}}")], [YES_NO]
        ),
        timeline("Breaker state", [target(breaker, "{{endpoint}}")], [_number_mapping(BREAKER_STATES)]),
        timeseries(
            "Request duration",
            [target(f"max by (endpoint) (cml_endpoint_duration_seconds{{{ONE}}})", "{{endpoint}}")],
            "s",
        ),
        timeseries(
            "Failures by endpoint and reason",
            [
                target(
                    f"max by (endpoint, reason) (rate(cml_endpoint_failures_total{{{ONE}}}{rate}))",
                    "{{endpoint}} {{reason}}",
                )
            ],
            "cps",
            stacked=True,
        ),
        timeseries(
            "Requests sent",
            [target(f"max by (endpoint) (rate(cml_endpoint_requests_total{{{ONE}}}{rate}))", "{{endpoint}}")],
            "reqps",
            stacked=True,
        ),
        timeseries("Probe duration", [target(f"max(cml_probe_duration_seconds{{{ONE}}})", "probe")], "s"),
    ]


def _worker_computes() -> list[Panel]:
    admission = _encode_state_set("cml_compute_admission_state", "state", ONE, "compute", ADMISSION_STATES)
    return [
        row("Compute hosts"),
        timeseries(
            "CPU usage",
            [target(f"max by (compute) (cml_compute_cpu_usage_ratio{{{ONE}}})", "{{compute}}")],
            "percentunit",
            size=(8, 8),
        ),
        timeseries(
            "Memory used",
            [
                target(
                    f"max by (compute) (cml_compute_memory_used_bytes{{{ONE}}})"
                    f" / max by (compute) (cml_compute_memory_total_bytes{{{ONE}}})",
                    "{{compute}}",
                )
            ],
            "percentunit",
            size=(8, 8),
        ),
        timeseries(
            "Disk used",
            [
                target(
                    f"max by (compute) (cml_compute_disk_used_bytes{{{ONE}}})"
                    f" / max by (compute) (cml_compute_disk_total_bytes{{{ONE}}})",
                    "{{compute}}",
                )
            ],
            "percentunit",
            size=(8, 8),
        ),
        timeline(
            "Admission state",
            [target(admission, "{{compute}}")],
            [_number_mapping(ADMISSION_STATES)],
            size=(8, 8),
        ),
        timeline(
            "Compute valid",
            [target(f"max by (compute) (cml_compute_valid{{{ONE}}})", "{{compute}}")],
            [YES_NO],
            size=(8, 8),
        ),
        timeseries(
            "Running nodes per compute host",
            [target(f"max by (compute) (cml_compute_running_nodes{{{ONE}}})", "{{compute}}")],
            "none",
            size=(8, 8),
        ),
        table(
            "Compute hosts",
            [
                target(
                    f"max by (compute, is_controller) (cml_compute_info{{{ONE}}})", ref_id="A", instant=True
                ),
                target(f"max by (compute) (cml_compute_cpus{{{ONE}}})", ref_id="B", instant=True),
                target(
                    f"max by (compute) (cml_compute_memory_total_bytes{{{ONE}}})", ref_id="C", instant=True
                ),
                target(f"max by (compute) (cml_compute_disk_total_bytes{{{ONE}}})", ref_id="D", instant=True),
            ],
            _columns(
                {
                    "compute": "Compute host",
                    "is_controller": "Controller",
                    "Value #B": "CPUs",
                    "Value #C": "Memory",
                    "Value #D": "Disk",
                }
            ),
            overrides=[
                column("Value #A", [{"id": "custom.hidden", "value": True}]),
                column("Memory", [{"id": "unit", "value": "bytes"}]),
                column("Disk", [{"id": "unit", "value": "bytes"}]),
            ],
            size=(24, 6),
        ),
    ]


def _worker_labs() -> list[Panel]:
    return [
        row("Labs and nodes"),
        timeseries(
            "Labs by state",
            [target(f"max by (state) (cml_labs{{{ONE}}})", "{{state}}")],
            "none",
            stacked=True,
        ),
        timeseries(
            "Nodes by state",
            [target(f"max by (state) (cml_nodes{{{ONE}}})", "{{state}}")],
            "none",
            stacked=True,
        ),
        timeseries(
            "Running nodes",
            [target(f"max(cml_running_nodes{{{ONE}}})", "running nodes")],
            "none",
            size=(24, 6),
            description="Sum of the running nodes over the compute hosts (system_stats).",
        ),
    ]


def _worker_licence() -> list[Panel]:
    info = target(
        f"max by (product, registration_status, authorization_status) (cml_license_info{{{ONE}}})",
        instant=True,
    )
    features = [
        target(f"max by (feature) (cml_license_feature_in_use{{{ONE}}})", ref_id="A", instant=True),
        target(f"max by (feature) (cml_license_feature_limit{{{ONE}}})", ref_id="B", instant=True),
    ]
    return [
        row("Licence"),
        table(
            "Licence",
            [info],
            _columns(
                {
                    "product": "Product",
                    "registration_status": "Registration",
                    "authorization_status": "Authorization",
                }
            ),
            overrides=[column("Value", [{"id": "custom.hidden", "value": True}])],
            size=(8, 5),
        ),
        stat(
            "Registered",
            [target(f"max(cml_license_registered{{{ONE}}})", "registered")],
            mappings=[YES_NO],
            size=(4, 5),
        ),
        stat(
            "In compliance",
            [target(f"max(cml_license_in_compliance{{{ONE}}})", "in compliance")],
            mappings=[YES_NO],
            size=(4, 5),
        ),
        stat(
            "Registration expires",
            [
                target(
                    f"1000 * max(cml_license_registration_expiry_timestamp_seconds{{{ONE}}})", "registration"
                )
            ],
            unit="dateTimeFromNow",
            size=(4, 5),
        ),
        stat(
            "Authorization expires",
            [
                target(
                    f"1000 * max(cml_license_authorization_expiry_timestamp_seconds{{{ONE}}})",
                    "authorization",
                )
            ],
            unit="dateTimeFromNow",
            size=(4, 5),
        ),
        table(
            "Licence features",
            features,
            _columns({"feature": "Feature", "Value #A": "In use", "Value #B": "Limit"}),
            size=(24, 6),
        ),
    ]


def worker_dashboard() -> dict[str, Any]:
    worker = query_variable("worker", "Worker", 'label_values(cml_up{job=~"$job"}, worker)', multi=False)
    panels = [
        *_worker_overview(),
        *_worker_endpoints(),
        *_worker_computes(),
        *_worker_labs(),
        *_worker_licence(),
    ]
    return dashboard(
        WORKER_UID,
        "CML worker",
        "One CML worker in depth: status, endpoints and breakers, compute hosts, labs, nodes and licence.",
        [datasource_variable(), job_variable(), worker],
        panels,
    )


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


DASHBOARDS = {"cml-fleet.json": fleet_dashboard, "cml-worker.json": worker_dashboard}


def main() -> int:
    folder = Path(__file__).resolve().parent
    for name, build in DASHBOARDS.items():
        (folder / name).write_text(render(build()), encoding="utf-8")
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
