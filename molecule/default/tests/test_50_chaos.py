"""No task is lost under faults: each test runs one fault under a steady keyed load and accounts for every task id.

The load (celery_kafka_testing.chaos.LoadGenerator) sends `demo_app.tasks.record` tasks from the controller through
the brokers' CLIENT listeners at about 100 per second over 200 keys; a publish that raises is retried with the same
task id. It runs from before the fault until the fault's own check saw the system recover, and 500 tasks beyond (at
least 2,000 in all), so every fault and its recovery happen under load however fast the machine. After the fault the
test waits until every acknowledged id ran on a worker (results files on the nodes) or is in the dead-letter topic. A
fault fails the test when an acknowledged id is lost, when a publish was never acknowledged, when a load task (always
healthy) reached the dead-letter topic, or when a key's tasks ran out of order or on two nodes. Duplicates
(at-least-once redelivery; after a worker kill at most the task that was running) are counted in the table printed at the end and written to
.cache/test-results/<date>-chaos.txt; beside it, each fault's timeline as a PNG (tasks completed per second, consumer
lag from Prometheus, the moments of the fault and of the recovery).
Tests run in file order, each fault after the cluster healed from the last one.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from celery_kafka_testing.chaos import Completion, LoadGenerator, Row, celery_publisher, drain, format_table, parse_results
from celery_kafka_testing.charts import fault_timeline
from confluent_kafka import Producer

from celery_kafka.deadletter import REDELIVERY_LIMIT, UNDECODABLE
from celery_kafka.partitioning import partition_for_key
from celery_kafka.tasks import send_keyed
from verify_support import (
    NETWORK,
    REPO,
    RESULTS,
    TASK_TOPIC,
    address,
    admin,
    bootstrap,
    client,
    container_address,
    host,
    inventory,
    leader_of,
    letters,
    poll,
    rolling_config_change,
    unit_property,
    wait_full_isr,
)

TOPOLOGY = inventory()
WORKERS = TOPOLOGY.workers
BROKERS = TOPOLOGY.brokers
# Load per fault: until the fault's check saw the recovery, then TAIL_TASKS more; at least MIN_TASKS in all.
MIN_TASKS, TAIL_TASKS, RATE, KEYS = 2000, 500, 100.0, 200
DRAIN_TIMEOUT = 600

TABLE: list[Row] = []
RESULTS_DIR = REPO / ".cache" / "test-results"
# When the current fault was injected: set by the fault (injected()), read by run_fault for the timeline.
INJECTED: dict[str, float] = {}


def injected() -> None:
    INJECTED["at"] = time.time()


@pytest.fixture(scope="module")
def app():
    return client()


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[list[Row]]:
    """Print the chaos table after the last fault and write it to .cache/test-results/<date>-chaos.txt (not tracked:
    a run worth keeping is copied to benchmarks/results/ by hand)."""
    yield TABLE
    if not TABLE:
        return
    text = (
        f"chaos, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {os.cpu_count()} cores shared\n"
        f"command: molecule test -s default (make test); load per fault: from before the fault to {TAIL_TASKS} tasks after "
        f"its recovery (at least {MIN_TASKS}) at {RATE:.0f}/s over {KEYS} keys\n"
        f"{format_table(TABLE)}\n"
    )
    print("\n" + text)
    results = RESULTS_DIR / f"{time.strftime('%Y-%m-%d', time.gmtime())}-chaos.txt"
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as out:
        out.write(text + "\n")


def completions(run_id: str) -> list[Completion]:
    found: list[Completion] = []
    for name in WORKERS:
        text = host(name).run(f'grep -F \'"run_id": "{run_id}"\' {RESULTS} || true').stdout
        found.extend(parse_results(text, run_id, name))
    return found


def dead_lettered_ids() -> set[str]:
    return {entry.letter.task_id for entry in letters().values() if entry.letter.task_id}


def worker_state(settle: bool = False) -> dict[str, tuple[int, str]]:
    """NRestarts and MainPID of every worker unit; with `settle`, once every unit runs (none between restarts)."""

    def state() -> dict[str, tuple[int, str]]:
        found = {}
        for name, partition in WORKERS.items():
            unit = f"celery-worker@{partition}.service"
            found[name] = (int(unit_property(host(name), unit, "NRestarts")), unit_property(host(name), unit, "MainPID"))
        return found

    if not settle:
        return state()
    return poll(lambda: (lambda s: s if "0" not in {pid for _, pid in s.values()} else None)(state()), timeout=120)


def restarts_note(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> str:
    risen = {name: after[name][0] - before[name][0] for name in before if after[name][0] != before[name][0]}
    return "worker restarts " + (", ".join(f"{name} +{n}" for name, n in risen.items()) if risen else "none")


def listening(node_address: str, port: int = 9092) -> bool:
    try:
        with socket.create_connection((node_address, port), timeout=2):
            return True
    except OSError:
        return False


def run_fault(app, name: str, fault: Callable[[LoadGenerator], str]) -> Row:
    """Start the load, run `fault` while it runs (it returns once it saw the system recover), keep the load going for
    TAIL_TASKS more (MIN_TASKS at least), drain and account. Fails on a lost or never acknowledged id, a load task
    dead-lettered, or a key run out of order."""
    before = worker_state(settle=True)
    load = LoadGenerator(publish=lambda *a: None, total=10**6, rate=RATE, keys=KEYS)
    load.publish = celery_publisher(app, load.run_id)
    load.start()
    INJECTED.clear()
    try:
        notes = fault(load)
        recovered_at = time.time()
    finally:
        enough = max(MIN_TASKS, load.sent_so_far + TAIL_TASKS)
        poll(lambda: load.sent_so_far >= enough or load.finished_at is not None, timeout=600, message=f"{enough} tasks sent")
        load.stop()
        load.join(timeout=900)
    publish_seconds = (load.finished_at or 0) - (load.started_at or 0)
    tally, drain_seconds = drain(load, lambda: completions(load.run_id), dead_lettered_ids, timeout=DRAIN_TIMEOUT)
    load_in_dlq = sorted(dead_lettered_ids() & set(load.acknowledged))
    after = worker_state()
    details = [
        notes,
        f"{tally.sent / max(publish_seconds, 1):.0f}/s sent",
        restarts_note(before, after),
        f"order violations {len(tally.order_violations)}",
        f"reruns after newer {tally.reruns_after_newer}",
    ]
    if tally.unacknowledged:
        details.append(f"never acknowledged {tally.unacknowledged}")
    if load_in_dlq:
        details.append(f"load tasks dead-lettered {len(load_in_dlq)}")
    details.append(f"timeline {draw_timeline(name, load.run_id, recovered_at).name}")
    row = Row(name, tally, drain_seconds, "; ".join(d for d in details if d))
    TABLE.append(row)
    print(f"\n{name}: {row.notes}; publish errors (first): {load.errors[:3]}; order: {tally.order_violations[:5]}")
    assert tally.sent >= MIN_TASKS
    assert not tally.lost, f"{len(tally.lost)} acknowledged tasks lost, e.g. {tally.lost[:10]}"
    assert tally.unacknowledged == 0, f"{tally.unacknowledged} publishes never acknowledged: {load.errors[:5]}"
    assert not load_in_dlq, f"{len(load_in_dlq)} healthy load tasks dead-lettered, e.g. {load_in_dlq[:5]}"
    assert not tally.order_violations, f"per-key order broken: {tally.order_violations[:10]}"
    return row


def consumer_lag(start: float, end: float) -> list[tuple[float, float]]:
    """The workers' summed consumer lag of the task topic over [start, end], from Prometheus (every 5 s)."""
    try:
        response = requests.get(
            f"http://{address(TOPOLOGY.monitor)}:9090/api/v1/query_range",
            params={"query": f'sum(celery_kafka_consumer_lag{{topic="{TASK_TOPIC}"}})', "start": start, "end": end, "step": 5},
            timeout=10,
        )
        response.raise_for_status()
        series = response.json()["data"]["result"]
    except (requests.RequestException, KeyError, ValueError):
        return []  # the timeline is drawn without the lag line
    return [(float(t), float(v)) for t, v in series[0]["values"]] if series else []


def draw_timeline(name: str, run_id: str, recovered_at: float) -> Path:
    finished = [c.finished_at for c in completions(run_id)]
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    path = RESULTS_DIR / f"{time.strftime('%Y-%m-%d', time.gmtime())}-chaos-{slug}.png"
    return fault_timeline(path, f"chaos: {name}", finished, consumer_lag(min(finished), max(finished)), INJECTED.get("at"), recovered_at)


def test_cluster_is_healthy_before_the_faults():
    wait_full_isr(timeout=120)
    for name, partition in WORKERS.items():
        assert host(name).service(f"celery-worker@{partition}").is_running
    for name in BROKERS:
        assert unit_property(host(name), "kafka.service", "Restart") == "on-failure"


def test_broker_jvm_killed_with_sigkill_comes_back(app):
    def fault(load: LoadGenerator) -> str:
        poll(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        victim = leader_of(0)
        node = host(victim)
        restarts = int(unit_property(node, "kafka.service", "NRestarts"))
        pid = unit_property(node, "kafka.service", "MainPID")
        injected()
        node.run_expect([0], f"kill -9 {pid}")
        killed = time.monotonic()
        poll(
            lambda: int(unit_property(node, "kafka.service", "NRestarts")) == restarts + 1 and node.service("kafka").is_running,
            timeout=120,
            message=f"systemd restarting {victim}'s kafka",
        )
        poll(lambda: listening(address(victim)), timeout=180, message=f"{victim}'s client listener")
        healed = wait_full_isr()
        back = time.monotonic() - killed - healed
        return f"killed {victim} (leader of p0), systemd restarted it in {back:.0f} s, ISR 3 {healed:.0f} s later"

    run_fault(app, "kill -9 broker JVM", fault)


def test_rolling_restart_through_the_playbook(app):
    """A changed server.properties flags every broker; the playbook's serial play restarts them one at a time while
    the load runs, and every node's own state, sampled five times a second around each restart, shows never two down
    at once."""

    def fault(load: LoadGenerator) -> str:
        poll(lambda: load.sent_so_far >= 500, timeout=120, message="load under way")
        injected()
        return rolling_config_change("log.cleaner.backoff.ms", 15000 + int(time.time()) % 1000)

    run_fault(app, "rolling restart (playbook)", fault)
    wait_full_isr()


def test_worker_oom_killed_by_its_memory_limit(app):
    partition = 1
    name = next(node for node, owned in WORKERS.items() if owned == partition)
    unit = f"celery-worker@{partition}.service"
    holder: dict[str, str] = {}

    def fault(load: LoadGenerator) -> str:
        poll(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        restarts = int(unit_property(host(name), unit, "NRestarts"))
        key = next(k for k in (f"{load.run_id}-hog-{n}" for n in range(1000)) if partition_for_key(k, 3) == partition)
        # A client of its own: the load's thread keeps publishing through `app` meanwhile.
        injected()
        holder["id"] = send_keyed(client(), "demo_app.faults.memory_hog", key, 400, load.run_id).id
        entry = poll(
            lambda: next((e for e in letters().values() if e.letter.task_id == holder["id"]), None),
            timeout=400,
            interval=3,
            message="the memory hog in the dead-letter topic",
        )
        assert entry.letter.kind == REDELIVERY_LIMIT and "delivered 3 times" in entry.letter.reason, entry.letter.reason
        rose = int(unit_property(host(name), unit, "NRestarts")) - restarts
        assert rose >= 3, "systemd restarted the worker after each OOM kill"
        journal = host(name).run(f"journalctl -u {unit} --no-pager -n 2000").stdout
        assert "status=9/KILL" in journal, "the kernel killed the worker (SIGKILL from the OOM killer)"
        return f"hog on {name} OOM-killed, NRestarts +{rose}, hog dead-lettered ({REDELIVERY_LIMIT})"

    run_fault(app, "worker OOM-killed", fault)
    assert host(name).service(f"celery-worker@{partition}").is_running


def test_worker_killed_with_sigkill_under_load(app):
    """The worker process dies without a word (kill -9) while its partition is busy. Its journal on the node says which
    messages after the last offset commit already finished, so at most the task that was running when it died runs
    again (at-least-once), however long ago the last commit was."""
    partition = 2
    name = next(node for node, owned in WORKERS.items() if owned == partition)
    unit = f"celery-worker@{partition}.service"

    def fault(load: LoadGenerator) -> str:
        poll(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        restarts = int(unit_property(host(name), unit, "NRestarts"))
        pid = unit_property(host(name), unit, "MainPID")
        injected()
        host(name).run_expect([0], f"kill -9 {pid}")
        poll(
            lambda: int(unit_property(host(name), unit, "NRestarts")) == restarts + 1 and host(name).service(unit).is_running,
            timeout=120,
            message=f"systemd restarting {unit} on {name}",
        )
        return f"{name}'s worker (partition {partition}, pid {pid}) killed with SIGKILL, restarted by systemd"

    row = run_fault(app, "kill -9 worker", fault)
    assert row.tally.duplicates <= 1, f"{row.tally.duplicates} tasks ran twice: only the one running at the kill may"


def test_broker_cut_off_the_network_for_30_seconds(app):
    def fault(load: LoadGenerator) -> str:
        poll(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        victim = leader_of(1)
        victim_id = int(TOPOLOGY.hostvars[victim]["kafka_node_id"])
        victim_address = address(victim)
        others = ",".join(f"{address(name)}:9092" for name in BROKERS if name != victim)
        injected()
        subprocess.run(["docker", "network", "disconnect", NETWORK, victim], check=True, timeout=60)
        try:
            # The rest of the cluster notices: the cut-off broker is fenced (left out of the metadata) or at least
            # leads no partition any more.
            def deposed() -> bool:
                metadata = admin(others).list_topics(TASK_TOPIC, timeout=10)
                leaders = {p.leader for p in metadata.topics[TASK_TOPIC].partitions.values()}
                return victim_id not in metadata.brokers or victim_id not in leaders

            cut = time.monotonic()
            poll(deposed, timeout=28, interval=1, message=f"{victim} to lose its leadership or be fenced")
            time.sleep(max(0.0, 30 - (time.monotonic() - cut)))
        finally:
            subprocess.run(["docker", "network", "connect", "--ip", victim_address, NETWORK, victim], check=True, timeout=60)
        healed = wait_full_isr()
        # Back with its own address (its interface may come back under another name than eth0).
        assert container_address(victim) == victim_address
        return f"{victim} (leader of p1) cut off 30 s, lost leadership/fenced, ISR 3 again {healed:.0f} s after reconnect"

    run_fault(app, "broker network cut 30 s", fault)
    wait_full_isr()


def test_poison_messages_amid_the_load(app):
    before = worker_state(settle=True)
    marker: dict[str, bytes] = {}

    def fault(load: LoadGenerator) -> str:
        poll(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        marker["run"] = f"chaos-poison {load.run_id} ".encode()
        injected()
        producer = Producer({"bootstrap.servers": bootstrap(), "acks": "all", "enable.idempotence": True})
        for n in range(100):
            producer.produce(TASK_TOPIC, value=b"\xff" + marker["run"] + str(n).encode(), partition=n % 3)
            producer.poll(0)
            time.sleep(0.05)
        assert producer.flush(60) == 0
        return "100 raw non-JSON records on partitions 0-2"

    run_fault(app, "100 poison messages", fault)
    poison = poll(
        lambda: (lambda found: found if len(found) >= 100 else None)(
            [e for e in letters().values() if e.letter.kind == UNDECODABLE and marker["run"] in (e.letter.raw_value or b"")]
        ),
        timeout=120,
        interval=3,
        message="100 poison messages in the dead-letter topic",
    )
    assert len(poison) == 100 and {e.letter.source.partition for e in poison} == {0, 1, 2}
    assert worker_state() == before, "no worker restarted (NRestarts and MainPID unchanged)"
    TABLE[-1].notes += f"; {len(poison)} poison in DLQ ({UNDECODABLE}), NRestarts and MainPID unchanged"
