"""No task is lost under faults: each test runs one fault under a steady keyed load and accounts for every task id.

The load (celery_kafka.chaos.LoadGenerator) sends `celery_kafka.demo.record` tasks from the controller through the
brokers' CLIENT listeners at about 100 per second over 200 keys; a publish that raises is retried with the same task
id. After the fault the test waits until every acknowledged id ran on a worker (results files on the nodes) or is in
the dead-letter topic; an acknowledged id that did neither is lost and fails the test. Duplicates (at-least-once
redelivery) and per-key order are reported in the table printed at the end and appended to
benchmarks/results/<date>-chaos.txt. Tests run in file order, each fault after the cluster healed from the last one.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import testinfra
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from celery_kafka import cli
from celery_kafka.app import create_app
from celery_kafka.chaos import Completion, LoadGenerator, Row, celery_publisher, drain, format_table, parse_results
from celery_kafka.deadletter import REDELIVERY_LIMIT, UNDECODABLE
from celery_kafka.localkafka import wait_until
from celery_kafka.partitioning import partition_for_key
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed

REPO = Path(__file__).resolve().parents[3]
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
NETWORK = "kcs-chaos"
WORKERS = {"chaos-celery1": 0, "chaos-celery2": 1, "chaos-celery3": 2}
BROKERS = ["chaos-kafka1", "chaos-kafka2", "chaos-kafka3"]
TOPIC = "celery.tasks"
DLQ = "celery.tasks.dlq"
RESULTS = "/var/lib/celery-worker/results.jsonl"
# At least 5,000 tasks per fault, about 50 s of load.
TASKS, RATE, KEYS = 5000, 100.0, 200
DRAIN_TIMEOUT = 600

TABLE: list[Row] = []


def host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def hosts() -> dict:
    return {name: host(name) for name in [*WORKERS, *BROKERS]}


def network_address(container: str) -> str:
    """The container's address on the scenario's network, as Docker assigned it."""
    template = f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}'
    return subprocess.run(["docker", "inspect", container, "--format", template], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def addresses() -> dict[str, str]:
    return {name: network_address(name) for name in BROKERS}


@pytest.fixture(scope="module")
def bootstrap(addresses) -> str:
    return ",".join(f"{addresses[name]}:9092" for name in BROKERS)


@pytest.fixture(scope="module")
def client(bootstrap):
    return create_app(WorkerEnvironment(brokers=bootstrap.split(",")))


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[list[Row]]:
    """Print the chaos table after the last fault and append it to benchmarks/results/<date>-chaos.txt."""
    yield TABLE
    if not TABLE:
        return
    text = (
        f"chaos, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {os.cpu_count()} cores shared\n"
        f"command: molecule test -s chaos (make chaos); load per fault: {TASKS} tasks at {RATE:.0f}/s over {KEYS} keys\n"
        f"{format_table(TABLE)}\n"
    )
    print("\n" + text)
    results = REPO / "benchmarks" / "results" / f"{time.strftime('%Y-%m-%d', time.gmtime())}-chaos.txt"
    with results.open("a") as out:
        out.write(text + "\n")


def completions(hosts, run_id: str) -> list[Completion]:
    found: list[Completion] = []
    for name in WORKERS:
        text = hosts[name].run(f'grep -F \'"run_id": "{run_id}"\' {RESULTS} || true').stdout
        found.extend(parse_results(text, run_id, name))
    return found


def letters(bootstrap: str) -> dict[str, cli.Entry]:
    return cli.DeadLetterTopic.read(bootstrap, DLQ).entries


def dead_lettered_ids(bootstrap: str) -> set[str]:
    return {entry.letter.task_id for entry in letters(bootstrap).values() if entry.letter.task_id}


def unit_property(node, unit: str, name: str) -> str:
    return node.run(f"systemctl show {unit} --property={name} --value").stdout.strip()


def worker_state(hosts, settle: bool = False) -> dict[str, tuple[int, str]]:
    """NRestarts and MainPID of every worker unit; with `settle`, once every unit runs (none between restarts)."""

    def state() -> dict[str, tuple[int, str]]:
        found = {}
        for name, partition in WORKERS.items():
            unit = f"celery-worker@{partition}.service"
            found[name] = (int(unit_property(hosts[name], unit, "NRestarts")), unit_property(hosts[name], unit, "MainPID"))
        return found

    if not settle:
        return state()
    return wait_until(lambda: (lambda s: s if "0" not in {pid for _, pid in s.values()} else None)(state()), timeout=120)


def restarts_note(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> str:
    risen = {name: after[name][0] - before[name][0] for name in before if after[name][0] != before[name][0]}
    return "worker restarts " + (", ".join(f"{name.removeprefix('chaos-')} +{n}" for name, n in risen.items()) if risen else "none")


def partitions(bootstrap: str) -> dict:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions


def wait_for_full_isr(bootstrap: str, timeout: float = 300) -> float:
    """Seconds until all 3 brokers are registered (fenced ones are left out of the metadata) and every partition of
    the task topic has its 3 replicas in sync again."""
    start = time.monotonic()
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def healed() -> bool:
        try:
            metadata = admin.list_topics(TOPIC, timeout=10)
            return len(metadata.brokers) == 3 and all(len(p.isrs) == 3 for p in metadata.topics[TOPIC].partitions.values())
        except Exception:  # a broker that is still coming back may not answer yet
            return False

    wait_until(healed, timeout=timeout, interval=2, message="ISR back to 3 on every partition of the task topic")
    return time.monotonic() - start


def listening(address: str, port: int = 9092) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def leader_of(bootstrap: str, partition: int) -> str:
    return BROKERS[partitions(bootstrap)[partition].leader - 1]


def run_fault(hosts, client, bootstrap, name: str, fault: Callable[[LoadGenerator], str], stop_load_after: bool = False) -> Row:
    """Start the load, run `fault` while it runs, wait for the load to finish (or stop it once the fault returned), drain
    and account. Fails if an acknowledged task id was lost."""
    before = worker_state(hosts, settle=True)
    load = LoadGenerator(publish=lambda *a: None, total=TASKS if not stop_load_after else 10**6, rate=RATE, keys=KEYS)
    load.publish = celery_publisher(client, load.run_id)
    load.start()
    try:
        notes = fault(load)
    finally:
        if stop_load_after:
            wait_until(lambda: load.sent_so_far >= TASKS, timeout=600, interval=1, message=f"{TASKS} tasks sent")
            load.stop()
        load.join(timeout=900)
    publish_seconds = (load.finished_at or 0) - (load.started_at or 0)
    tally, drain_seconds = drain(load, lambda: completions(hosts, load.run_id), lambda: dead_lettered_ids(bootstrap), timeout=DRAIN_TIMEOUT)
    after = worker_state(hosts)
    details = [
        notes,
        f"{tally.sent / max(publish_seconds, 1):.0f}/s sent",
        restarts_note(before, after),
        f"order violations {len(tally.order_violations)}",
        f"reruns after newer {tally.reruns_after_newer}",
    ]
    if tally.unacknowledged:
        details.append(f"never acknowledged {tally.unacknowledged}")
    row = Row(name, tally, drain_seconds, "; ".join(d for d in details if d))
    TABLE.append(row)
    print(f"\n{name}: {row.notes}; publish errors (first): {load.errors[:3]}; order: {tally.order_violations[:5]}")
    assert tally.sent >= TASKS
    assert not tally.lost, f"{len(tally.lost)} acknowledged tasks lost, e.g. {tally.lost[:10]}"
    return row


def test_cluster_is_healthy_before_the_faults(hosts, bootstrap):
    wait_for_full_isr(bootstrap, timeout=120)
    for name, partition in WORKERS.items():
        assert hosts[name].service(f"celery-worker@{partition}").is_running
    for name in BROKERS:
        assert unit_property(hosts[name], "kafka.service", "Restart") == "on-failure"


def test_broker_jvm_killed_with_sigkill_comes_back(hosts, client, bootstrap, addresses):
    def fault(load: LoadGenerator) -> str:
        wait_until(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        victim = leader_of(bootstrap, 0)
        node = hosts[victim]
        restarts = int(unit_property(node, "kafka.service", "NRestarts"))
        pid = unit_property(node, "kafka.service", "MainPID")
        node.run(f"kill -9 {pid}")
        killed = time.monotonic()
        wait_until(
            lambda: int(unit_property(node, "kafka.service", "NRestarts")) == restarts + 1 and node.service("kafka").is_running,
            timeout=120,
            interval=1,
            message=f"systemd restarting {victim}'s kafka",
        )
        wait_until(lambda: listening(addresses[victim]), timeout=180, interval=1, message=f"{victim}'s client listener")
        healed = wait_for_full_isr(bootstrap)
        back = time.monotonic() - killed - healed
        return f"killed {victim.removeprefix('chaos-')} (leader of p0), systemd restarted it in {back:.0f} s, ISR 3 {healed:.0f} s later"

    run_fault(hosts, client, bootstrap, "kill -9 broker JVM", fault)


def test_rolling_restart_through_the_playbook(hosts, client, bootstrap):
    # A changed server.properties flags every broker; the playbook's serial play then restarts them one at a time.
    extra = {"kafka_extra_properties": {"log.cleaner.backoff.ms": 15000 + int(time.time()) % 1000}}
    started = {name: unit_property(hosts[name], "kafka.service", "ExecMainStartTimestampMonotonic") for name in BROKERS}

    def fault(load: LoadGenerator) -> str:
        wait_until(lambda: load.sent_so_far >= 500, timeout=120, message="load under way")
        run_env = {
            **os.environ,
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_LIBRARY": str(REPO / "library"),
            "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
            "KCS_ARTIFACT_DIR": str(REPO / ".cache" / "artifacts"),
            "ANSIBLE_NOCOLOR": "1",
        }
        begin = time.monotonic()
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                INVENTORY,
                str(REPO / "playbooks/kafka.yml"),
                "-e",
                json.dumps(extra),
            ],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        restarted = [n for n in BROKERS if unit_property(hosts[n], "kafka.service", "ExecMainStartTimestampMonotonic") != started[n]]
        assert restarted == BROKERS, f"only {restarted} restarted"
        return f"playbook restarted {len(restarted)} brokers in {time.monotonic() - begin:.0f} s"

    run_fault(hosts, client, bootstrap, "rolling restart (playbook)", fault, stop_load_after=True)
    wait_for_full_isr(bootstrap)


def test_worker_oom_killed_by_its_memory_limit(hosts, client, bootstrap):
    name, partition = "chaos-celery2", 1
    unit = f"celery-worker@{partition}.service"
    holder: dict[str, str] = {}

    def fault(load: LoadGenerator) -> str:
        wait_until(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        restarts = int(unit_property(hosts[name], unit, "NRestarts"))
        key = next(k for k in (f"{load.run_id}-hog-{n}" for n in range(1000)) if partition_for_key(k, 3) == partition)
        # A client of its own: the load's thread keeps publishing through `client` meanwhile.
        hog_client = create_app(WorkerEnvironment(brokers=bootstrap.split(",")))
        holder["id"] = send_keyed(hog_client, "celery_kafka.demo.memory_hog", key, 400, load.run_id).id
        entry = wait_until(
            lambda: next((e for e in letters(bootstrap).values() if e.letter.task_id == holder["id"]), None),
            timeout=400,
            interval=3,
            message="the memory hog in the dead-letter topic",
        )
        assert entry.letter.kind == REDELIVERY_LIMIT and "delivered 3 times" in entry.letter.reason, entry.letter.reason
        rose = int(unit_property(hosts[name], unit, "NRestarts")) - restarts
        assert rose >= 3, "systemd restarted the worker after each OOM kill"
        journal = hosts[name].run(f"journalctl -u {unit} --no-pager -n 2000").stdout
        assert "status=9/KILL" in journal, "the kernel killed the worker (SIGKILL from the OOM killer)"
        return f"hog on {name.removeprefix('chaos-')} OOM-killed, NRestarts +{rose}, hog dead-lettered ({REDELIVERY_LIMIT})"

    run_fault(hosts, client, bootstrap, "worker OOM-killed", fault)
    assert hosts[name].service(f"celery-worker@{partition}").is_running


def test_broker_cut_off_the_network_for_30_seconds(hosts, client, bootstrap, addresses):
    def fault(load: LoadGenerator) -> str:
        wait_until(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        victim = leader_of(bootstrap, 1)
        subprocess.run(["docker", "network", "disconnect", NETWORK, victim], check=True, timeout=60)
        try:
            time.sleep(30)
        finally:
            subprocess.run(["docker", "network", "connect", "--ip", addresses[victim], NETWORK, victim], check=True, timeout=60)
        healed = wait_for_full_isr(bootstrap)
        # Back with its own address (its interface may come back under another name than eth0).
        assert network_address(victim) == addresses[victim]
        return f"{victim.removeprefix('chaos-')} (leader of p1) cut off 30 s, ISR 3 again {healed:.0f} s after reconnect"

    run_fault(hosts, client, bootstrap, "broker network cut 30 s", fault)
    wait_for_full_isr(bootstrap)


def test_poison_messages_amid_the_load(hosts, client, bootstrap):
    before = worker_state(hosts, settle=True)
    marker: dict[str, bytes] = {}

    def fault(load: LoadGenerator) -> str:
        wait_until(lambda: load.sent_so_far >= 1000, timeout=120, message="load under way")
        marker["run"] = f"chaos-poison {load.run_id} ".encode()
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        for n in range(100):
            producer.produce(TOPIC, value=b"\xff" + marker["run"] + str(n).encode(), partition=n % 3)
            producer.poll(0)
            time.sleep(0.05)
        assert producer.flush(60) == 0
        return "100 raw non-JSON records on partitions 0-2"

    run_fault(hosts, client, bootstrap, "100 poison messages", fault)
    poison = wait_until(
        lambda: (lambda found: found if len(found) >= 100 else None)(
            [e for e in letters(bootstrap).values() if e.letter.kind == UNDECODABLE and marker["run"] in (e.letter.raw_value or b"")]
        ),
        timeout=120,
        interval=3,
        message="100 poison messages in the dead-letter topic",
    )
    assert len(poison) == 100 and {e.letter.source.partition for e in poison} == {0, 1, 2}
    assert worker_state(hosts) == before, "no worker restarted (NRestarts and MainPID unchanged)"
    TABLE[-1].notes += f"; {len(poison)} poison in DLQ ({UNDECODABLE}), NRestarts and MainPID unchanged"
