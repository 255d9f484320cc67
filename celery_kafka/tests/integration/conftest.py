"""A real Kafka broker on 127.0.0.1 and real Celery worker processes, for the integration tests.

The broker is the archive `make artifacts` assembles (the same one the Ansible role installs), started as a single
KRaft node on free loopback ports; nothing is mocked. Tests are skipped when Java or the archive is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[3]
ARCHIVE = Path(os.environ.get("KAFKA_ARCHIVE", REPO / ".cache" / "artifacts" / "kafka_2.13-4.3.1.tgz"))
TASK_PARTITIONS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    java = shutil.which("java")
    if java is None or not ARCHIVE.is_file():
        pytest.skip(f"integration tests need java and {ARCHIVE} (make artifacts)")
    base = tmp_path_factory.mktemp("kafka")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(base, filter="data")
    home = next(base.glob("kafka_*"))
    client_port, controller_port = free_port(), free_port()
    properties = base / "server.properties"
    properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{client_port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{client_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={base / 'data'}",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "auto.create.topics.enable=false",
                "group.initial.rebalance.delay.ms=0",
            ]
        )
    )
    classpath = f"{home}/libs/*"
    tool = [java, "-cp", classpath, f"-Dlog4j2.configurationFile={home}/config/tools-log4j2.yaml"]
    cluster_id = subprocess.run(
        [*tool, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        [*tool, "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "--config", str(properties)],
        capture_output=True,
        check=True,
    )
    log = (base / "broker.log").open("w")
    broker = subprocess.Popen(
        [
            java,
            "-Xmx512m",
            "-cp",
            classpath,
            f"-Dlog4j2.configurationFile={home}/config/log4j2.yaml",
            f"-Dkafka.logs.dir={base}",
            "kafka.Kafka",
            str(properties),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    bootstrap = f"127.0.0.1:{client_port}"
    try:
        wait_for_port(client_port)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics(
            [NewTopic("celery.tasks", TASK_PARTITIONS, 1), NewTopic("celery.tasks.dlq", 1, 1, config={"retention.ms": "604800000"})]
        )
        for future in futures.values():
            future.result(timeout=30)
        yield bootstrap
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
        log.close()


class Worker:
    """One Celery worker node process that owns one partition, as the systemd unit runs it."""

    def __init__(self, bootstrap: str, partition: int, workdir: Path, max_deliveries: int = 3) -> None:
        self.partition = partition
        self.results = workdir / f"results-{partition}.jsonl"
        self.log_path = workdir / f"worker-{partition}.log"
        self.env = {
            **os.environ,
            "CELERY_KAFKA_BROKERS": bootstrap,
            "CELERY_KAFKA_PARTITION": str(partition),
            "CELERY_KAFKA_RESULTS_FILE": str(self.results),
            "CELERY_KAFKA_MAX_DELIVERIES": str(max_deliveries),
            "CELERY_KAFKA_TASK_TIME_LIMIT": "60",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_kafka.app",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "-Q",
                "celery.tasks",
                "-n",
                f"partition{self.partition}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def records(self, run_id: str | None = None) -> list[dict]:
        if not self.results.exists():
            return []
        rows = [json.loads(line) for line in self.results.read_text().splitlines() if line.strip()]
        return [row for row in rows if run_id is None or row.get("run_id") == run_id]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


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


def wait_until(condition, timeout: float = 60, interval: float = 0.5, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
