"""Monitoring against the live stack: targets, rules, every dashboard query, the lag alert end to end, Grafana.

Prometheus and Alertmanager are queried over HTTP from the controller (container addresses); tasks are sent through
the brokers' CLIENT listeners. The scenario's inventory shortens the lag alert to 20 s and scrapes every 5 s.
Tests run in file order: the lag-alert test stops and restarts the workers, so it comes after the dashboard test.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests
import yaml

from celery_kafka.partitioning import partition_for_key
from celery_kafka.tasks import send_keyed
from verify_support import client, host, inventory, poll

TOPOLOGY = inventory()
BROKERS = TOPOLOGY.brokers
# The worker nodes of the task topic (where the tests below send their keyed tasks), and those of every queue.
WORKERS = TOPOLOGY.workers
ALL_WORKERS = TOPOLOGY.all_workers
MONITOR = TOPOLOGY.monitor
ALL_HOSTS = TOPOLOGY.hosts
DASHBOARDS_DIR = "/var/lib/grafana/dashboards/kafka-celery-stack"
PROVISIONING = "/etc/grafana/provisioning"
EXPECTED_ALERTS = {
    "KafkaBrokerDown",
    "KafkaUnderReplicatedPartitions",
    "KafkaOfflinePartitions",
    "KafkaActiveControllerCountNotOne",
    "KafkaCertificateExpiresSoon",
    "KafkaConsumerLagHigh",
    "CeleryWorkerDown",
    "CeleryTaskFailureRatioHigh",
    "CeleryDeadLettersGrowing",
    "CeleryWorkerMemoryHigh",
}
LAG_TASKS = 1100


@pytest.fixture(scope="module")
def app():
    return client()


def api(url: str, **params: str) -> Any:
    response = requests.get(url, params=params, timeout=10)
    response.raise_for_status()
    body = response.json()
    return body["data"] if isinstance(body, dict) and "data" in body else body


def query(prometheus: str, expr: str) -> list[dict]:
    return api(f"{prometheus}/api/v1/query", query=expr)["result"]


def test_every_target_is_up(prometheus):
    expected_jobs = {"prometheus", "kafka", "celery_workers", "kafka_lag", "node", "alertmanager"}

    def all_up():
        targets = api(f"{prometheus}/api/v1/targets")["activeTargets"]
        down = [(t["labels"]["job"], t["labels"]["instance"], t.get("lastError")) for t in targets if t["health"] != "up"]
        return targets if targets and not down else None

    targets = poll(all_up, timeout=120, message="every Prometheus target up")
    by_job: dict[str, set[str]] = {}
    for target in targets:
        by_job.setdefault(target["labels"]["job"], set()).add(target["labels"]["instance"])
    assert set(by_job) == expected_jobs
    assert by_job["kafka"] == set(BROKERS)
    assert by_job["celery_workers"] == set(ALL_WORKERS)
    assert by_job["node"] == set(ALL_HOSTS)
    assert by_job["kafka_lag"] == {MONITOR}
    # The worker's partition label comes from the inventory.
    partitions = {t["labels"]["instance"]: t["labels"].get("partition") for t in targets if t["labels"]["job"] == "celery_workers"}
    assert partitions == {name: str(partition) for name, partition in ALL_WORKERS.items()}


def test_every_alert_rule_is_loaded(prometheus):
    groups = api(f"{prometheus}/api/v1/rules")["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert loaded == EXPECTED_ALERTS
    unhealthy = [(rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"] if rule["health"] != "ok"]
    assert unhealthy == []


def test_prometheus_sends_alerts_to_alertmanager(prometheus):
    active = api(f"{prometheus}/api/v1/alertmanagers")["activeAlertmanagers"]
    assert [am["url"] for am in active] == [f"http://{MONITOR}:9093/api/v2/alerts"]


def generate_task_traffic(app, run_id: str) -> None:
    """Successes on every partition, a retried task, and a task that fails for good (a dead letter)."""
    for partition in WORKERS.values():
        key = next(f"traffic-{run_id}-{n}" for n in range(1000) if partition_for_key(f"traffic-{run_id}-{n}", len(WORKERS)) == partition)
        for sequence in range(5):
            send_keyed(app, "demo_app.tasks.record", key, key, sequence, run_id)
    send_keyed(app, "demo_app.tasks.flaky", f"flaky-{run_id}", f"flaky-{run_id}", 1, run_id)
    send_keyed(app, "demo_app.faults.always_fails", f"fails-{run_id}", f"fails-{run_id}", run_id)


def dashboard_queries(monitor) -> list[tuple[str, str, str]]:
    files = monitor.run(f"ls {DASHBOARDS_DIR}").stdout.split()
    assert len(files) == 5, files
    found = []
    for name in files:
        board = json.loads(monitor.file(f"{DASHBOARDS_DIR}/{name}").content_string)
        for panel in board["panels"]:
            for target in panel["targets"]:
                found.append((board["title"], panel["title"], target["expr"]))
    return found


def test_every_dashboard_query_returns_data(prometheus, app):
    generate_task_traffic(app, uuid.uuid4().hex[:8])
    # The failure, retry and dead-letter series exist once those tasks ran; rates need two scrapes of them.
    poll(lambda: query(prometheus, "celery_kafka_tasks_dead_lettered_total"), 120, "the dead-letter counter in Prometheus")
    time.sleep(15)
    expressions = dashboard_queries(host(MONITOR))
    assert len(expressions) >= 40
    empty: list[tuple[str, str, str]] = []
    for board, panel, expr in expressions:
        live = expr.replace("$__rate_interval", "1m")
        try:
            poll(lambda live=live: query(prometheus, live), 30, f"data for {live}")
        except AssertionError:
            empty.append((board, panel, expr))
    print(f"\n{len(expressions) - len(empty)} of {len(expressions)} dashboard queries returned data")
    assert empty == []


def alert_state(prometheus: str, name: str) -> set[str]:
    return {alert["state"] for alert in api(f"{prometheus}/api/v1/alerts")["alerts"] if alert["labels"]["alertname"] == name}


def test_lag_alert_goes_pending_then_firing_and_reaches_alertmanager(prometheus, alertmanager, app):
    run_id = uuid.uuid4().hex[:8]
    key = next(f"lag-{run_id}-{n}" for n in range(1000) if partition_for_key(f"lag-{run_id}-{n}", len(WORKERS)) == 0)
    for name, partition in WORKERS.items():
        host(name).run_expect([0], f"systemctl stop celery-worker@{partition}")
    started = time.monotonic()
    try:
        for sequence in range(LAG_TASKS):
            send_keyed(app, "demo_app.tasks.record", key, key, sequence, run_id)
        timeline: dict[str, float] = {}

        def reached(state: str):
            if state in alert_state(prometheus, "KafkaConsumerLagHigh"):
                timeline.setdefault(state, time.monotonic() - started)
                return True
            return None

        poll(lambda: reached("pending"), 60, "KafkaConsumerLagHigh pending", interval=1)

        # The alert may go pending on a sample scraped while the tasks were still being sent: wait for one
        # scraped after the last send, which must show every queued task.
        def full_lag():
            lag = query(prometheus, 'kafka_consumergroup_lag{topic="celery.tasks",partition="0"}')
            return (lag and float(lag[0]["value"][1]) >= LAG_TASKS) or None

        poll(full_lag, 60, f"a lag of at least {LAG_TASKS} on partition 0 in Prometheus", interval=1)
        poll(lambda: reached("firing"), 90, "KafkaConsumerLagHigh firing", interval=1)

        def in_alertmanager():
            alerts = api(f"{alertmanager}/api/v2/alerts")
            return [a for a in alerts if a["labels"]["alertname"] == "KafkaConsumerLagHigh" and a["labels"]["partition"] == "0"]

        [received] = poll(in_alertmanager, 60, "the lag alert in Alertmanager")
        timeline["in alertmanager"] = time.monotonic() - started
        assert received["labels"]["severity"] == "warning"
        assert "runbook" in received["annotations"]
        print(f"\nlag alert after stopping the workers and queueing {LAG_TASKS} tasks: {timeline} (seconds)")
    finally:
        for name, partition in WORKERS.items():
            host(name).run_expect([0], f"systemctl start celery-worker@{partition}")
    # The restarted owner of partition 0 works the backlog off and the alert clears.
    poll(lambda: not alert_state(prometheus, "KafkaConsumerLagHigh") or None, 180, "the lag alert to clear")


def test_grafana_provisioning_is_rendered():
    monitor = host(MONITOR)
    datasources = yaml.safe_load(monitor.file(f"{PROVISIONING}/datasources/prometheus.yml").content_string)
    [datasource] = datasources["datasources"]
    assert (datasource["type"], datasource["uid"], datasource["url"]) == ("prometheus", "prometheus", "http://127.0.0.1:9090")
    providers = yaml.safe_load(monitor.file(f"{PROVISIONING}/dashboards/kafka-celery-stack.yml").content_string)
    assert providers["providers"][0]["options"]["path"] == DASHBOARDS_DIR
    ini = monitor.file("/etc/grafana/grafana.ini")
    assert (ini.mode, ini.user, ini.group) == (0o640, "root", "grafana")
    assert 'admin_password = """local-demo-grafana-pw"""' in ini.content_string
    for name in monitor.run(f"ls {DASHBOARDS_DIR}").stdout.split():
        board = json.loads(monitor.file(f"{DASHBOARDS_DIR}/{name}").content_string)
        uids = {target["datasource"]["uid"] for panel in board["panels"] for target in panel["targets"]}
        assert uids == {datasource["uid"]}, name


def test_grafana_itself_was_not_tested():
    message = (
        "GRAFANA NOT TESTED LIVE: no registry reachable from this machine carries Grafana (apt.grafana.com, GitHub "
        "and dl.grafana.com are out of reach; the Go module proxy refuses github.com/grafana/grafana). The role's apt "
        "and archive installs, the service, the health endpoint, the admin password and the dashboards loaded through "
        "Grafana's API were not exercised. Verified instead: the rendered grafana.ini, datasource and dashboard "
        "provisioning files, and every dashboard query against the live Prometheus."
    )
    print(f"\n{message}")
    pytest.skip(message)
