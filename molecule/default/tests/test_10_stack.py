"""Verify the full stack as `make demo` deploys it: a keyed task end to end, then site.yml in check mode and by tags.

The task goes in through the brokers' CLIENT listeners from the controller; where it ran is read on the worker nodes
themselves and in Prometheus. The playbook runs use the same inventory and roles as the converge.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import testinfra

from celery_kafka.app import create_app
from celery_kafka.localkafka import wait_until
from celery_kafka.partitioning import partition_for_key
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed

REPO = Path(__file__).resolve().parents[3]
BROKERS = ["kafka1", "kafka2", "kafka3"]
WORKERS = {"celery1": 0, "celery2": 1, "celery3": 2}
MONITOR = "monitor1"
RESULTS = "/var/lib/celery-worker/results.jsonl"
TASK = "celery_kafka.demo.record"


def host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="session")
def hosts() -> dict:
    return {name: host(name) for name in [*BROKERS, *WORKERS, MONITOR]}


def address(node) -> str:
    return node.interface("eth0").addresses[0]


def prometheus_query(hosts, expr: str) -> list[dict]:
    response = requests.get(f"http://{address(hosts[MONITOR])}:9090/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def rows_of(node, run_id: str) -> list[dict]:
    import json

    content = node.run(f"cat {RESULTS} 2>/dev/null").stdout
    return [row for row in (json.loads(line) for line in content.splitlines() if line.strip()) if row.get("run_id") == run_id]


def succeeded(hosts, worker: str) -> float:
    result = prometheus_query(hosts, f'sum(celery_kafka_tasks_succeeded_total{{instance="{worker}",task="{TASK}"}})')
    return float(result[0]["value"][1]) if result else 0.0


def test_keyed_task_runs_on_its_partition_owner_and_shows_in_prometheus(hosts):
    client = create_app(WorkerEnvironment(brokers=[f"{address(hosts[name])}:9092" for name in BROKERS]))
    run_id = uuid.uuid4().hex[:8]
    key = f"order-{run_id}"
    owner = next(name for name, partition in WORKERS.items() if partition == partition_for_key(key, len(WORKERS)))
    before = {name: succeeded(hosts, name) for name in WORKERS}
    for sequence in range(10):
        send_keyed(client, TASK, key, key, sequence, run_id)
    rows = wait_until(lambda: (lambda r: r if len(r) >= 10 else None)(rows_of(hosts[owner], run_id)), timeout=60, message="10 tasks")
    assert [row["seq"] for row in rows] == list(range(10))
    assert {row["partition"] for row in rows} == {WORKERS[owner]}
    assert all(rows_of(hosts[name], run_id) == [] for name in WORKERS if name != owner)
    # Prometheus scrapes every 15 s: the owner's counter rises by 10, the others' not at all.
    wait_until(lambda: succeeded(hosts, owner) >= before[owner] + 10, timeout=60, interval=2, message="the counter in Prometheus")
    for name in WORKERS:
        if name != owner:
            assert succeeded(hosts, name) == before[name]
    print(f"\nkey {key!r} -> partition {WORKERS[owner]} -> {owner}: 10 tasks in order, counted in Prometheus")


def run_site(*args: str) -> subprocess.CompletedProcess:
    env = {
        **{name: value for name, value in os.environ.items() if name not in ("ANSIBLE_FORCE_COLOR", "PY_COLORS")},
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LIBRARY": str(REPO / "library"),
        "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories" / "local-vault-password"),
        "ANSIBLE_NOCOLOR": "1",
    }
    inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(REPO / "site.yml"), *args]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=False)
    result.stdout = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    print(f"\nsite.yml {' '.join(args)}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
    return result


def recap(result: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    section = result.stdout.rsplit("PLAY RECAP", 1)[-1]
    counts: dict[str, dict[str, int]] = {}
    for line in section.splitlines():
        match = re.match(r"^(\S+)\s*:\s*(.*)$", line.strip())
        if match:
            counts[match.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return counts


def roles_run(result: subprocess.CompletedProcess) -> set[str]:
    """Roles that had tasks in the run. Play headers print even when tags leave a play empty, and every role's
    argument validation is tagged `always`, so neither counts."""
    tasks = re.findall(r"^TASK \[(\w+) : (.+?)\]", result.stdout, flags=re.MULTILINE)
    return {role for role, name in tasks if not name.startswith("Validating arguments against arg spec")}


def test_check_mode_on_the_converged_stack_changes_nothing():
    result = run_site("--check", "--diff")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    counts = recap(result)
    assert set(counts) >= {*BROKERS, *WORKERS, MONITOR}
    assert {name: c["changed"] for name, c in counts.items() if c["changed"]} == {}
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values())


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("monitoring", {"node_exporter", "prometheus", "alertmanager", "kafka_lag_exporter", "grafana"}),
        ("celery", {"celery_worker", "kafka_topics"}),
    ],
)
def test_a_tag_runs_only_its_part(tag, expected):
    result = run_site("--tags", tag)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert roles_run(result) == expected
    assert {name: c["changed"] for name, c in recap(result).items() if c["changed"]} == {}
