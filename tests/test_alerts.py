"""Check the alert rules against promtool, their unit tests, the runbook and the exporter's output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "alerts" / "cml-exporter.rules.yml"
RULE_TEST_FILES = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
RUNBOOK_FILE = ROOT / "docs" / "runbook.md"
RUNBOOK_BASE_URL = "https://github.com/cml-exporter/cml-exporter/blob/main/docs/runbook.md#"

# A PromQL identifier: a metric name, recording rule name, function, keyword or label name.
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
LABEL_MATCHERS = re.compile(r"\{[^}]*\}")



def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def load_rule_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TEST_FILES for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]]


ALERT_RULES = [rule for rule in load_rules() if "alert" in rule]
ALERT_NAMES = sorted({rule["alert"] for rule in ALERT_RULES})
RECORDING_RULES = {rule["record"]: rule["expr"] for rule in load_rules() if "record" in rule}


def rule_id(rule: dict[str, Any]) -> str:
    return f"{rule['alert']}-{rule['labels']['severity']}"


def metric_names(expr: str, recording_rules: dict[str, str]) -> set[str]:
    """Return the cml_* metric names an expression selects, with recording rules replaced by theirs."""
    code = LABEL_MATCHERS.sub("", STRING_LITERAL.sub("", expr))
    names: set[str] = set()
    for identifier in IDENTIFIER.findall(code):
        if identifier in recording_rules:
            names |= metric_names(recording_rules[identifier], recording_rules)
        elif identifier.startswith("cml_"):
            names.add(identifier)
    return names


def runbook_anchors() -> tuple[set[str], set[str]]:
    """Return the explicit `<a id>` anchors of the runbook and the GitHub anchors of its headings."""
    text = RUNBOOK_FILE.read_text(encoding="utf-8")
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    headings = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
    }
    return explicit, headings


def test_rules_pass_promtool_check() -> None:
    promtool = require_binary("promtool")

    result = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_promtool_unit_tests() -> None:
    promtool = require_binary("promtool")
    assert RULE_TEST_FILES, "alerts/tests/ holds no promtool test file"

    result = subprocess.run(
        [promtool, "test", "rules", *map(str, RULE_TEST_FILES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alertname", ALERT_NAMES)
def test_alert_has_firing_and_silent_case(alertname: str) -> None:
    cases = [
        case for test in load_rule_tests() for case in test.get("alert_rule_test", []) if case["alertname"] == alertname
    ]

    assert any(case.get("exp_alerts") for case in cases), f"{alertname}: no promtool case where it fires"
    assert any(not case.get("exp_alerts") for case in cases), f"{alertname}: no promtool case where it is silent"


@pytest.mark.parametrize("record", sorted(RECORDING_RULES))
def test_recording_rule_has_expr_test(record: str) -> None:
    exprs = [case["expr"].strip() for test in load_rule_tests() for case in test.get("promql_expr_test", [])]

    assert record in exprs, f"{record}: no promql_expr_test evaluates it"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=rule_id)
def test_alert_has_severity_and_annotations(rule: dict[str, Any]) -> None:
    annotations = rule.get("annotations", {})

    assert rule["alert"].startswith("Cml")
    assert rule.get("labels", {}).get("severity") in {"warning", "critical"}
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{rule['alert']}: annotation {key!r} missing"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=rule_id)
def test_runbook_url_points_to_runbook_section(rule: dict[str, Any]) -> None:
    alertname = rule["alert"]
    runbook_url = rule["annotations"]["runbook_url"]
    explicit, headings = runbook_anchors()

    assert runbook_url == RUNBOOK_BASE_URL + alertname.lower()
    assert alertname in explicit, f'docs/runbook.md lacks <a id="{alertname}"></a>'
    assert alertname.lower() in headings, f"docs/runbook.md lacks a heading '## {alertname}'"


def test_metric_names_expand_recording_rules() -> None:
    recording_rules = {"worker:cml_up:max5m": "max by (worker) (max_over_time(cml_up[5m]))"}
    expr = 'worker:cml_up:max5m == 0 and on (worker) cml_ready{worker=~"cml_x"} and up{job="cml-workers"}'

    assert metric_names(expr, recording_rules) == {"cml_up", "cml_ready"}


def test_rule_metrics_exist_in_exporter_output(exporter_exposition: str) -> None:
    """Every cml_* series a rule reads, directly or through a recording rule, is exposed."""
    exposed = {
        sample.name for family in text_string_to_metric_families(exporter_exposition) for sample in family.samples
    }
    referenced = {
        (rule.get("alert") or rule["record"], name)
        for rule in load_rules()
        for name in metric_names(rule["expr"], RECORDING_RULES)
    }

    missing = sorted(f"{rule_name}: {name}" for rule_name, name in referenced if name not in exposed)

    assert referenced, "no rule reads a cml_* metric"
    assert not missing, "metrics not exposed by the exporter:\n" + "\n".join(missing)
