"""A real Kafka broker on 127.0.0.1 and real Celery worker processes, for the integration tests.

The broker is the archive `make artifacts` assembles (the same one the Ansible role installs), started as a single
KRaft node on free loopback ports (celery_kafka_testing.localkafka); nothing is mocked. Skipped without Java or the archive.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_kafka_testing.localkafka import LocalKafka, Worker, wait_until  # noqa: F401  (tests import wait_until from here)

REPO = Path(__file__).resolve().parents[3]
ARCHIVE = Path(os.environ.get("KAFKA_ARCHIVE", REPO / ".cache" / "artifacts" / "kafka_2.13-4.3.1.tgz"))
TASK_PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("java") is None or not ARCHIVE.is_file():
        pytest.skip(f"integration tests need java and {ARCHIVE} (make artifacts)")
    with LocalKafka(ARCHIVE, TASK_PARTITIONS, tmp_path_factory.mktemp("kafka"), extra_topics={"exports": 1, "journal.tasks": 2}) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A second broker whose client listener is SASL_SSL with SCRAM-SHA-512 and a throwaway CA."""
    if shutil.which("java") is None or not ARCHIVE.is_file():
        pytest.skip(f"integration tests need java and {ARCHIVE} (make artifacts)")
    with LocalKafka(ARCHIVE, TASK_PARTITIONS, tmp_path_factory.mktemp("secure-kafka"), secure=True) as broker:
        yield broker


@pytest.fixture(scope="session")
def workers(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Worker]]:
    workdir = tmp_path_factory.mktemp("workers")
    nodes = {partition: Worker(kafka, partition, workdir).start() for partition in range(TASK_PARTITIONS)}
    yield nodes
    for worker in nodes.values():
        worker.stop()


@pytest.fixture(scope="session")
def client_app(kafka: str):
    from celery_kafka.app import create_app
    from celery_kafka.settings import WorkerEnvironment

    return create_app(WorkerEnvironment(brokers=[kafka]))


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def committed_and_end(bootstrap: str, topic: str, partition: int, group: str = "celery.tasks.workers") -> tuple[int, int]:
    """(committed offset of the workers' group, end offset) of one partition, read from the broker."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [committed] = consumer.committed([TopicPartition(topic, partition)], timeout=30)
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        return committed.offset, end
    finally:
        consumer.close()
