"""Verify the live 3-node KRaft cluster. Tests run in file order; the disruptive ones come last."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from conftest import INVENTORY, REPO, TOPOLOGY, kafka_tool
from kafka_cli import parse_quorum_replication, parse_quorum_status

TASK_TOPIC = "celery.tasks"
DLQ_TOPIC = "celery.tasks.dlq"
QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-controller " + ",".join(f"{name}:9093" for name in TOPOLOGY.controllers)
FIRST, SECOND, LAST = TOPOLOGY.brokers[0], TOPOLOGY.brokers[1], TOPOLOGY.brokers[-1]


_ADMINS: dict[str, AdminClient] = {}


def admin(bootstrap: str) -> AdminClient:
    """One client per bootstrap list, kept alive: futures of a collected client fail with _DESTROY."""
    if bootstrap not in _ADMINS:
        _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    return _ADMINS[bootstrap]


def wait_full_isr(bootstrap: str, topics: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin(bootstrap).list_topics(timeout=10)
        short = [
            f"{name}:{pid} isr={list(p.isrs)}" for name in topics for pid, p in metadata.topics[name].partitions.items() if len(p.isrs) != 3
        ]
        if not short:
            return
        assert time.monotonic() < deadline, f"ISR did not return to 3 replicas: {short}"
        time.sleep(2)


def produce_and_consume(producer_bootstrap: str, consumer_bootstrap: str, partition: int = 0) -> None:
    """Send one unique message with acks=all through one bootstrap and read it back through another."""
    marker = f"verify-{uuid.uuid4()}".encode()
    producer = Producer({"bootstrap.servers": producer_bootstrap, "acks": "all", "enable.idempotence": True})
    delivered: list = []
    producer.produce(TASK_TOPIC, value=marker, partition=partition, on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert producer.flush(30) == 0, "message not delivered within 30 s"
    err, msg = delivered[0]
    assert err is None, f"delivery failed: {err}"
    consumer = Consumer({"bootstrap.servers": consumer_bootstrap, "group.id": f"verify-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(TASK_TOPIC, partition, msg.offset())])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = consumer.poll(1)
            if got is not None and not got.error():
                assert got.value() == marker
                return
        pytest.fail("produced message was not consumed within 30 s")
    finally:
        consumer.close()


def test_three_brokers_registered(bootstrap, topology):
    cluster = admin(bootstrap).describe_cluster(request_timeout=10).result()
    assert len(topology.brokers) == 3
    assert sorted(node.id for node in cluster.nodes) == topology.ids(topology.brokers)
    assert cluster.controller is not None


def test_quorum_has_three_voters_and_one_leader(hosts, topology):
    status = parse_quorum_status(kafka_tool(hosts[FIRST], QUORUM, "describe --status"))
    replicas = parse_quorum_replication(kafka_tool(hosts[SECOND], QUORUM, "describe --replication"))
    voters = [r for r in replicas if r.status in ("Leader", "Follower")]
    assert sorted(r.node_id for r in voters) == topology.ids(topology.controllers)
    assert len(voters) == 3
    leaders = [r.node_id for r in replicas if r.status == "Leader"]
    assert len(leaders) == 1
    assert int(status["LeaderId"]) == leaders[0]
    if topology.dedicated:
        # Brokers follow the metadata log as observers, not voters.
        assert sorted(r.node_id for r in replicas if r.status == "Observer") == topology.ids(topology.brokers)


def test_declared_topics_fully_replicated(bootstrap):
    metadata = admin(bootstrap).list_topics(timeout=10)
    assert len(metadata.topics[TASK_TOPIC].partitions) == 3
    assert len(metadata.topics[DLQ_TOPIC].partitions) == 1
    for name in (TASK_TOPIC, DLQ_TOPIC):
        for pid, partition in metadata.topics[name].partitions.items():
            assert len(partition.replicas) == 3, f"{name}:{pid} replicas {partition.replicas}"
            assert sorted(partition.isrs) == sorted(partition.replicas), f"{name}:{pid} isr {partition.isrs}"


def test_dead_letter_topic_keeps_seven_days(bootstrap):
    resource = ConfigResource(ConfigResource.Type.TOPIC, DLQ_TOPIC)
    configs = admin(bootstrap).describe_configs([resource])[resource].result()
    assert configs["retention.ms"].value == "604800000"
    assert configs["min.insync.replicas"].value == "2"


def test_cluster_wide_safety_settings(hosts, topology):
    for name in topology.nodes:
        lines = hosts[name].file("/etc/kafka/server.properties").content_string.splitlines()
        roles = [role for role, group in (("broker", topology.brokers), ("controller", topology.controllers)) if name in group]
        assert f"process.roles={','.join(roles)}" in lines
        if "broker" in roles:
            for line in (
                "min.insync.replicas=2",
                "default.replication.factor=3",
                "unclean.leader.election.enable=false",
                "auto.create.topics.enable=false",
            ):
                assert line in lines


def test_produce_through_one_broker_consume_through_another(addresses):
    produce_and_consume(f"{addresses[FIRST]}:9092", f"{addresses[SECOND]}:9092")


@pytest.mark.parametrize("name", TOPOLOGY.nodes)
def test_jmx_exporter_serves_kafka_metrics(addresses, topology, name):
    body = requests.get(f"http://{addresses[name]}:7071/metrics", timeout=10).text
    if name in topology.brokers:
        assert "kafka_server_replicamanager_underreplicatedpartitions 0.0" in body
        assert "kafka_server_kafkaserver_brokerstate 3.0" in body
        assert "kafka_network_requestmetrics_requests_total{" in body
    if name in topology.controllers:
        assert "kafka_controller_kafkacontroller_activecontrollercount " in body
        assert "kafka_controller_kafkacontroller_offlinepartitionscount 0.0" in body
    assert 'kafka_server_raft_metrics_current_state{state="' in body


def run_ansible(args: list[str]) -> subprocess.CompletedProcess:
    """Run an ansible command against the scenario's inventory with the project's roles and modules."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_LIBRARY": str(REPO / "library"),
            "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
            "ANSIBLE_NOCOLOR": "1",
            # The assertions below read JSON results, whatever the scenario's ansible.cfg prefers.
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        }
    )
    return subprocess.run([args[0], "-i", INVENTORY, *args[1:]], env=env, capture_output=True, text=True, timeout=1500, check=False)


def topic_module(partitions: int, replication: int = 3) -> subprocess.CompletedProcess:
    spec = {
        "bootstrap_servers": ",".join(f"{name}:9091" for name in TOPOLOGY.brokers),
        "kafka_home": "/opt/kafka/current",
        "topics": [
            {"name": "verify.scratch", "partitions": partitions, "replication_factor": replication, "config": {"retention.ms": 3600000}}
        ],
    }
    return run_ansible(["ansible", FIRST, "-m", "kafka_topics", "-a", json.dumps(spec)])


def test_topic_module_creates_grows_and_refuses_to_shrink(bootstrap):
    created = topic_module(2)
    assert created.returncode == 0 and '"changed": true' in created.stdout, created.stdout[-3000:]
    grown = topic_module(4)
    assert "raise verify.scratch partitions from 2 to 4" in grown.stdout, grown.stdout[-3000:]
    again = topic_module(4)
    assert again.returncode == 0 and '"changed": false' in again.stdout, again.stdout[-3000:]
    shrink = topic_module(3)
    assert shrink.returncode != 0
    assert "refusing to lower partitions from 4 to 3" in shrink.stdout, shrink.stdout[-3000:]
    replication = topic_module(4, replication=2)
    assert "refusing to lower the replication factor from 3 to 2" in replication.stdout, replication.stdout[-3000:]
    metadata = admin(bootstrap).list_topics("verify.scratch", timeout=10)
    assert len(metadata.topics["verify.scratch"].partitions) == 4, "a refused change must leave the topic as it was"


def test_playbook_refuses_fewer_partitions_before_touching_brokers(bootstrap):
    converge = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")
    run = run_ansible(["ansible-playbook", converge, "-e", json.dumps({"celery_task_topic_partitions": 2})])
    assert run.returncode != 0
    # ansible-core 2.19 prints task errors on stderr.
    assert "refusing to lower partitions from 3 to 2" in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-2000:]
    assert "give its celery_worker_partition to a replacement host" in " ".join((run.stdout + run.stderr).split())
    assert "PLAY [Install and configure Kafka nodes]" not in run.stdout, "the refusal must come before any broker task"
    assert len(admin(bootstrap).list_topics(TASK_TOPIC, timeout=10).topics[TASK_TOPIC].partitions) == 3


def test_cluster_survives_one_broker_down(hosts, addresses, bootstrap):
    hosts[LAST].run("systemctl stop kafka")
    try:
        assert not hosts[LAST].service("kafka").is_running
        # acks=all with min.insync.replicas=2 still succeeds with two of three replicas.
        for partition in range(3):
            produce_and_consume(f"{addresses[FIRST]}:9092", f"{addresses[SECOND]}:9092", partition)
    finally:
        hosts[LAST].run("systemctl start kafka")
    wait_full_isr(bootstrap, [TASK_TOPIC, DLQ_TOPIC])


def _systemd_time(host, prop: str) -> float:
    value = host.run(f"systemctl show kafka --property={prop} --value").stdout.strip()
    return datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S %Z").timestamp() if value else 0.0


BROKER_RUNNING = 3  # org.apache.kafka.metadata.BrokerState.RUNNING
BROKER_STATE = re.compile(r"^kafka_server_kafkaserver_brokerstate (\S+)$", re.MULTILINE)
# Every live KRaft state: an election (after the leader restarts) briefly puts healthy voters in candidate,
# prospective, voted or unattached. Only "resigned" (shutting down) or no answer at all means down.
RAFT_MEMBER = re.compile(
    r'^kafka_server_raft_metrics_current_state\{state="(leader|follower|candidate|prospective|voted|unattached)"\} 1\.0$', re.MULTILINE
)


def node_up(address: str, is_broker: bool) -> bool | None:
    """The node's own report through its JMX exporter: a broker is up when its BrokerState is RUNNING, a dedicated
    controller when it takes part in the quorum (any state but resigned). False when the JVM refuses the connection
    or reports another state; None when it is merely slow to answer (a busy JVM is not a down node)."""
    try:
        body = requests.get(f"http://{address}:7071/metrics", timeout=3).text
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


def test_config_change_rolls_one_node_at_a_time(hosts, addresses, bootstrap, topology):
    """Change a setting through the playbook and watch every node's own state while the change rolls out."""
    samples: list[tuple[float, dict[str, bool]]] = []
    stop = threading.Event()

    def watch() -> None:
        last = dict.fromkeys(addresses, True)
        while not stop.is_set():
            for name, ip in addresses.items():
                state = node_up(ip, name in topology.brokers)
                last[name] = last[name] if state is None else state
            samples.append((time.time(), dict(last)))
            time.sleep(0.2)

    # A value that differs on every run, so re-running verify restarts the nodes again.
    backoff_ms = random.randint(15001, 29999)
    before = {name: _systemd_time(host, "ActiveEnterTimestamp") for name, host in hosts.items()}
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run = run_ansible(
        [
            "ansible-playbook",
            str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"),
            "-e",
            json.dumps({"kafka_extra_properties": {"log.cleaner.backoff.ms": backoff_ms}}),
        ]
    )
    time.sleep(2)
    stop.set()
    watcher.join()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

    for host in hosts.values():
        assert f"log.cleaner.backoff.ms={backoff_ms}" in host.file("/etc/kafka/server.properties").content_string
        assert not host.file("/var/lib/kafka/restart-pending").exists

    # Each node's own view, sampled several times a second: every node was down once, never two at the same time.
    assert len(samples) > 50, "too few samples of node state"
    windows = {name: down_intervals(samples, name) for name in topology.nodes}
    for name, intervals in windows.items():
        spans = ", ".join(
            f"{datetime.fromtimestamp(a):%H:%M:%S.%f}-{datetime.fromtimestamp(b):%H:%M:%S.%f} ({b - a:.1f} s)" for a, b in intervals
        )
        print(f"{name} down: {spans}")
    fewest = min(sum(up.values()) for _, up in samples)
    print(f"{len(samples)} samples; fewest of {len(topology.nodes)} nodes up at once: {fewest}")
    assert fewest >= len(topology.nodes) - 1, "two nodes were down at the same time"
    for name, intervals in windows.items():
        assert len(intervals) == 1, f"{name} should have been down exactly once, was: {intervals}"
    if topology.dedicated:
        last_controller = max(windows[name][0][1] for name in topology.controllers)
        first_broker = min(windows[name][0][0] for name in topology.brokers)
        assert last_controller < first_broker, "controllers must be restarted before brokers"

    # systemd's view agrees: every node restarted during the run.
    for name, host in hosts.items():
        assert _systemd_time(host, "ActiveEnterTimestamp") > before[name], f"{name} was not restarted"
    wait_full_isr(bootstrap, [TASK_TOPIC, DLQ_TOPIC])
