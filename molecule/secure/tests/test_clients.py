"""The clients and the monitoring stack with security on, checked from the Docker host.

A keyed task sent from the controller over SASL_SSL, as the client user whose ACLs allow only sending, runs on the
worker node; the worker's and the lag exporter's
credentials sit in root-only EnvironmentFiles and nowhere on a command line; the lag exporter reads offsets over
SASL_SSL; Prometheus and Alertmanager answer 401 without their basic-auth credentials and 200 with them, while
Prometheus itself scrapes and alerts with credentials; Grafana's rendered files keep anonymous access off and give
its datasource basic auth. The lag exporter reports when each broker's certificate expires, and a renewal by the
playbook rolls through the nodes under a keyed load with no task lost and each key in order.
"""

from __future__ import annotations

import configparser
import json
import os
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from celery_kafka.app import create_app
from celery_kafka.partitioning import partition_for_key
from celery_kafka.security import KafkaSecurity
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed
from verify_support import address, host, poll, registered_tasks, rolling_restart_by

SCENARIO = Path(__file__).resolve().parents[1]
BROKERS = ("secure-kafka1", "secure-kafka2", "secure-kafka3")
WORKER = "secure-celery1"
MONITOR = "secure-monitor1"
RESULTS = "/var/lib/celery-worker/results.jsonl"
CA = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "kafka-tls" / "ca.crt"


def scenario_vars(*parts: str) -> dict:
    return yaml.safe_load(SCENARIO.joinpath("group_vars", *parts).read_text()) or {}


SETTINGS = scenario_vars("all.yml")
AUTH = scenario_vars("monitoring", "auth.yml")
PROMETHEUS_AUTH = (AUTH["prometheus_web_auth_username"], AUTH["prometheus_web_auth_password"])
ALERTMANAGER_AUTH = (AUTH["alertmanager_web_auth_username"], AUTH["alertmanager_web_auth_password"])
SECRETS = [
    SETTINGS["secure_celery_kafka_password"],
    SETTINGS["secure_lag_exporter_kafka_password"],
    SETTINGS["secure_client_kafka_password"],
    PROMETHEUS_AUTH[1],
    ALERTMANAGER_AUTH[1],
]


@pytest.fixture(scope="module")
def env() -> WorkerEnvironment:
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism=SETTINGS["kafka_sasl_mechanism"],
        sasl_username=SETTINGS["secure_client_kafka_username"],
        sasl_password=SETTINGS["secure_client_kafka_password"],
        ssl_ca_location=str(CA),
    )
    return WorkerEnvironment(brokers=[f"{address(name)}:9092" for name in BROKERS], security=security)


def test_keyed_task_sent_over_sasl_ssl_runs_on_the_worker(env):
    run_id = uuid.uuid4().hex[:8]
    key = f"secure-{run_id}"
    assert partition_for_key(key, 1) == 0
    send_keyed(create_app(env), "demo_app.tasks.record", key, key, 0, run_id)
    worker = host(WORKER)

    def recorded() -> list[dict]:
        rows = [json.loads(line) for line in worker.run(f"cat {RESULTS} 2>/dev/null").stdout.splitlines() if line.strip()]
        return [row for row in rows if row.get("run_id") == run_id]

    [row] = poll(recorded, timeout=120, message=f"task {key} recorded on {WORKER}")
    assert (row["key"], row["partition"]) == (key, 0)


def test_a_production_style_worker_registers_only_the_apps_own_tasks():
    """Deployed as a team deploys its app (no DEMO_APP_FAULT_TASKS here): the worker's startup banner lists the app's
    four tasks and nothing else, no fault task (crash, memory_hog) and nothing from the celery_kafka library."""
    app_tasks = {f"demo_app.tasks.{name}" for name in ("record", "export", "tick", "flaky")}
    assert registered_tasks(host(WORKER), 0) == app_tasks


@pytest.mark.parametrize(
    ("name", "path"),
    [(WORKER, "/etc/celery-worker/kafka-client.env"), (MONITOR, "/etc/celery-kafka-exporter/exporter.env")],
    ids=["worker", "lag-exporter"],
)
def test_environment_files_with_kafka_passwords_are_root_only(name, path):
    node = host(name)
    env_file = node.file(path)
    assert env_file.exists
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
    content = node.run(f"cat {path}").stdout
    assert "CELERY_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in content
    assert "CELERY_KAFKA_SSL_CA_LOCATION=" in content
    # Neither on a command line nor in the journal.
    commands = node.check_output("ps -eo args")
    journal = node.run("journalctl --no-pager -q -u 'celery-worker@*' -u celery-kafka-exporter").stdout
    for secret in SECRETS:
        assert secret not in commands
        assert secret not in journal


def test_lag_exporter_reads_offsets_over_sasl_ssl():
    metrics = f"http://{address(MONITOR)}:9308/metrics"

    def up() -> bool:
        return "celery_kafka_exporter_up 1.0" in requests.get(metrics, timeout=30).text

    poll(up, timeout=60, message="celery_kafka_exporter_up 1")
    assert 'kafka_consumergroup_lag{consumergroup="celery.tasks.workers"' in requests.get(metrics, timeout=30).text


@pytest.mark.parametrize("service", ["prometheus", "alertmanager"])
def test_web_api_needs_basic_auth(service, prometheus, alertmanager):
    base, credentials, path = {
        "prometheus": (prometheus, PROMETHEUS_AUTH, "/api/v1/status/buildinfo"),
        "alertmanager": (alertmanager, ALERTMANAGER_AUTH, "/api/v2/status"),
    }[service]
    assert requests.get(base + path, timeout=10).status_code == 401
    assert requests.get(base + path, auth=(credentials[0], "not-the-password"), timeout=10).status_code == 401
    assert requests.get(base + path, auth=credentials, timeout=10).status_code == 200


def test_prometheus_scrapes_itself_and_alertmanager_with_credentials(prometheus):
    def targets() -> dict[str, str] | None:
        active = requests.get(f"{prometheus}/api/v1/targets", auth=PROMETHEUS_AUTH, timeout=10).json()["data"]["activeTargets"]
        health = {
            target["labels"]["job"]: target["health"] for target in active if target["labels"]["job"] in {"prometheus", "alertmanager"}
        }
        return health if set(health.values()) == {"up"} and len(health) == 2 else None

    poll(targets, timeout=90, message="jobs prometheus and alertmanager up")
    answer = requests.get(f"{prometheus}/api/v1/alertmanagers", auth=PROMETHEUS_AUTH, timeout=10).json()
    assert answer["data"]["activeAlertmanagers"], answer


def test_web_configs_hold_hashes_only():
    node = host(MONITOR)
    for path in ("/etc/prometheus/web.yml", "/etc/prometheus/alertmanager-web.yml"):
        web = node.file(path)
        assert web.exists and web.mode == 0o640 and web.user == "root"
        content = node.run(f"cat {path}").stdout
        assert "$2b$" in content
        assert not any(secret in content for secret in SECRETS)
    prometheus_yml = node.run("cat /etc/prometheus/prometheus.yml").stdout
    assert "password_file" in prometheus_yml and not any(secret in prometheus_yml for secret in SECRETS)


def test_grafana_rendered_files_keep_anonymous_off_and_use_basic_auth():
    node = host(MONITOR)
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(node.run("cat /etc/grafana/grafana.ini").stdout)
    assert ini["auth.anonymous"]["enabled"] == "false"
    [source] = yaml.safe_load(node.run("cat /etc/grafana/provisioning/datasources/prometheus.yml").stdout)["datasources"]
    assert (source["basicAuth"], source["basicAuthUser"]) == (True, PROMETHEUS_AUTH[0])
    assert source["secureJsonData"]["basicAuthPassword"] == PROMETHEUS_AUTH[1]
    datasource = node.file("/etc/grafana/provisioning/datasources/prometheus.yml")
    assert datasource.mode & 0o007 == 0, "the datasource file holds a password: not world-readable"


# --- Certificate expiry: reported as served, renewed by the playbook one node at a time ---------------------------


def served_certificate(name: str) -> dict:
    """The certificate broker `name` serves on its CLIENT listener, as getpeercert() gives it (checked against the CA)."""
    context = ssl.create_default_context(cafile=str(CA))
    with socket.create_connection((address(name), 9092), timeout=10) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
        return tls.getpeercert()


def expiry_metrics() -> dict[str, float]:
    text = requests.get(f"http://{address(MONITOR)}:9308/metrics", timeout=30).text
    prefix = 'kafka_broker_certificate_expiry_timestamp_seconds{broker="'
    return {line[len(prefix) :].split('"')[0]: float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)}


def test_the_lag_exporter_reports_when_each_brokers_certificate_expires():
    metrics = poll(lambda: expiry_metrics() or None, timeout=60, message="certificate expiry metrics")
    for name in BROKERS:
        not_after = ssl.cert_time_to_seconds(served_certificate(name)["notAfter"])
        assert metrics[f"{name}:9092"] == not_after
        days_left = (not_after - time.time()) / 86400
        assert 820 < days_left <= 825, days_left  # kafka_tls_node_valid_days


def test_certificates_due_for_renewal_are_renewed_one_node_at_a_time_under_a_keyed_load(env):
    """Every certificate counts as due (renewal window longer than its validity): the playbook signs new ones and the
    rolling restart loads them, never two nodes down, while a client keeps sending keyed tasks. Every task runs, and
    each key's tasks run in the order they were sent."""
    before = {name: served_certificate(name) for name in BROKERS}
    app = create_app(env)
    run_id = uuid.uuid4().hex[:8]
    sent: dict[str, tuple[str, int]] = {}
    refused: list[str] = []
    stop = threading.Event()

    def load() -> None:
        sequence = 0
        while not stop.is_set():
            key = f"renew-{sequence % 5}"
            try:
                sent[send_keyed(app, "demo_app.tasks.record", key, key, sequence, run_id).id] = (key, sequence)
            except Exception as error:  # any failed send is reported
                refused.append(repr(error))
            sequence += 1
            time.sleep(0.1)

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    try:
        summary = rolling_restart_by({"kafka_tls_node_renew_before_days": 100000})
    finally:
        stop.set()
        sender.join(timeout=60)
    after = {name: served_certificate(name) for name in BROKERS}
    for name in BROKERS:
        assert after[name]["serialNumber"] != before[name]["serialNumber"], f"{name} serves its old certificate"
        assert ssl.cert_time_to_seconds(after[name]["notAfter"]) >= ssl.cert_time_to_seconds(before[name]["notAfter"])

    worker = host(WORKER)

    def all_ran() -> list[dict] | None:
        rows = [json.loads(line) for line in worker.run(f"grep -F '{run_id}' {RESULTS} || true").stdout.splitlines() if line.strip()]
        return rows if {row["task_id"] for row in rows} >= set(sent) else None

    rows = poll(all_ran, timeout=180, message=f"all {len(sent)} tasks of the load recorded")
    first_runs: dict[str, list[int]] = {}
    seen: set[str] = set()
    for row in rows:
        if row["task_id"] not in seen:
            seen.add(row["task_id"])
            first_runs.setdefault(row["key"], []).append(row["seq"])
    out_of_order = {key: seqs for key, seqs in first_runs.items() if seqs != sorted(seqs)}
    duplicates = len(rows) - len(seen)
    print(f"\nrenewal: {summary}; {len(sent)} tasks sent, 0 lost, {duplicates} duplicates, {len(out_of_order)} keys out of order")
    assert refused == [], refused[:3]
    assert out_of_order == {}
