"""The lag exporter reads lag from a real broker: per group, topic and partition, with no consumer running."""

from __future__ import annotations

import re

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from celery_kafka.lag_exporter import KafkaOffsets, LagCollector

pytestmark = pytest.mark.integration


def scrape(kafka: str, topic: str) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(LagCollector(KafkaOffsets(kafka, 30, re.compile(".*"), re.compile(re.escape(topic)))))
    samples: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_lag_per_partition_of_a_group_that_is_not_running(kafka, run_id):
    topic, group = f"lag-{run_id}", f"lag-group-{run_id}"
    admin = AdminClient({"bootstrap.servers": kafka})  # kept referenced until the future resolves
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    for number in range(5):
        producer.produce(topic, value=str(number).encode(), partition=0)
    assert producer.flush(30) == 0
    # The group commits offset 2 of partition 0 and then goes away, as a stopped worker does.
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    consumer.close()

    samples = scrape(kafka, topic)

    assert samples["celery_kafka_exporter_up"] == 1
    assert samples[f'kafka_topic_partition_current_offset{{partition="0",topic="{topic}"}}'] == 5
    assert samples[f'kafka_topic_partitions{{topic="{topic}"}}'] == 2
    assert samples[f'kafka_consumergroup_current_offset{{consumergroup="{group}",partition="0",topic="{topic}"}}'] == 2
    assert samples[f'kafka_consumergroup_lag{{consumergroup="{group}",partition="0",topic="{topic}"}}'] == 3
    # Never committed on partition 1: lag counts from the log start, which is empty here.
    assert samples[f'kafka_consumergroup_lag{{consumergroup="{group}",partition="1",topic="{topic}"}}'] == 0


def test_unreachable_brokers_report_down_not_stale_figures():
    registry = CollectorRegistry()
    registry.register(LagCollector(KafkaOffsets("127.0.0.1:1", 2, re.compile(".*"), re.compile(".*"))))
    text = generate_latest(registry).decode()
    assert "celery_kafka_exporter_up 0.0" in text
    assert "kafka_consumergroup_lag{" not in text
