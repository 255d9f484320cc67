"""The full stack as `make demo` deploys it: a keyed task end to end, then site.yml's celery and monitoring tags in
check mode.

These run first, on the freshly converged stack: check mode must find nothing to change before any later test
changes a setting. The whole of site.yml in check mode is run by the secure scenario (all the same roles, with
passwords that must not show); here the two tags run live in one check-mode run, and tests/test_tags.py checks
which roles each tag selects on its own. The task goes in through the brokers' CLIENT listeners from the controller; where it ran is read
on the worker nodes themselves and in Prometheus.
"""

from __future__ import annotations

import re
import uuid

import requests

from celery_kafka.partitioning import partition_for_key
from celery_kafka.tasks import send_keyed
from verify_support import (
    address,
    changed_hosts,
    client,
    host,
    inventory,
    poll,
    recap,
    records,
    run_playbook,
)

TOPOLOGY = inventory()
WORKERS = TOPOLOGY.workers
TASK = "demo_app.tasks.record"


def prometheus_query(expr: str) -> list[dict]:
    response = requests.get(f"http://{address(TOPOLOGY.monitor)}:9090/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def succeeded(worker: str) -> float:
    result = prometheus_query(f'sum(celery_kafka_tasks_succeeded_total{{instance="{worker}",task="{TASK}"}})')
    return float(result[0]["value"][1]) if result else 0.0


def test_keyed_task_runs_on_its_partition_owner_and_shows_in_prometheus():
    app = client()
    run_id = uuid.uuid4().hex[:8]
    key = f"order-{run_id}"
    owner = next(name for name, partition in WORKERS.items() if partition == partition_for_key(key, len(WORKERS)))
    before = {name: succeeded(name) for name in WORKERS}
    for sequence in range(10):
        send_keyed(app, TASK, key, key, sequence, run_id)
    rows = poll(lambda: (lambda r: r if len(r) >= 10 else None)(records(host(owner), run_id)), timeout=60, message="10 tasks")
    # In the order the owner ran them.
    assert [row["seq"] for row in rows] == list(range(10))
    assert {row["partition"] for row in rows} == {WORKERS[owner]}
    assert all(records(host(name), run_id) == [] for name in WORKERS if name != owner)
    # Prometheus scrapes every 5 s here: the owner's counter rises by 10, the others' not at all.
    poll(lambda: succeeded(owner) >= before[owner] + 10, timeout=60, interval=2, message="the counter in Prometheus")
    for name in WORKERS:
        if name != owner:
            assert succeeded(name) == before[name]
    print(f"\nkey {key!r} -> partition {WORKERS[owner]} -> {owner}: 10 tasks in order, counted in Prometheus")


def roles_run(result) -> set[str]:
    """Roles that had tasks in the run. Play headers print even when tags leave a play empty, and every role's
    argument validation is tagged `always`, so neither counts."""
    tasks = re.findall(r"^TASK \[(\w+) : (.+?)\]", result.stdout, flags=re.MULTILINE)
    return {role for role, name in tasks if not name.startswith("Validating arguments against arg spec")}


def test_check_mode_of_the_celery_and_monitoring_parts_changes_nothing_and_runs_only_their_roles():
    """One live run of two tags in check mode on the converged stack: they run without the plays they leave out (no
    fact or variable of the Kafka part is missing), only their roles run, and nothing would change. Which roles each
    tag selects on its own is checked without hosts in tests/test_tags.py; real runs are Molecule's idempotence step."""
    result = run_playbook("site.yml", "--check", "--diff", "--tags", "celery,monitoring")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    counts = recap(result)
    assert set(counts) >= set(TOPOLOGY.group("celery_workers")) | set(TOPOLOGY.group("monitoring"))
    # kcs_common: the task files the roles share (their preflights include it).
    celery = {"celery_worker", "kafka_topics"}
    monitoring = {"node_exporter", "prometheus", "alertmanager", "celery_kafka_exporter", "grafana"}
    assert roles_run(result) == celery | monitoring | {"kcs_common"}
    assert changed_hosts(result) == {}
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values())
