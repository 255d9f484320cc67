"""What every scenario's verifier needs, in one place: the scenario's inventory, host access, container addresses,
playbook runs, polling, and the Kafka and worker helpers.

Molecule puts this directory on PYTHONPATH (.config/molecule/config.yml). Nothing here assumes a topology: hosts,
node ids and partitions come from the scenario's own inventory, read once with ansible-inventory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import testinfra
from testinfra.host import Host

REPO = Path(__file__).resolve().parents[2]
INVENTORY_FILE = os.environ["MOLECULE_INVENTORY_FILE"]
# The scenario's inventory directory: molecule's generated file plus the linked hosts.yml and group_vars.
INVENTORY = str(Path(INVENTORY_FILE).parent)
SCENARIO = os.environ["MOLECULE_SCENARIO_NAME"]
NETWORK = f"kcs-{SCENARIO.replace('_', '-')}"
BIN = Path(sys.executable).parent

KAFKA_HOME = "/opt/kafka/current"
# The kafka role's mark of a node whose change waits for the rolling restart (kafka_state_dir/restart-pending).
RESTART_FLAG = "/var/lib/kafka/restart-pending"
CLIENT_PORT = 9092
TASK_TOPIC = "celery.tasks"
DLQ_TOPIC = "celery.tasks.dlq"
WORKER_GROUP = "celery.tasks.workers"
# Written by the example tasks (demo_app.tasks.record): one JSON line per task run, in the order the node ran them.
RESULTS = "/var/lib/celery-worker/results.jsonl"
# Where a worker node journals its deliveries and acks (celery_worker_journal), one file per owned partition.
JOURNALS = "/var/lib/celery-worker/journal"

T = TypeVar("T")


# --- The scenario's inventory -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    groups: dict[str, list[str]]
    hostvars: dict[str, dict[str, Any]]

    def group(self, name: str) -> list[str]:
        """The hosts of a group, its child groups' included."""
        return self.groups.get(name, [])

    @property
    def hosts(self) -> list[str]:
        """Every host of the inventory (ansible-inventory lists `all` by its children, not its hosts)."""
        return sorted(set(self.hostvars).union(*self.groups.values()))

    @property
    def brokers(self) -> list[str]:
        return self.group("kafka")

    @property
    def controllers(self) -> list[str]:
        """Dedicated controllers, or the brokers themselves in combined mode."""
        return self.group("kafka_controller") or self.brokers

    @property
    def dedicated(self) -> bool:
        return set(self.controllers) != set(self.brokers)

    @property
    def kafka_nodes(self) -> list[str]:
        return self.brokers + [name for name in self.controllers if name not in self.brokers]

    def queue_of(self, name: str) -> str:
        """The queue a worker host consumes (its celery_worker_queue; the task topic when unset or left to a template
        that only the playbook renders)."""
        queue = str(self.hostvars[name].get("celery_worker_queue", TASK_TOPIC))
        return TASK_TOPIC if "{{" in queue else queue

    @property
    def all_workers(self) -> dict[str, int]:
        """Worker node of any queue -> the partition it owns (of its queue)."""
        return {name: int(self.hostvars[name]["celery_worker_partition"]) for name in self.group("celery_workers")}

    def queue_workers(self, queue: str) -> dict[str, int]:
        """Worker node of `queue` -> the partition it owns."""
        return {name: partition for name, partition in self.all_workers.items() if self.queue_of(name) == queue}

    @property
    def workers(self) -> dict[str, int]:
        """Worker node of the task topic (the ordered default queue) -> the partition it owns."""
        return self.queue_workers(TASK_TOPIC)

    @property
    def monitor(self) -> str:
        return self.group("monitoring")[0]

    def node_ids(self, names: list[str]) -> list[int]:
        return sorted(int(self.hostvars[name]["kafka_node_id"]) for name in names)


@cache
def inventory() -> Inventory:
    listing = json.loads(run([str(BIN / "ansible-inventory"), "-i", INVENTORY, "--list"], check=True).stdout)
    hostvars = listing["_meta"]["hostvars"]

    def members(name: str) -> set[str]:
        body = listing.get(name, {})
        return set(body.get("hosts", [])).union(*(members(child) for child in body.get("children", [])))

    groups = {name: sorted(members(name)) for name in listing if name != "_meta"}
    return Inventory(groups, hostvars)


# --- Hosts and addresses ------------------------------------------------------------------------------------------


@cache
def host(name: str) -> Host:
    """A testinfra host reached the way the playbooks reach it (the scenario's inventory)."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY_FILE)


def container_address(container: str) -> str:
    """The container's address on the scenario's network as Docker reports it now."""
    template = f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}'
    return run(["docker", "inspect", container, "--format", template], check=True).stdout.strip()


# Fixed for a container's lifetime (create.yml pins a subnet; a reconnected container gets its address back).
address = cache(container_address)


def bootstrap(port: int = CLIENT_PORT) -> str:
    """The brokers' CLIENT listeners as the controller reaches them."""
    return ",".join(f"{address(name)}:{port}" for name in inventory().brokers)


def unit_property(node: Host, unit: str, name: str) -> str:
    return node.run(f"systemctl show {unit} --property={name} --value").stdout.strip()


def registered_tasks(node: Host, partition: int) -> set[str]:
    """The tasks a worker registered, from the `[tasks]` list of its latest startup banner in the journal."""
    banner = node.run(f"journalctl --unit celery-worker@{partition} --no-pager --output cat").stdout.split("[tasks]")[-1]
    return {line.split(". ", 1)[1].strip() for line in banner.splitlines() if line.strip().startswith(". ")}


# --- Commands and playbook runs -----------------------------------------------------------------------------------


def run(command: list[str], check: bool = False, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check, env=env)


def ansible_env(**extra: str) -> dict[str, str]:
    """Molecule's environment (roles, modules, vault password, ansible.cfg) without colours, results as JSON."""
    env = {name: value for name, value in os.environ.items() if name not in ("ANSIBLE_FORCE_COLOR", "PY_COLORS")}
    return {**env, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", **extra}


def run_playbook(playbook: str, *args: str, inventories: tuple[str, ...] = (), timeout: float = 1800) -> subprocess.CompletedProcess:
    """ansible-playbook REPO/<playbook> against the scenario's inventory (plus `inventories`), never raising."""
    sources = [arg for source in (INVENTORY, *inventories) for arg in ("-i", source)]
    started = time.monotonic()
    result = run([str(BIN / "ansible-playbook"), *sources, str(REPO / playbook), *args], timeout=timeout, env=ansible_env())
    result.stdout = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    print(f"\n{playbook} {' '.join(args)}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
    return result


def run_module(target: str, module: str, args: dict[str, Any]) -> subprocess.CompletedProcess:
    return run([str(BIN / "ansible"), "-i", INVENTORY, target, "-m", module, "-a", json.dumps(args)], timeout=600, env=ansible_env())


def output(result: subprocess.CompletedProcess) -> str:
    """stdout and stderr with white space folded (ansible-core 2.19 prints task errors on stderr)."""
    return " ".join((result.stdout + result.stderr).split())


def recap(result: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    section = result.stdout.rsplit("PLAY RECAP", 1)[-1]
    counts: dict[str, dict[str, int]] = {}
    for line in section.splitlines():
        match = re.match(r"^(\S+)\s*:\s*(ok=.*)$", line.strip())
        if match:
            counts[match.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return counts


def changed_hosts(result: subprocess.CompletedProcess) -> dict[str, int]:
    return {name: counts["changed"] for name, counts in recap(result).items() if counts["changed"]}


# --- Polling ------------------------------------------------------------------------------------------------------


def poll(condition: Callable[[], T], timeout: float = 60, message: str = "condition", interval: float = 1) -> T:
    """Call `condition` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


# --- Kafka --------------------------------------------------------------------------------------------------------

_ADMINS: dict[str, Any] = {}


def admin(servers: str | None = None, **config: Any):
    """One AdminClient per bootstrap list, kept alive: futures of a collected client fail with _DESTROY."""
    from confluent_kafka.admin import AdminClient

    servers = servers or bootstrap()
    key = json.dumps([servers, config], sort_keys=True)
    if key not in _ADMINS:
        _ADMINS[key] = AdminClient({"bootstrap.servers": servers, "socket.timeout.ms": 5000, **config})
    return _ADMINS[key]


def partitions(topic: str = TASK_TOPIC, servers: str | None = None) -> dict:
    return admin(servers).list_topics(topic, timeout=10).topics[topic].partitions


def leader_of(partition: int, topic: str = TASK_TOPIC) -> str:
    node_id = partitions(topic)[partition].leader
    return next(name for name in inventory().brokers if int(inventory().hostvars[name]["kafka_node_id"]) == node_id)


def fully_replicated(topics: tuple[str, ...] = (TASK_TOPIC, DLQ_TOPIC), brokers: int = 3) -> bool:
    """Every broker registered (a fenced one is left out of the metadata) and every partition's ISR complete."""
    try:
        metadata = admin().list_topics(timeout=10)
        return len(metadata.brokers) == brokers and all(
            len(p.isrs) == len(p.replicas) == 3 for name in topics for p in metadata.topics[name].partitions.values()
        )
    except Exception:  # a broker that is coming back may not answer yet
        return False


def wait_full_isr(timeout: float = 300, topics: tuple[str, ...] = (TASK_TOPIC, DLQ_TOPIC)) -> float:
    """Seconds until the cluster is fully replicated again."""
    started = time.monotonic()
    poll(lambda: fully_replicated(topics), timeout=timeout, interval=2, message=f"ISR back to 3 on every partition of {topics}")
    return time.monotonic() - started


def kafka_tool(node: Host, main_class: str, args: str) -> str:
    """Run one of Kafka's admin tools inside a container and return its stdout (fails the test on error)."""
    result = node.run(f"java -cp '{KAFKA_HOME}/libs/*' {main_class} {args}")
    assert result.rc == 0, f"{main_class} {args} failed: {result.stderr[-2000:]}"
    return result.stdout


def produce_and_consume(producer_servers: str, consumer_servers: str, partition: int = 0, topic: str = TASK_TOPIC) -> None:
    """Send one unique message with acks=all through one bootstrap list and read it back through another."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    marker = f"verify-{uuid.uuid4()}".encode()
    producer = Producer({"bootstrap.servers": producer_servers, "acks": "all", "enable.idempotence": True})
    delivered: list = []
    producer.produce(topic, value=marker, partition=partition, on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert producer.flush(30) == 0, "message not delivered within 30 s"
    err, msg = delivered[0]
    assert err is None, f"delivery failed: {err}"
    consumer = Consumer({"bootstrap.servers": consumer_servers, "group.id": f"verify-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, partition, msg.offset())])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = consumer.poll(1)
            if got is not None and not got.error():
                assert got.value() == marker
                return
        raise AssertionError("produced message was not consumed within 30 s")
    finally:
        consumer.close()


class KeyedLoad:
    """A keyed producer load on its own topic (3 partitions, replication 3, min.insync.replicas 2, acks=all,
    idempotent), for as long as the `with` block runs; then every acknowledged message is read back. `report()`
    says how many were acknowledged, failed, lost, duplicated, and how many keys are out of order."""

    def __init__(self, topic: str, keys: int = 30, pause: float = 0.01) -> None:
        self.topic, self.keys, self.pause = topic, keys, pause
        self.acked: list[tuple[str, int]] = []
        self.failed: list[str] = []
        self.read: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> KeyedLoad:
        from confluent_kafka import Producer
        from confluent_kafka.admin import NewTopic

        admin().create_topics([NewTopic(self.topic, 3, 3, config={"min.insync.replicas": "2"})])[self.topic].result(timeout=60)
        producer = Producer({"bootstrap.servers": bootstrap(), "acks": "all", "enable.idempotence": True, "linger.ms": 5})

        def delivered(error: Any, message: Any) -> None:
            if error is None:
                self.acked.append((message.key().decode(), int(message.value())))
            else:
                self.failed.append(str(error))

        def load() -> None:
            seq = 0
            while not self._stop.is_set():
                producer.produce(self.topic, key=f"key-{seq % self.keys}", value=str(seq), on_delivery=delivered)
                producer.poll(0)
                seq += 1
                time.sleep(self.pause)
            producer.flush(120)

        self._thread = threading.Thread(target=load, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=180)

    def read_back(self, timeout: float = 120) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": f"verify-{uuid.uuid4().hex}", "enable.auto.commit": False})
        try:
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1] for p in range(3)}
            consumer.assign([TopicPartition(self.topic, p, 0) for p in range(3)])
            positions = dict.fromkeys(range(3), 0)
            deadline = time.monotonic() + timeout
            while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    self.read.setdefault(message.key().decode(), []).append(int(message.value()))
                    positions[message.partition()] = message.offset() + 1
        finally:
            consumer.close()

    def report(self) -> dict[str, int]:
        if not self.read:
            self.read_back()
        stored = [(key, seq) for key, seqs in self.read.items() for seq in seqs]
        return {
            "acknowledged": len(self.acked),
            "failed": len(self.failed),
            "lost": len(set(self.acked) - set(stored)),
            "duplicates": len(stored) - len(set(stored)),
            "keys out of order": sum(1 for seqs in self.read.values() if seqs != sorted(seqs)),
        }


# --- Celery workers -----------------------------------------------------------------------------------------------


def client():
    """A Celery app of the package, publishing through the scenario's brokers from the controller."""
    from celery_kafka.app import create_app
    from celery_kafka.settings import WorkerEnvironment

    return create_app(WorkerEnvironment(brokers=bootstrap().split(",")))


def worker_unit(partition: int) -> str:
    return f"celery-worker@{partition}.service"


def records(node: Host, run_id: str) -> list[dict]:
    """The task runs of `run_id` on one worker node, in the order the node ran them (its results file's order)."""
    # `wc -l` counts finished lines: the worker may be writing the last one (grep would print it half written).
    finished = f'head -n "$(wc -l < {RESULTS})" {RESULTS} | grep -F \'"run_id": "{run_id}"\''
    content = node.run(f"[ -f {RESULTS} ] && {finished} || true").stdout
    return [row for row in (json.loads(line) for line in content.splitlines() if line.strip()) if row.get("run_id") == run_id]


def all_records(run_id: str, workers: dict[str, int] | None = None) -> dict[str, list[dict]]:
    return {name: records(host(name), run_id) for name in workers or inventory().workers}


def key_on(partition: int, partitions: int = 3, prefix: str = "key") -> str:
    """A key that routes to `partition` of a topic with `partitions` partitions."""
    from celery_kafka.partitioning import partition_for_key

    return next(k for k in (f"{prefix}-{n}" for n in range(10000)) if partition_for_key(k, partitions) == partition)


def letters(servers: str | None = None) -> dict:
    """The dead-letter topic's entries by letter id."""
    from celery_kafka import cli

    return cli.DeadLetterTopic.read(servers or bootstrap(), DLQ_TOPIC).entries


# --- Rolling restarts, watched from each node's own report --------------------------------------------------------

BROKER_RUNNING = 3  # org.apache.kafka.metadata.BrokerState.RUNNING
BROKER_STATE = re.compile(r"^kafka_server_kafkaserver_brokerstate (\S+)$", re.MULTILINE)
# Every live KRaft state: an election (after the leader restarts) briefly puts healthy voters in candidate,
# prospective, voted or unattached. Only "resigned" (shutting down) or no answer at all means down.
RAFT_MEMBER = re.compile(
    r'^kafka_server_raft_metrics_current_state\{state="(leader|follower|candidate|prospective|voted|unattached)"\} 1\.0$', re.MULTILINE
)


def node_up(node_address: str, is_broker: bool) -> bool | None:
    """The node's own report through its JMX exporter: a broker is up when its BrokerState is RUNNING, a dedicated
    controller when it takes part in the quorum (any state but resigned). False when the JVM refuses the connection
    or reports another state; None when it is merely slow to answer (a busy JVM is not a down node)."""
    try:
        body = requests.get(f"http://{node_address}:7071/metrics", timeout=3).text
    except requests.ConnectionError as error:
        return None if isinstance(error, requests.ConnectTimeout) else False
    except requests.Timeout:
        return None
    if is_broker:
        match = BROKER_STATE.search(body)
        return match is not None and float(match.group(1)) == BROKER_RUNNING
    return RAFT_MEMBER.search(body) is not None


def down_intervals(samples: list[tuple[float, dict[str, bool]]], name: str) -> list[tuple[float, float]]:
    intervals, start = [], None
    for moment, running in samples:
        if not running[name] and start is None:
            start = moment
        elif running[name] and start is not None:
            intervals.append((start, moment))
            start = None
    if start is not None:
        intervals.append((start, samples[-1][0]))
    return intervals


# The release every scenario ends on; a scenario that deploys an older one upgrades to it (test_90_upgrade.py).
UPGRADE_TARGET = "4.3.1"


def kafka_release(name: str) -> str:
    """The release node `name` runs (the target of /opt/kafka/current)."""
    return host(name).file(KAFKA_HOME).linked_to.rsplit("-", 1)[-1]


def upgrade_pending() -> bool:
    return any(kafka_release(name) != UPGRADE_TARGET for name in inventory().kafka_nodes)


def rolling_config_change(setting: str, value: int) -> str:
    """Change one broker setting through playbooks/kafka.yml and check it rolled out as rolling_restart_by says."""
    summary = rolling_restart_by({"kafka_extra_properties": {setting: value}})
    for name in inventory().kafka_nodes:
        assert f"{setting}={value}" in host(name).file("/etc/kafka/server.properties").content_string
    return summary


# How long the node watch of rolling_restart_by keeps sampling fast after a node changed state.
WATCH_SETTLE_SECONDS = 15


def rolling_restart_by(extra_vars: dict) -> str:
    """Run playbooks/kafka.yml with `extra_vars`, a change that restarts every node, and watch every node's own state
    while it rolls out (five times a second around each restart): every node goes down exactly once, never two at the
    same time, dedicated controllers before brokers, and systemd agrees each one restarted. Returns a one-line summary."""
    topology = inventory()
    nodes = {name: address(name) for name in topology.kafka_nodes}
    samples: list[tuple[float, dict[str, bool]]] = []
    stop = threading.Event()

    def watch() -> None:
        # A sample costs each JVM a walk of its MBeans (about 45 ms of CPU). A restart keeps a node down for seconds,
        # so once a second is enough while every node is up; while one is down and for a while after, when a second
        # node going down too would show, five times a second.
        last = dict.fromkeys(nodes, True)
        last_change = 0.0
        while not stop.is_set():
            for name, ip in nodes.items():
                state = node_up(ip, name in topology.brokers)
                last[name] = last[name] if state is None else state
            if samples and last != samples[-1][1]:
                last_change = time.monotonic()
            samples.append((time.time(), dict(last)))
            settled = all(last.values()) and time.monotonic() - last_change > WATCH_SETTLE_SECONDS
            time.sleep(1.0 if settled else 0.2)

    before = {name: unit_property(host(name), "kafka.service", "ExecMainStartTimestampMonotonic") for name in nodes}
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        result = run_playbook("playbooks/kafka.yml", "-e", json.dumps(extra_vars))
    finally:
        time.sleep(2)
        stop.set()
        watcher.join()
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    for name in nodes:
        assert not host(name).file(RESTART_FLAG).exists
    assert len(samples) > 50, "too few samples of node state"
    windows = {name: down_intervals(samples, name) for name in nodes}
    for name, intervals in windows.items():
        spans = ", ".join(
            f"{datetime.fromtimestamp(a):%H:%M:%S.%f}-{datetime.fromtimestamp(b):%H:%M:%S.%f} ({b - a:.1f} s)" for a, b in intervals
        )
        print(f"{name} down: {spans}")
    fewest = min(sum(up.values()) for _, up in samples)
    print(f"{len(samples)} samples; fewest of {len(nodes)} nodes up at once: {fewest}")
    assert fewest >= len(nodes) - 1, "two nodes were down at the same time"
    for name, intervals in windows.items():
        assert len(intervals) == 1, f"{name} should have been down exactly once, was: {intervals}"
    if topology.dedicated:
        last_controller = max(windows[name][0][1] for name in topology.controllers)
        first_broker = min(windows[name][0][0] for name in topology.brokers)
        assert last_controller < first_broker, "controllers must be restarted before brokers"
    restarted = [name for name in nodes if unit_property(host(name), "kafka.service", "ExecMainStartTimestampMonotonic") != before[name]]
    assert restarted == list(nodes), f"only {restarted} restarted"
    return f"playbook restarted {len(restarted)} nodes one at a time in {took:.0f} s (fewest up at once {fewest} of {len(nodes)})"


# --- Fixtures (this module is a pytest plugin: every scenario's tests get them) ------------------------------------


@pytest.fixture(scope="session")
def prometheus() -> str:
    """Prometheus on the monitoring node, as the controller reaches it."""
    return f"http://{address(inventory().monitor)}:9090"


@pytest.fixture(scope="session")
def alertmanager() -> str:
    return f"http://{address(inventory().monitor)}:9093"


# --- Test order ---------------------------------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list) -> None:
    """Run test files in the order of their names' numeric prefix (test_10_..., test_20_...), wherever they live:
    a scenario's own checks and the shared ones interleave by number, and later files may disturb the cluster.
    Loaded as a pytest plugin through PYTEST_PLUGINS (.config/molecule/config.yml); the sort is stable, so tests keep
    their order within a file."""
    items.sort(key=lambda item: Path(str(item.fspath)).name)


# --- Where the CPU goes -------------------------------------------------------------------------------------------
# The suite shares 2 cores between two lanes, so a test's wall time says more about its neighbours than about itself.
# The machine's busy CPU seconds (all processes, from /proc/stat) while each test ran tell what the test costs.

_CPU_SECONDS: list[tuple[float, float, str]] = []


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (user, nice, system, irq, softirq, steal) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    started, busy = time.monotonic(), machine_busy_seconds()
    try:
        return (yield)
    finally:
        _CPU_SECONDS.append((machine_busy_seconds() - busy, time.monotonic() - started, item.name))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _CPU_SECONDS:
        return
    terminalreporter.section("machine CPU seconds per test (every process on the machine, another lane's too)")
    for cpu, wall, name in sorted(_CPU_SECONDS, reverse=True)[:15]:
        terminalreporter.write_line(f"{cpu:8.0f} cpu-s {wall:7.0f} s  {name}")
    total_cpu = sum(cpu for cpu, _, _ in _CPU_SECONDS)
    total_wall = sum(wall for _, wall, _ in _CPU_SECONDS)
    terminalreporter.write_line(f"{total_cpu:8.0f} cpu-s {total_wall:7.0f} s  all {len(_CPU_SECONDS)} tests")
