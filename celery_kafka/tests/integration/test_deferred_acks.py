"""Opt-in batched publishing: leaving a deferred_acks() block means every record was acknowledged, or it raises."""

from __future__ import annotations

import threading
import time

import pytest
from celery_kafka_testing.localkafka import LocalKafka
from confluent_kafka import Consumer, KafkaException, TopicPartition

from celery_kafka.app import create_app
from celery_kafka.publishing import DeliveryFailed
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import deferred_acks, send_keyed
from conftest import ARCHIVE, TASK_PARTITIONS

pytestmark = pytest.mark.integration


def end_offsets(bootstrap: str, topic: str = "celery.tasks") -> int:
    """Sum of the partitions' end offsets, read from the broker: how many records it has acknowledged."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "deferred-acks-probe"})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(TASK_PARTITIONS))
            except KafkaException:  # a fresh broker may not have elected the partitions' leaders yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def test_every_record_is_acknowledged_when_the_block_exits(kafka, client_app, run_id):
    before = end_offsets(kafka)
    with deferred_acks(client_app) as batch:
        for seq in range(300):
            send_keyed(client_app, "demo_app.tasks.record", f"key-{seq % 7}", f"key-{seq % 7}", seq, run_id)
    # No waiting here: the exit of the block already waited for the brokers.
    assert len(batch.outcomes) == 300
    assert all(outcome.done and outcome.error is None for outcome in batch.outcomes)
    assert end_offsets(kafka) - before == 300


def test_threads_publishing_at_once_each_get_their_own_acknowledgements(kafka, client_app, run_id):
    before = end_offsets(kafka)
    counts: dict[int, int] = {}
    errors: list[BaseException] = []

    def publish(thread: int) -> None:
        try:
            with deferred_acks(client_app) as batch:
                for seq in range(100):
                    send_keyed(client_app, "demo_app.tasks.record", f"t{thread}-{seq % 5}", f"t{thread}", seq, run_id)
            counts[thread] = sum(1 for outcome in batch.outcomes if outcome.done and outcome.error is None)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert counts == {n: 100 for n in range(4)}
    assert end_offsets(kafka) - before == 400


def test_a_record_for_an_unknown_topic_raises_naming_it(kafka, run_id):
    env = WorkerEnvironment(brokers=[kafka])
    app = create_app(env)
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "kafka_producer_config": {"delivery.timeout.ms": 3000},
    }
    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failed, deferred_acks(app, timeout=20):
        good = app.send_task("demo_app.tasks.record", args=("k", 0, run_id))
        lost = app.send_task("demo_app.tasks.record", args=("k", 1, run_id), queue="no.such.topic")
    assert time.monotonic() - started < 20
    labels = [label for label, _ in failed.value.failures]
    assert len(labels) == 1 and lost.id in labels[0] and "no.such.topic" in labels[0], failed.value.failures
    assert good.id not in str(failed.value)


def test_a_stopped_broker_raises_instead_of_dropping(tmp_path, run_id):
    with LocalKafka(ARCHIVE, 1, tmp_path / "kafka") as broker:
        app = create_app(WorkerEnvironment(brokers=[broker.bootstrap]))
        send_keyed(app, "demo_app.tasks.record", "k", "k", 0, run_id)  # producer connected, metadata known
        assert broker.process is not None
        broker.process.terminate()
        broker.process.wait(60)
        started = time.monotonic()
        with pytest.raises(DeliveryFailed) as failed, deferred_acks(app, timeout=5):
            sent = [send_keyed(app, "demo_app.tasks.record", "k", "k", seq, run_id) for seq in range(1, 11)]
        assert time.monotonic() - started < 30
        assert len(failed.value.failures) == 10
        assert {result.id for result in sent} == {label.split("[")[1].split("]")[0] for label, _ in failed.value.failures}, (
            failed.value.failures
        )
