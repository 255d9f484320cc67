"""A rolling Kafka upgrade under a keyed load, where the scenario deploys an older release (kafka_dedicated: 4.2.1,
in its hosts.yml): the metadata version is refused while a node runs the old release, then the documented inventory
change (kafka_version, kafka_metadata_version) and playbooks/kafka.yml upgrade one node at a time, controllers first,
and raise the metadata version after the last node. Every acknowledged message is still there, once and in key order.
Last in the scenario: nothing runs the old release's inventory after it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from verify_support import admin, bootstrap, host, inventory, kafka_tool, output, rolling_restart_by, run_playbook

TARGET, TARGET_METADATA = "4.3.1", "4.3"
TOPOLOGY = inventory()
NODES = TOPOLOGY.kafka_nodes
LOAD_TOPIC = "upgrade.load"


def release_of(name: str) -> str:
    return host(name).file("/opt/kafka/current").linked_to.rsplit("-", 1)[-1]


def finalized_metadata_version() -> str:
    broker = TOPOLOGY.brokers[0]
    described = kafka_tool(host(broker), "org.apache.kafka.tools.FeatureCommand", f"--bootstrap-server {broker}:9091 describe")
    found = re.search(r"Feature: metadata\.version\s.*FinalizedVersionLevel: (\S+)", described)
    assert found, described
    return found.group(1)


pytestmark = pytest.mark.skipif(
    all(release_of(name) == TARGET for name in NODES), reason=f"this scenario deploys {TARGET} already: nothing to upgrade"
)


def test_the_metadata_version_is_refused_while_a_node_runs_the_old_release():
    before = finalized_metadata_version()
    change = json.dumps({"kafka_metadata_version": TARGET_METADATA})
    run = run_playbook("playbooks/kafka.yml", "--tags", "kafka_metadata_version", "-e", change)
    assert run.returncode != 0, "the metadata version was raised on an old release"
    assert f"kafka_metadata_version {TARGET_METADATA} needs every node on release {TARGET_METADATA} or newer" in output(run)
    assert finalized_metadata_version() == before


def test_a_rolling_upgrade_under_a_keyed_load_loses_nothing_and_raises_the_metadata_version_last():
    old = {name: release_of(name) for name in NODES}
    metadata_before = finalized_metadata_version()
    assert all(version != TARGET for version in old.values()), old
    admin().create_topics([NewTopic(LOAD_TOPIC, 3, 3, config={"min.insync.replicas": "2"})])[LOAD_TOPIC].result(timeout=60)
    producer = Producer({"bootstrap.servers": bootstrap(), "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    acked: list[tuple[str, int]] = []
    failed: list[str] = []
    stop = threading.Event()

    def delivered(error, message) -> None:
        if error is None:
            acked.append((message.key().decode(), int(message.value())))
        else:
            failed.append(str(error))

    def load() -> None:
        seq = 0
        while not stop.is_set():
            producer.produce(LOAD_TOPIC, key=f"key-{seq % 30}", value=str(seq), on_delivery=delivered)
            producer.poll(0)
            seq += 1
            time.sleep(0.005)
        producer.flush(120)

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    try:
        summary = rolling_restart_by({"kafka_version": TARGET, "kafka_metadata_version": TARGET_METADATA})
    finally:
        stop.set()
        sender.join(timeout=180)
    assert {name: release_of(name) for name in NODES} == dict.fromkeys(NODES, TARGET)
    metadata_after = finalized_metadata_version()
    assert metadata_after.startswith(TARGET_METADATA + "-"), metadata_after

    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": f"upgrade-{uuid.uuid4().hex}", "enable.auto.commit": False})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(LOAD_TOPIC, p), timeout=30)[1] for p in range(3)}
    consumer.assign([TopicPartition(LOAD_TOPIC, p, 0) for p in range(3)])
    read: dict[str, list[int]] = defaultdict(list)
    positions = dict.fromkeys(range(3), 0)
    deadline = time.monotonic() + 120
    try:
        while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                read[message.key().decode()].append(int(message.value()))
                positions[message.partition()] = message.offset() + 1
    finally:
        consumer.close()
    stored = [(key, seq) for key, seqs in read.items() for seq in seqs]
    lost = set(acked) - set(stored)
    duplicates = len(stored) - len(set(stored))
    out_of_order = [key for key, seqs in read.items() if seqs != sorted(seqs)]
    print(
        f"\nupgrade {sorted(set(old.values()))} -> {TARGET}, metadata {metadata_before} -> {metadata_after}: {summary}; "
        f"{len(acked)} messages acknowledged, {len(failed)} failed, {len(lost)} lost, {duplicates} duplicates, "
        f"{len(out_of_order)} keys out of order"
    )
    assert failed == [], failed[:3]
    assert lost == set()
    assert duplicates == 0 and out_of_order == []
