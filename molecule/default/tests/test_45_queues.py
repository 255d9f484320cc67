"""A second queue: the example app routes its export task to "exports", a topic of its own with its own worker node
(group celery_exports in inventories/local), which runs a prefork pool of 3 because those tasks need no order.

What is checked on the running nodes: the topic was declared from the inventory; the app's task_routes send exports
there and nowhere else; several run at once on that node; a task past the memory limit gets only its pool child
killed by the kernel, is redelivered and then dead-lettered, and no other export is lost or run twice; a restart of
the pool is a warm shutdown, not a kill at the stop timeout; Prometheus
shows the queue in the worker metrics and in the consumer lag.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from celery_kafka.deadletter import REDELIVERY_LIMIT
from verify_support import admin, client, host, inventory, letters, poll, records, unit_property

TOPOLOGY = inventory()
QUEUE = "exports"
EXPORTERS = TOPOLOGY.queue_workers(QUEUE)
EXPORTER = next(iter(EXPORTERS), "")
UNIT = "celery-worker@0.service"
EXPORTS = 6


@pytest.fixture(scope="module")
def app():
    """A client with the example app's routes, as any client of the app sends its tasks."""
    from demo_app.celery import app as demo_app

    sender = client()
    sender.conf.task_routes = demo_app.conf.task_routes
    return sender


def send_exports(app, run_id: str, seconds: float) -> None:
    for seq in range(EXPORTS):
        app.send_task("demo_app.tasks.export", args=(f"report-{seq}", seq, seconds, run_id))


def exports_done(run_id: str) -> list[dict] | None:
    rows = records(host(EXPORTER), run_id)
    return rows if len(rows) >= EXPORTS else None


def overlapping(one: dict, other: dict) -> bool:
    return one["started_at"] < other["finished_at"] and other["started_at"] < one["finished_at"]


def oom_kills(node) -> int:
    """How often the kernel OOM-killed a process of the worker's unit: `oom_kill` in its memory cgroup's
    memory.oom_control (cgroup v1) or memory.events (v2)."""
    pid = unit_property(node, UNIT, "MainPID")
    lines = node.run(f"cat /proc/{pid}/cgroup").stdout.splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if ":memory:" in line]
    path = f"/sys/fs/cgroup/memory{v1[0]}/memory.oom_control" if v1 else f"/sys/fs/cgroup{lines[-1].split(':', 2)[2]}/memory.events"
    counters = node.run(f"cat '{path}'").stdout
    return next((int(line.split()[1]) for line in counters.splitlines() if line.startswith("oom_kill ")), -1)


def test_the_queue_has_its_own_topic_and_worker_node():
    assert list(EXPORTERS.values()) == [0], EXPORTERS
    topic = admin().list_topics(QUEUE, timeout=10).topics[QUEUE]
    assert topic.error is None and len(topic.partitions) == len(EXPORTERS)
    assert all(len(partition.replicas) == 3 for partition in topic.partitions.values())
    exec_start = unit_property(host(EXPORTER), UNIT, "ExecStart")
    assert "--pool=prefork --concurrency=3" in exec_start and f"--queues={QUEUE} " in exec_start, exec_start
    banner = host(EXPORTER).run(f"journalctl --unit {UNIT} --no-pager --output cat").stdout
    assert "concurrency: 3 (prefork)" in banner


def test_routed_tasks_run_several_at_once_on_the_queue_node_only(app):
    run_id = uuid.uuid4().hex[:8]
    send_exports(app, run_id, seconds=3)
    rows = poll(lambda: exports_done(run_id), timeout=120, message=f"{EXPORTS} exports")
    assert sorted(row["seq"] for row in rows) == list(range(EXPORTS)), "each export exactly once"
    assert {row["partition"] for row in rows} == {0}
    most_at_once = max(sum(1 for other in rows if overlapping(row, other)) for row in rows)
    assert most_at_once >= 2, f"the exports ran one at a time: {[(r['started_at'], r['finished_at']) for r in rows]}"
    assert len({row["pid"] for row in rows}) >= 2, "the exports ran in one process, not in the pool"
    for name in TOPOLOGY.workers:
        assert records(host(name), run_id) == [], f"an export ran on {name}, a worker of another queue"
    print(f"\n{EXPORTS} exports on {EXPORTER}: up to {most_at_once} at once, in {len({r['pid'] for r in rows})} processes")


def test_a_task_past_the_memory_limit_kills_only_its_pool_child_and_no_export_is_lost(app):
    run_id = uuid.uuid4().hex[:8]
    node = host(EXPORTER)
    main_pid, restarts, kills = unit_property(node, UNIT, "MainPID"), unit_property(node, UNIT, "NRestarts"), oom_kills(node)
    assert kills >= 0, "no oom_kill counter in the worker's memory cgroup"
    app.send_task("demo_app.faults.memory_hog", args=(600, run_id), queue=QUEUE)
    send_exports(app, run_id, seconds=0.5)
    entry = poll(
        lambda: next((e for e in letters().values() if e.letter.kind == REDELIVERY_LIMIT and run_id in e.letter.args), None),
        timeout=300,
        message="the memory hog in the dead-letter topic",
    )
    assert entry.letter.source.topic == QUEUE and "delivered 3 times" in entry.letter.reason
    assert oom_kills(node) >= kills + 3, "the kernel's OOM killer (memory limit) killed the hog's process each time"
    rows = poll(lambda: exports_done(run_id), timeout=120, message="the exports sent with the hog")
    assert sorted(row["seq"] for row in rows) == list(range(EXPORTS)), "each export exactly once: none lost, none run twice"
    assert unit_property(node, UNIT, "MainPID") == main_pid and unit_property(node, UNIT, "NRestarts") == restarts, (
        "only the pool child may die: the worker itself keeps running"
    )
    assert "exited with 'signal 9 (SIGKILL)'" in node.run(f"journalctl --unit {UNIT} --no-pager -n 400").stdout


def test_a_restart_of_the_pool_is_a_warm_shutdown_not_a_kill_at_the_stop_timeout():
    """systemd stops the main process only (KillMode=mixed), which stops its children: before, every process of the
    unit got SIGTERM, the children died first and the main process hung until the stop timeout's SIGKILL."""
    node = host(EXPORTER)
    since = node.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    old_pid = unit_property(node, UNIT, "MainPID")
    node.run_expect([0], f"systemctl restart {UNIT}")
    assert unit_property(node, UNIT, "ActiveState") == "active" and unit_property(node, UNIT, "MainPID") != old_pid
    journal = node.run(f"journalctl --unit {UNIT} --no-pager --since '{since}'").stdout
    assert "Warm shutdown" in journal
    assert "timed out. Killing" not in journal and "Failed with result 'timeout'" not in journal, journal[-2000:]


def test_prometheus_shows_the_queue_in_task_metrics_and_lag(app, prometheus):
    def series(expr: str) -> list[dict]:
        response = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    # Exports of its own: the restart just before emptied the pool's counters, and once Prometheus scrapes the restarted
    # worker the earlier series go stale (whether it had yet was a race).
    run_id = uuid.uuid4().hex[:8]
    send_exports(app, run_id, seconds=0.2)
    poll(lambda: exports_done(run_id), timeout=120, message=f"{EXPORTS} exports")

    def counted() -> list[dict] | None:
        found = series(f'sum by (queue, instance) (celery_kafka_tasks_succeeded_total{{queue="{QUEUE}"}})')
        return found if found and float(found[0]["value"][1]) >= EXPORTS else None

    succeeded = poll(counted, timeout=60, message=f"the exports queue's succeeded counter in Prometheus at {EXPORTS} or more")
    assert {s["metric"]["instance"] for s in succeeded} == {EXPORTER}, "every pool child's tasks are counted, on the queue's node"
    lag = poll(
        lambda: series(f'kafka_consumergroup_lag{{topic="{QUEUE}",consumergroup="{QUEUE}.workers"}}'),
        timeout=60,
        message="the exports queue's consumer lag in Prometheus",
    )
    assert [s["metric"]["partition"] for s in lag] == ["0"]
