"""A throwaway single-node Kafka on 127.0.0.1 and local worker processes, for integration tests and benchmarks.

The broker runs from a Kafka release archive (the one `make artifacts` assembles is what the Ansible role installs),
as one KRaft node on free loopback ports. Workers are real `celery worker` processes bound to one partition each,
started exactly as the systemd unit starts them.
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

from confluent_kafka.admin import AdminClient, NewTopic


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


class LocalKafka:
    """Context manager: a single KRaft node with the task and dead-letter topics created."""

    def __init__(self, archive: Path, task_partitions: int = 3, workdir: Path | None = None) -> None:
        self.archive = archive
        self.task_partitions = task_partitions
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="localkafka-"))
        self.process: subprocess.Popen | None = None
        self.bootstrap = ""

    def __enter__(self) -> LocalKafka:
        java = shutil.which("java")
        if java is None or not self.archive.is_file():
            raise FileNotFoundError(f"needs java and {self.archive} (make artifacts)")
        with tarfile.open(self.archive) as archive:
            archive.extractall(self.workdir, filter="data")
        home = next(self.workdir.glob("kafka_*"))
        client_port, controller_port = free_port(), free_port()
        properties = self.workdir / "server.properties"
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
                    f"log.dirs={self.workdir / 'data'}",
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
        storage = [*tool, "kafka.tools.StorageTool"]
        cluster_id = subprocess.run([*storage, "random-uuid"], capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run([*storage, "format", "--cluster-id", cluster_id, "--config", str(properties)], capture_output=True, check=True)
        self._log = (self.workdir / "broker.log").open("w")
        self.process = subprocess.Popen(
            [
                java,
                "-Xmx512m",
                "-cp",
                classpath,
                f"-Dlog4j2.configurationFile={home}/config/log4j2.yaml",
                f"-Dkafka.logs.dir={self.workdir}",
                "kafka.Kafka",
                str(properties),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.bootstrap = f"127.0.0.1:{client_port}"
        try:
            wait_for_port(client_port)
            topics = [
                NewTopic("celery.tasks", self.task_partitions, 1),
                NewTopic("celery.tasks.dlq", 1, 1, config={"retention.ms": "604800000"}),
            ]
            admin = AdminClient({"bootstrap.servers": self.bootstrap})  # kept referenced until the futures resolve
            for future in admin.create_topics(topics).values():
                future.result(timeout=30)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self._log.close()
            self.process = None


class Worker:
    """One Celery worker node process that owns one partition, started as the systemd unit starts it."""

    def __init__(self, bootstrap: str, partition: int, workdir: Path, max_deliveries: int = 3, loglevel: str = "INFO") -> None:
        self.partition = partition
        self.loglevel = loglevel
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
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "celery_kafka.app",
                    "worker",
                    "--pool=solo",
                    f"--loglevel={self.loglevel}",
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


def wait_until(condition: Callable[[], T], timeout: float = 60, interval: float = 0.5, message: str = "condition") -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
