"""Rendering: turn worker snapshots into fresh Prometheus metric families on every scrape.

No I/O happens here and no family outlives the response it was built for, so a lab, compute host,
licence feature or failure reason that went away leaves no series behind. Sample output:

    cml_up{worker="worker-01"} 1.0
    cml_ready{worker="worker-01"} 1.0
    cml_service_status{status="available",worker="worker-01"} 1.0
    cml_endpoint_up{endpoint="system_health",worker="worker-01"} 0.0
    cml_endpoint_failures_total{endpoint="system_health",reason="timeout",worker="worker-01"} 3.0
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from exporter import __version__
from exporter.breaker import STATES as BREAKER_STATES
from exporter.labels import clean_label
from exporter.parse import ADMISSION_STATES, LAB_STATES, NODE_STATES
from exporter.snapshot import ENDPOINTS, STATUSES, WorkerSnapshot

# Node states in which a node uses compute resources; matches how CML counts running nodes.
ACTIVE_NODE_STATES = frozenset({"STARTED", "QUEUED", "BOOTED"})


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _flag(value: bool | None) -> float | None:
    return None if value is None else float(value)


class _Families:
    """The families of one response, created empty and filled worker by worker."""

    def __init__(self) -> None:
        worker = ["worker"]
        endpoint = ["worker", "endpoint"]
        compute = ["worker", "compute"]
        self.up = _gauge(
            "cml_up", "1 if any CML API endpoint of the worker answered in the latest probe, else 0.", worker
        )
        self.ready = _gauge(
            "cml_ready", "1 if system_information last reported the worker ready to start nodes.", worker
        )
        self.status = _gauge(
            "cml_service_status", "Service status of the worker; exactly one status is 1.", ["worker", "status"]
        )
        self.status_since = _gauge(
            "cml_service_status_since_timestamp_seconds",
            "Unix time at which the worker entered its current service status, as seen by this exporter.",
            worker,
        )
        self.version = InfoMetricFamily("cml_version", "CML version reported by the worker.", labels=worker)
        self.health_valid = _gauge("cml_health_valid", "1 if the worker reports itself healthy, else 0.", worker)
        self.controller_valid = _gauge("cml_controller_valid", "1 if the controller services are healthy.", worker)
        self.licensed = _gauge("cml_licensed", "1 if the worker reports a valid licence, else 0.", worker)
        self.license = InfoMetricFamily(
            "cml_license", "Licence product and status strings of the worker.", labels=worker
        )
        self.license_registered = _gauge(
            "cml_license_registered", "1 if the Smart Licensing registration is complete, else 0.", worker
        )
        self.license_compliant = _gauge(
            "cml_license_in_compliance", "1 if the licence authorization is in compliance, else 0.", worker
        )
        self.registration_expiry = _gauge(
            "cml_license_registration_expiry_timestamp_seconds", "Unix time at which the registration expires.", worker
        )
        self.authorization_expiry = _gauge(
            "cml_license_authorization_expiry_timestamp_seconds",
            "Unix time at which the authorization expires.",
            worker,
        )
        self.feature_in_use = _gauge(
            "cml_license_feature_in_use", "Licence units of a feature in use.", ["worker", "feature"]
        )
        self.feature_limit = _gauge(
            "cml_license_feature_limit", "Licence units of a feature available.", ["worker", "feature"]
        )
        self.labs = _gauge("cml_labs", "Labs on the worker by lab state.", ["worker", "state"])
        self.nodes = _gauge("cml_nodes", "Lab nodes on the worker by node state.", ["worker", "state"])
        self.running_nodes = _gauge(
            "cml_running_nodes", "Nodes running on the worker's compute hosts, as the hosts count them.", worker
        )
        self.owner_labs = _gauge("cml_owner_labs", "Labs per owner and lab state.", ["worker", "owner", "state"])
        self.owner_nodes = _gauge(
            "cml_owner_nodes", "Nodes per lab owner and node state.", ["worker", "owner", "state"]
        )
        self.compute_info = _gauge(
            "cml_compute_info", "A compute host of the worker; always 1.", ["worker", "compute", "is_controller"]
        )
        self.compute_valid = _gauge("cml_compute_valid", "1 if the compute host reports itself healthy.", compute)
        self.compute_admission = _gauge(
            "cml_compute_admission_state",
            "Admission state of the compute host; exactly one state is 1.",
            ["worker", "compute", "state"],
        )
        self.compute_cpu = _gauge("cml_compute_cpu_usage_ratio", "CPU usage of the compute host, 0 to 1.", compute)
        self.compute_cpus = _gauge("cml_compute_cpus", "Logical CPUs of the compute host.", compute)
        self.memory_used = _gauge(
            "cml_compute_memory_used_bytes", "Memory in use on the compute host, in bytes.", compute
        )
        self.memory_total = _gauge("cml_compute_memory_total_bytes", "Memory of the compute host, in bytes.", compute)
        self.disk_used = _gauge(
            "cml_compute_disk_used_bytes", "Disk space in use on the compute host, in bytes.", compute
        )
        self.disk_total = _gauge("cml_compute_disk_total_bytes", "Disk space of the compute host, in bytes.", compute)
        self.compute_running = _gauge("cml_compute_running_nodes", "Nodes running on the compute host.", compute)
        self.endpoint_up = _gauge(
            "cml_endpoint_up", "1 if the latest request to the endpoint succeeded, else 0.", endpoint
        )
        self.endpoint_success = _gauge(
            "cml_endpoint_last_success_timestamp_seconds",
            "Unix time of the latest successful request to the endpoint.",
            endpoint,
        )
        self.endpoint_duration = _gauge(
            "cml_endpoint_duration_seconds", "Duration of the latest request to the endpoint, in seconds.", endpoint
        )
        self.endpoint_requests = CounterMetricFamily(
            "cml_endpoint_requests", "Requests sent to the endpoint by this exporter.", labels=endpoint
        )
        self.endpoint_failures = CounterMetricFamily(
            "cml_endpoint_failures",
            "Failed attempts at the endpoint, by reason.",
            labels=["worker", "endpoint", "reason"],
        )
        self.breaker_state = _gauge(
            "cml_endpoint_breaker_state",
            "State of the endpoint's circuit breaker; exactly one state is 1.",
            ["worker", "endpoint", "state"],
        )
        self.probe_duration = _gauge(
            "cml_probe_duration_seconds", "Duration of the latest refresh of the worker, in seconds.", worker
        )
        self.retry_after_until = _gauge(
            "cml_retry_after_until_timestamp_seconds",
            "Unix time until which the worker asked, with Retry-After, to be sent no requests; absent otherwise.",
            worker,
        )

    def all(self) -> list[Metric]:
        return [value for value in vars(self).values() if isinstance(value, Metric)]


def _add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)


def _render_worker(families: _Families, snapshot: WorkerSnapshot) -> None:
    name = snapshot.worker
    families.up.add_metric([name], float(snapshot.up))
    families.ready.add_metric([name], float(snapshot.ready))
    for status in STATUSES:
        families.status.add_metric([name, status], float(status == snapshot.status))
    families.status_since.add_metric([name], snapshot.status_since)
    _add(families.probe_duration, [name], snapshot.probe_duration)
    _add(families.retry_after_until, [name], snapshot.retry_after_until)
    _render_endpoints(families, snapshot)

    information = snapshot.information
    if information is not None:
        families.version.add_metric([name], {"version": clean_label(information.version)})
    _render_health(families, snapshot)
    _render_stats(families, snapshot)
    _render_licensing(families, snapshot)
    _render_labs(families, snapshot)


def _render_endpoints(families: _Families, snapshot: WorkerSnapshot) -> None:
    name = snapshot.worker
    for endpoint in ENDPOINTS:
        state = snapshot.endpoints[endpoint]
        labels = [name, endpoint]
        families.endpoint_up.add_metric(labels, float(state.up))
        _add(families.endpoint_success, labels, state.last_success_at)
        if state.attempt is not None:
            _add(families.endpoint_duration, labels, state.attempt.duration)
        families.endpoint_requests.add_metric(labels, state.requests_total)
        for reason, count in sorted(state.failures_total.items()):
            families.endpoint_failures.add_metric([name, endpoint, reason], count)
        for breaker_state in BREAKER_STATES:
            families.breaker_state.add_metric(
                [name, endpoint, breaker_state], float(breaker_state == state.breaker_state)
            )


def _compute_names(snapshot: WorkerSnapshot) -> dict[str, str]:
    """Label each compute host by its host name, falling back to its id when the name is missing or shared."""
    hostnames: dict[str, str | None] = {}
    for source in (snapshot.health, snapshot.stats):
        if source is None:
            continue
        for compute_id, compute in source.computes.items():
            if hostnames.get(compute_id) is None:
                hostnames[compute_id] = compute.hostname
    # Count the cleaned names: two host names that differ only past the length limit would become one series.
    cleaned = {compute_id: clean_label(hostname) for compute_id, hostname in hostnames.items() if hostname is not None}
    counts = Counter(cleaned.values())
    return {
        compute_id: cleaned[compute_id] if counts[cleaned.get(compute_id, "")] == 1 else clean_label(compute_id)
        for compute_id in hostnames
    }


def _render_health(families: _Families, snapshot: WorkerSnapshot) -> None:
    health = snapshot.health
    if health is None:
        return
    name = snapshot.worker
    _add(families.health_valid, [name], _flag(health.valid))
    _add(families.controller_valid, [name], _flag(health.controller_valid))
    _add(families.licensed, [name], _flag(health.is_licensed))
    compute_names = _compute_names(snapshot)
    for compute_id, compute in health.computes.items():
        labels = [name, compute_names[compute_id]]
        _add(families.compute_valid, labels, _flag(compute.valid))
        if compute.admission_state is not None:
            # A state that a newer CML adds is shown under its own name, so exactly one state is still 1.
            current = clean_label(compute.admission_state)
            states = ADMISSION_STATES if current in ADMISSION_STATES else (*ADMISSION_STATES, current)
            for state in states:
                families.compute_admission.add_metric([*labels, state], float(state == current))
    stats_ids = set(snapshot.stats.computes) if snapshot.stats is not None else set()
    for compute_id, compute in health.computes.items():
        if compute_id not in stats_ids:
            is_controller = "unknown" if compute.is_controller is None else str(compute.is_controller).lower()
            families.compute_info.add_metric([name, compute_names[compute_id], is_controller], 1.0)


def _render_stats(families: _Families, snapshot: WorkerSnapshot) -> None:
    stats = snapshot.stats
    if stats is None:
        return
    name = snapshot.worker
    _add(families.running_nodes, [name], stats.running_nodes)
    compute_names = _compute_names(snapshot)
    health_computes = snapshot.health.computes if snapshot.health is not None else {}
    for compute_id, compute in stats.computes.items():
        labels = [name, compute_names[compute_id]]
        is_controller_flag = compute.is_controller
        if is_controller_flag is None and compute_id in health_computes:
            is_controller_flag = health_computes[compute_id].is_controller
        is_controller = "unknown" if is_controller_flag is None else str(is_controller_flag).lower()
        families.compute_info.add_metric([*labels, is_controller], 1.0)
        _add(families.compute_cpu, labels, None if compute.cpu_percent is None else compute.cpu_percent / 100)
        _add(families.compute_cpus, labels, compute.cpus)
        _add(families.memory_used, labels, compute.memory_used)
        _add(families.memory_total, labels, compute.memory_total)
        _add(families.disk_used, labels, compute.disk_used)
        _add(families.disk_total, labels, compute.disk_total)
        _add(families.compute_running, labels, compute.running_nodes)


def _render_licensing(families: _Families, snapshot: WorkerSnapshot) -> None:
    licensing = snapshot.licensing
    if licensing is None:
        return
    name = snapshot.worker
    families.license.add_metric(
        [name],
        {
            "product": clean_label(licensing.product),
            "registration_status": clean_label(licensing.registration_status),
            "authorization_status": clean_label(licensing.authorization_status),
        },
    )
    if licensing.registration_status is not None:
        families.license_registered.add_metric([name], float(licensing.registration_status == "COMPLETED"))
    if licensing.authorization_status is not None:
        families.license_compliant.add_metric([name], float(licensing.authorization_status == "IN_COMPLIANCE"))
    _add(families.registration_expiry, [name], licensing.registration_expires)
    _add(families.authorization_expiry, [name], licensing.authorization_expires)
    seen: set[str] = set()
    for feature in licensing.features:
        label = clean_label(feature.name)
        if label in seen:
            continue
        seen.add(label)
        _add(families.feature_in_use, [name, label], feature.in_use)
        _add(families.feature_limit, [name, label], feature.limit)


def _render_labs(families: _Families, snapshot: WorkerSnapshot) -> None:
    labs = snapshot.labs
    if labs is None:
        return
    name = snapshot.worker
    lab_counts: Counter[str] = Counter()
    node_counts: Counter[str] = Counter()
    owner_labs: Counter[tuple[str, str]] = Counter()
    owner_nodes: Counter[tuple[str, str]] = Counter()
    for lab in labs.labs:
        owner = clean_label(lab.owner)
        if lab.state is not None:
            lab_counts[lab.state] += 1
            owner_labs[(owner, lab.state)] += 1
        for state in lab.node_states or ():
            node_counts[state] += 1
            owner_nodes[(owner, state)] += 1
    # Unknown states from a newer controller are still counted, under their own (cleaned) name.
    for state in sorted(set(LAB_STATES) | set(lab_counts)):
        families.labs.add_metric([name, clean_label(state)], lab_counts[state])
    for state in sorted(set(NODE_STATES) | set(node_counts)):
        families.nodes.add_metric([name, clean_label(state)], node_counts[state])
    if snapshot.per_owner:
        for (owner, state), count in sorted(owner_labs.items()):
            families.owner_labs.add_metric([name, owner, clean_label(state)], count)
        for (owner, state), count in sorted(owner_nodes.items()):
            families.owner_nodes.add_metric([name, owner, clean_label(state)], count)


def worker_families(snapshots: Iterable[WorkerSnapshot]) -> list[Metric]:
    """Build the worker-scope families for the given snapshots."""
    families = _Families()
    for snapshot in snapshots:
        _render_worker(families, snapshot)
    return families.all()


def exporter_families(workers: int, reload_successful: bool, reload_success_at: float | None) -> Iterator[Metric]:
    """Build the exporter's own families, served on /metrics only."""
    build = InfoMetricFamily("cml_exporter_build", "Version of cml-exporter and of the Python running it.")
    build.add_metric([], {"version": __version__, "python_version": platform.python_version()})
    yield build
    yield GaugeMetricFamily("cml_exporter_workers", "Workers in the running configuration.", value=workers)
    yield GaugeMetricFamily(
        "cml_exporter_config_last_reload_successful",
        "1 if the latest configuration load succeeded, else 0.",
        value=float(reload_successful),
    )
    if reload_success_at is not None:
        yield GaugeMetricFamily(
            "cml_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the latest successful configuration load.",
            value=reload_success_at,
        )
