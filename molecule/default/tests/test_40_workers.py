"""Verify Celery on Kafka end to end: worker nodes under memory limits, keyed order, dead letters, faults, scale-out.

Tasks are sent from the Ansible controller through the brokers' CLIENT listeners; what ran where is read from the
results file on each worker node itself. Tests run in file order; the disruptive ones come last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
import requests
import testinfra
from confluent_kafka.admin import AdminClient

from celery_kafka import cli
from celery_kafka.app import create_app
from celery_kafka.deadletter import REDELIVERY_LIMIT, TASK_FAILED, UNDECODABLE
from celery_kafka.localkafka import wait_until
from celery_kafka.partitioning import partition_for_key
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed

REPO = Path(__file__).resolve().parents[3]
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
WORKERS = {"celery1": 0, "celery2": 1, "celery3": 2}
BROKERS = ["kafka1", "kafka2", "kafka3"]
MEMORY_MAX = 256 * 1024 * 1024
RESULTS = "/var/lib/celery-worker/results.jsonl"
DLQ = "celery.tasks.dlq"


def host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="session")
def hosts() -> dict:
    return {name: host(name) for name in [*WORKERS, *BROKERS, "celery4"]}


@pytest.fixture(scope="session")
def bootstrap(hosts) -> str:
    return ",".join(f"{hosts[name].interface('eth0').addresses[0]}:9092" for name in BROKERS)


@pytest.fixture(scope="session")
def env(bootstrap) -> WorkerEnvironment:
    return WorkerEnvironment(brokers=bootstrap.split(","))


@pytest.fixture(scope="session")
def client(env):
    return create_app(env)


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def records(node, run_id: str) -> list[dict]:
    content = node.run(f"cat {RESULTS} 2>/dev/null").stdout
    rows = [json.loads(line) for line in content.splitlines() if line.strip()]
    return [row for row in rows if row.get("run_id") == run_id]


def all_records(hosts, run_id: str, workers: dict[str, int] = WORKERS) -> dict[str, list[dict]]:
    return {name: records(hosts[name], run_id) for name in workers}


def letters(bootstrap: str) -> dict[str, cli.Entry]:
    return cli.DeadLetterTopic.read(bootstrap, DLQ).entries


def key_on(partition: int, partitions: int = 3, prefix: str = "key") -> str:
    return next(k for k in (f"{prefix}-{n}" for n in range(1000)) if partition_for_key(k, partitions) == partition)


def unit_property(node, partition: int, name: str) -> str:
    return node.run(f"systemctl show celery-worker@{partition}.service --property={name} --value").stdout.strip()


def test_every_worker_unit_is_active_under_its_memory_limit(hosts):
    for name, partition in WORKERS.items():
        node = hosts[name]
        assert node.service(f"celery-worker@{partition}").is_running
        assert node.service(f"celery-worker@{partition}").is_enabled
        assert unit_property(node, partition, "MemoryMax") == str(MEMORY_MAX)
        # The kernel's view: the limit on the unit's cgroup in the v1 memory hierarchy (or memory.max on v2).
        pid = unit_property(node, partition, "MainPID")
        cgroup = next(
            line.split(":", 2)[2]
            for line in node.file(f"/proc/{pid}/cgroup").content_string.splitlines()
            if line.split(":")[1] in ("memory", "")
        )
        assert cgroup.endswith(f"celery-worker@{partition}.service"), cgroup
        limit_file = node.file(f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes")
        limit = limit_file.content_string if limit_file.exists else node.file(f"/sys/fs/cgroup{cgroup}/memory.max").content_string
        assert int(limit) == MEMORY_MAX


def test_workers_serve_their_metrics(hosts):
    for name, partition in WORKERS.items():
        address = hosts[name].interface("eth0").addresses[0]
        body = requests.get(f"http://{address}:9808/metrics", timeout=10).text
        assert f'celery_kafka_worker_partition{{topic="celery.tasks"}} {float(partition)}' in body
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines() if line and not line.startswith("#")}
        assert values["celery_kafka_memory_limit_bytes"] == MEMORY_MAX
        assert 0 < values["celery_kafka_memory_usage_bytes"] < MEMORY_MAX


def test_keyed_tasks_run_in_send_order_on_the_partition_owner(hosts, client, run_id):
    keys = [f"account-{n}" for n in range(30)]
    for seq in range(10):
        for key in keys:
            send_keyed(client, "celery_kafka.demo.record", key, key, seq, run_id)
    wait_until(lambda: sum(map(len, all_records(hosts, run_id).values())) >= 300, timeout=300, message="300 recorded tasks")
    by_key: dict[str, list[dict]] = defaultdict(list)
    for name, rows in all_records(hosts, run_id).items():
        for row in rows:
            assert row["partition"] == WORKERS[name] == row["worker_partition"] and row["node"] == name, row
            by_key[row["key"]].append(row)
    assert sum(map(len, by_key.values())) == 300, "a task ran twice or not at all"
    for key, rows in by_key.items():
        assert {row["partition"] for row in rows} == {partition_for_key(key, 3)}, f"{key} left its partition"
        assert [row["seq"] for row in sorted(rows, key=lambda row: row["offset"])] == list(range(10)), f"{key} ran out of order"


def metric_values(address: str) -> dict[str, float]:
    body = requests.get(f"http://{address}:9808/metrics", timeout=10).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line and not line.startswith("#")}


def test_offset_and_lag_metrics_follow_the_partition(hosts, bootstrap):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "celery.tasks.workers", "enable.auto.commit": False})
    try:
        for name, partition in WORKERS.items():
            _, end = consumer.get_watermark_offsets(TopicPartition("celery.tasks", partition), timeout=10)
            labels = f'{{partition="{partition}",topic="celery.tasks"}}'  # prometheus_client prints labels sorted
            values = wait_until(
                lambda n=name, lab=labels, e=end: (lambda v: v if v.get(f"celery_kafka_committed_offset{lab}") == e else None)(
                    metric_values(hosts[n].interface("eth0").addresses[0])
                ),
                timeout=60,
                message=f"{name}'s committed offset metric to reach {end}",
            )
            assert values[f"celery_kafka_consumer_lag{labels}"] == 0
            assert values['celery_kafka_tasks_succeeded_total{task="celery_kafka.demo.record"}'] >= 1
    finally:
        consumer.close()


def test_poison_message_is_dead_lettered_and_the_worker_stays_up(hosts, bootstrap, run_id):
    from confluent_kafka import Producer

    restarts = unit_property(hosts["celery1"], 0, "NRestarts")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce("celery.tasks", value=b"\xff poison " + run_id.encode(), partition=0)
    assert producer.flush(30) == 0
    wait_until(
        lambda: any(e.letter.kind == UNDECODABLE and run_id.encode() in (e.letter.raw_value or b"") for e in letters(bootstrap).values()),
        message="the poison message in the dead-letter topic",
        timeout=120,
    )
    assert hosts["celery1"].service("celery-worker@0").is_running
    assert unit_property(hosts["celery1"], 0, "NRestarts") == restarts


def test_memory_hog_is_oom_killed_restarted_and_dead_lettered_without_losing_other_tasks(hosts, client, bootstrap, run_id):
    node, partition = hosts["celery2"], 1
    restarts = int(unit_property(node, partition, "NRestarts"))
    key = key_on(partition, prefix="hog")
    send_keyed(client, "celery_kafka.demo.memory_hog", key, 400, run_id)
    for seq in range(5):
        send_keyed(client, "celery_kafka.demo.record", key, key, seq, run_id)
    entry = wait_until(
        lambda: next((e for e in letters(bootstrap).values() if e.letter.kind == REDELIVERY_LIMIT and run_id in e.letter.args), None),
        timeout=240,
        message="the memory hog in the dead-letter topic",
    )
    assert entry.letter.task_name == "celery_kafka.demo.memory_hog" and "delivered 3 times" in entry.letter.reason
    assert int(unit_property(node, partition, "NRestarts")) == restarts + 3, "systemd restarted the worker after each OOM kill"
    journal = node.run(f"journalctl -u celery-worker@{partition} --no-pager -n 400").stdout
    assert "status=9/KILL" in journal, "the kernel killed the worker (SIGKILL from the OOM killer)"
    rows = wait_until(
        lambda: (lambda r: r if len(r) >= 5 else None)(records(node, run_id)), message="the tasks queued behind the hog", timeout=120
    )
    assert [row["seq"] for row in rows] == list(range(5))
    assert node.service(f"celery-worker@{partition}").is_running


def test_dead_letter_after_retries_and_replay_runs_it_again(hosts, env, bootstrap, run_id):
    client = create_app(env)
    send_keyed(client, "celery_kafka.demo.always_fails", "replay-me", "replay-me", run_id)
    first = wait_until(
        lambda: next((e for e in letters(bootstrap).values() if e.letter.kind == TASK_FAILED and run_id in e.letter.args), None),
        message="the failing task's dead letter",
        timeout=120,
    )
    assert first.letter.retries == 2 and first.letter.partition_key == "replay-me" and "Traceback" in first.letter.traceback
    assert first.letter.source.partition == partition_for_key("replay-me", 3) and first.letter.source.offset >= 0
    assert "replayed" in cli.replay(env, first, max_replays=3, force=False)
    again = wait_until(
        lambda: next((e for e in letters(bootstrap).values() if e.letter.task_id == first.letter.task_id and e.letter.replays == 1), None),
        message="the replayed task failing again",
        timeout=120,
    )
    owner = next(name for name, partition in WORKERS.items() if partition == partition_for_key("replay-me", 3))
    assert again.letter.worker == owner, "the replay ran on the node owning the key's partition"
    assert letters(bootstrap)[first.letter_id].status == "replayed"


def test_tasks_keep_flowing_with_a_broker_down(hosts, client, bootstrap, run_id):
    hosts["kafka3"].run("systemctl stop kafka")
    try:
        for seq in range(100):
            key = f"outage-{seq % 10}"
            send_keyed(client, "celery_kafka.demo.record", key, key, seq, run_id)
        rows = wait_until(
            lambda: (lambda r: r if sum(map(len, r.values())) >= 100 else None)(all_records(hosts, run_id)),
            timeout=240,
            message="100 tasks with kafka3 down",
        )
        ids = [row["task_id"] for group in rows.values() for row in group]
        assert len(ids) == len(set(ids)) == 100, "every task id exactly once"
    finally:
        hosts["kafka3"].run("systemctl start kafka")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_until(
        lambda: all(len(p.isrs) == 3 for p in admin.list_topics("celery.tasks", timeout=10).topics["celery.tasks"].partitions.values()),
        timeout=180,
        message="ISR back to 3",
    )


def test_a_fourth_worker_in_the_inventory_gets_partition_3(hosts, bootstrap, client, run_id, tmp_path):
    extra = tmp_path / "fourth-worker.yml"
    extra.write_text(json.dumps({"all": {"children": {"celery_workers": {"hosts": {"celery4": {"celery_worker_partition": 3}}}}}}))
    converge = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")
    run_env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LIBRARY": str(REPO / "library"),
        "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
        "ANSIBLE_NOCOLOR": "1",
    }
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY, "-i", str(extra), converge],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "raise celery.tasks partitions from 3 to 4" in run.stdout
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert len(admin.list_topics("celery.tasks", timeout=10).topics["celery.tasks"].partitions) == 4
    assert hosts["celery4"].service("celery-worker@3").is_running
    # The long-lived client that sent every earlier task picks up the new partition by itself, within the transport's
    # metadata refresh interval (30 s), without a restart.
    time.sleep(35)
    key = key_on(3, partitions=4, prefix="fourth")
    for seq in range(5):
        send_keyed(client, "celery_kafka.demo.record", key, key, seq, run_id)
    rows = wait_until(
        lambda: (lambda r: r if len(r) >= 5 else None)(records(hosts["celery4"], run_id)), message="tasks on partition 3", timeout=120
    )
    assert {row["partition"] for row in rows} == {3} and [row["seq"] for row in rows] == list(range(5))
