#!/usr/bin/env python3
"""Generate prometheusrule.yaml, the Prometheus Operator form of alerts/cml-exporter.rules.yml.

The rules file stays the single source, and promtool tests it. This script wraps its groups
in a PrometheusRule, so the Kubernetes deployment ships the same alerts.

    python3 deploy/kubernetes/generate_prometheusrule.py           # rewrite the manifest
    python3 deploy/kubernetes/generate_prometheusrule.py --check   # exit 1 when out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES_FILE = HERE.parent.parent / "alerts" / "cml-exporter.rules.yml"
MANIFEST_FILE = HERE / "prometheusrule.yaml"

HEADER = """\
# Generated from alerts/cml-exporter.rules.yml by generate_prometheusrule.py: do not edit.
# Change the rules file, then run: python3 deploy/kubernetes/generate_prometheusrule.py
"""


class _BlockStyleDumper(yaml.SafeDumper):
    """A SafeDumper that writes multi-line strings (PromQL, descriptions) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _represent_str)


def load_rule_groups(rules_file: Path = RULES_FILE) -> list[dict[str, Any]]:
    """Read the rule groups of a Prometheus rules file.

    Raises:
        ValueError: the file has no non-empty `groups` list.
    """
    document = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    groups = document.get("groups") if isinstance(document, dict) else None
    if not isinstance(groups, list) or not groups:
        msg = f"{rules_file}: expected a non-empty 'groups' list, found {type(groups).__name__}"
        raise ValueError(msg)
    return groups


def render_manifest(groups: list[dict[str, Any]]) -> str:
    """Render the PrometheusRule manifest text for the given rule groups."""
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "cml-exporter"},
        "spec": {"groups": groups},
    }
    body = yaml.dump(manifest, Dumper=_BlockStyleDumper, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing, and exit 1 when prometheusrule.yaml differs from the rules file's groups",
    )
    args = parser.parse_args(argv)

    expected = render_manifest(load_rule_groups())

    if args.check:
        current = MANIFEST_FILE.read_text(encoding="utf-8") if MANIFEST_FILE.exists() else ""
        if current != expected:
            print(
                f"{MANIFEST_FILE.name} is out of date with {RULES_FILE.name}; "
                f"run: python3 deploy/kubernetes/{Path(__file__).name}",
                file=sys.stderr,
            )
            return 1
        return 0

    MANIFEST_FILE.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
