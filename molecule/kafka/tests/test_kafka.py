"""Verify the live 3-node KRaft cluster. Tests run in file order; the disruptive ones come last."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from conftest import BROKERS, REPO, kafka_tool
from kafka_cli import parse_quorum_replication, parse_quorum_status

TASK_TOPIC = "celery.tasks"
DLQ_TOPIC = "celery.tasks.dlq"
QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-controller kafka1:9093,kafka2:9093,kafka3:9093"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})


def wait_full_isr(bootstrap: str, topics: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin(bootstrap).list_topics(timeout=10)
        short = [
            f"{name}:{pid} isr={list(p.isrs)}"
            for name in topics
            for pid, p in metadata.topics[name].partitions.items()
            if len(p.isrs) != 3
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


def test_three_brokers_registered(bootstrap):
    cluster = admin(bootstrap).describe_cluster(request_timeout=10).result()
    assert sorted(node.id for node in cluster.nodes) == [1, 2, 3]
    assert cluster.controller is not None


def test_quorum_has_three_voters_and_one_leader(hosts):
    status = parse_quorum_status(kafka_tool(hosts["kafka1"], QUORUM, "describe --status"))
    replicas = parse_quorum_replication(kafka_tool(hosts["kafka2"], QUORUM, "describe --replication"))
    voters = [r for r in replicas if r.status in ("Leader", "Follower")]
    assert sorted(r.node_id for r in voters) == [1, 2, 3]
    leaders = [r.node_id for r in replicas if r.status == "Leader"]
    assert len(leaders) == 1
    assert int(status["LeaderId"]) == leaders[0]


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


def test_cluster_wide_safety_settings(hosts):
    properties = hosts["kafka1"].file("/etc/kafka/server.properties").content_string
    for line in ("min.insync.replicas=2", "default.replication.factor=3", "unclean.leader.election.enable=false",
                 "auto.create.topics.enable=false", "process.roles=broker,controller"):
        assert line in properties.splitlines()


def test_produce_through_one_broker_consume_through_another(addresses):
    produce_and_consume(f"{addresses['kafka1']}:9092", f"{addresses['kafka2']}:9092")


@pytest.mark.parametrize("name", BROKERS)
def test_jmx_exporter_serves_kafka_metrics(addresses, name):
    body = requests.get(f"http://{addresses[name]}:7071/metrics", timeout=10).text
    assert "kafka_server_replicamanager_underreplicatedpartitions " in body
    assert 'kafka_server_raft_metrics_current_state_info{state="' in body
    assert "kafka_controller_kafkacontroller_activecontrollercount " in body
    assert "kafka_network_requestmetrics_requests_total{" in body
    assert "kafka_server_replicamanager_underreplicatedpartitions 0.0" in body


def test_cluster_survives_one_broker_down(hosts, addresses, bootstrap):
    hosts["kafka3"].run("systemctl stop kafka")
    try:
        assert not hosts["kafka3"].service("kafka").is_running
        # acks=all with min.insync.replicas=2 still succeeds with two of three replicas.
        for partition in range(3):
            produce_and_consume(f"{addresses['kafka1']}:9092", f"{addresses['kafka2']}:9092", partition)
    finally:
        hosts["kafka3"].run("systemctl start kafka")
    wait_full_isr(bootstrap, [TASK_TOPIC, DLQ_TOPIC])


def _systemd_time(host, prop: str) -> float:
    value = host.run(f"systemctl show kafka --property={prop} --value").stdout.strip()
    return datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S %Z").timestamp() if value else 0.0


def test_config_change_rolls_one_broker_at_a_time(hosts, bootstrap):
    """Change a broker setting through the playbook and watch the cluster while it restarts."""
    samples: list[tuple[float, frozenset[int]]] = []
    stop = threading.Event()

    def watch() -> None:
        client = admin(bootstrap)
        while not stop.is_set():
            try:
                nodes = client.describe_cluster(request_timeout=3).result().nodes
                samples.append((time.time(), frozenset(node.id for node in nodes)))
            except KafkaException:
                pass
            time.sleep(0.5)

    before = {name: _systemd_time(host, "ActiveEnterTimestamp") for name, host in hosts.items()}
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    env = dict(os.environ)
    env.update({
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LIBRARY": str(REPO / "library"),
        "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
    })
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(Path(__file__).parents[1] / "converge.yml"),
         "-e", '{"kafka_extra_properties": {"log.cleaner.threads": 2}}'],
        env=env, capture_output=True, text=True, timeout=1500, check=False,
    )
    time.sleep(3)
    stop.set()
    watcher.join()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

    for host in hosts.values():
        assert "log.cleaner.threads=2" in host.file("/etc/kafka/server.properties").content_string
        assert not host.file("/var/lib/kafka/restart-pending").exists

    # systemd's view: each broker restarted once, and each went down only after the previous one was back up.
    windows = sorted(
        (_systemd_time(host, "ActiveExitTimestamp"), _systemd_time(host, "ActiveEnterTimestamp"), name)
        for name, host in hosts.items()
    )
    for (_, started, name), (stopped_next, _, name_next) in zip(windows, windows[1:]):
        assert stopped_next > started, f"{name_next} went down before {name} was back"
    for stopped, started, name in windows:
        assert started > before[name] and stopped > before[name], f"{name} was not restarted"

    # The cluster's view, sampled every 0.5 s: never fewer than two brokers registered, each one missing at some point.
    assert len(samples) > 20, "too few samples of cluster membership"
    print("registered-broker samples:", len(samples), "smallest:", min(len(s) for _, s in samples))
    assert min(len(nodes) for _, nodes in samples) >= 2, "two brokers were down at the same time"
    for broker in (1, 2, 3):
        assert any(broker not in nodes for _, nodes in samples), f"broker {broker} never left the cluster"
    wait_full_isr(bootstrap, [TASK_TOPIC, DLQ_TOPIC])
