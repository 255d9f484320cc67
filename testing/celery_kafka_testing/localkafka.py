"""A throwaway Kafka on 127.0.0.1 and local worker processes, for integration tests and benchmarks.

The brokers run from a Kafka release archive (the one `make artifacts` assembles is what the Ansible role installs),
as one or more combined (broker+controller) KRaft nodes on free loopback ports; with 3 or more nodes, topics get
replication factor 3 and min.insync.replicas 2, as the Ansible kafka_topics role declares them. Workers are real
`celery worker` processes bound to one partition each, started exactly as the systemd unit starts them.

With `secure=True` the client listener is SASL_SSL with SCRAM-SHA-512, as the Ansible role configures it: a throwaway
CA and a broker certificate (for 127.0.0.1) are generated into the working directory, and the SCRAM user is created
when the storage is formatted (`--add-scram`). The controller listener stays PLAINTEXT on loopback.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
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

from celery_kafka_testing.chaos import complete_lines


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


def write_test_pki(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway CA (ca.pem) and a broker key and certificate chain for `host` (broker.pem, PKCS#8 key first)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localkafka test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, broker_path = directory / "ca.pem", directory / "broker.pem"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    broker_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(pem)
        + ca_cert.public_bytes(pem)
    )
    broker_path.chmod(0o600)
    return ca_path, broker_path


class LocalKafka:
    """Context manager: `nodes` KRaft nodes (broker and controller each) with the task and dead-letter topics, and
    any `extra_topics` ({name: partitions}), created."""

    def __init__(
        self,
        archive: Path,
        task_partitions: int = 3,
        workdir: Path | None = None,
        nodes: int = 1,
        extra_topics: dict[str, int] | None = None,
        secure: bool = False,
        sasl_username: str = "celery",
        sasl_password: str | None = None,
    ) -> None:
        self.archive = archive
        self.task_partitions = task_partitions
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="localkafka-"))
        self.nodes = nodes
        self.extra_topics = extra_topics or {}
        self.processes: list[subprocess.Popen] = []
        self._logs: list = []
        self.bootstrap = ""
        self.secure = secure
        self.sasl_username = sasl_username
        self.sasl_password = sasl_password or secrets.token_urlsafe(16)
        self.ca_file: Path | None = None
        # The unpacked archive (its libs/ hold Kafka's own tools), once started.
        self.home: Path | None = None

    @property
    def environ(self) -> dict[str, str]:
        """CELERY_KAFKA_* security variables a client or worker of this broker needs (none in plaintext mode)."""
        if not self.secure:
            return {}
        return {
            "CELERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CELERY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CELERY_KAFKA_SASL_USERNAME": self.sasl_username,
            "CELERY_KAFKA_SASL_PASSWORD": self.sasl_password,
            "CELERY_KAFKA_SSL_CA_LOCATION": str(self.ca_file),
        }

    @property
    def client_config(self) -> dict[str, str]:
        """librdkafka settings of a client of this broker, bootstrap included."""
        from celery_kafka.security import KafkaSecurity

        return {"bootstrap.servers": self.bootstrap, **KafkaSecurity.from_environ(self.environ).client_config()}

    def _listener_properties(self, client_port: int, controller_port: int) -> list[str]:
        controller = f"CONTROLLER://127.0.0.1:{controller_port}"
        if not self.secure:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{client_port},{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{client_port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ]
        broker_pem = self.workdir / "broker.pem"
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
        jaas = f'{login} username="{self.sasl_username}" password="{self.sasl_password}";'
        return [
            f"listeners=CLIENT://127.0.0.1:{client_port},{controller}",
            f"advertised.listeners=CLIENT://127.0.0.1:{client_port}",
            "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=CLIENT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.client.scram-sha-512.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={broker_pem}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
        ]

    @property
    def process(self) -> subprocess.Popen | None:
        """The first node's process (the only one of a single-node cluster)."""
        return self.processes[0] if self.processes else None

    @property
    def replication(self) -> int:
        return min(3, self.nodes)

    def _properties(self, node: int, client_port: int, controller_ports: list[int]) -> str:
        voters = ",".join(f"{n + 1}@127.0.0.1:{port}" for n, port in enumerate(controller_ports))
        replication = self.replication
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node + 1}",
                f"controller.quorum.voters={voters}",
                *self._listener_properties(client_port, controller_ports[node]),
                "controller.listener.names=CONTROLLER",
                f"log.dirs={self.workdir / f'data-{node + 1}'}",
                f"offsets.topic.replication.factor={replication}",
                f"transaction.state.log.replication.factor={replication}",
                f"transaction.state.log.min.isr={min(2, replication)}",
                f"share.coordinator.state.topic.replication.factor={replication}",
                f"min.insync.replicas={min(2, replication)}",
                "auto.create.topics.enable=false",
                "group.initial.rebalance.delay.ms=0",
            ]
        )

    def __enter__(self) -> LocalKafka:
        java = shutil.which("java")
        if java is None or not self.archive.is_file():
            raise FileNotFoundError(f"needs java and {self.archive} (make artifacts)")
        with tarfile.open(self.archive) as archive:
            archive.extractall(self.workdir, filter="data")
        home = self.home = next(self.workdir.glob("kafka_*"))
        client_ports = [free_port() for _ in range(self.nodes)]
        controller_ports = [free_port() for _ in range(self.nodes)]
        classpath = f"{home}/libs/*"
        tool = [java, "-cp", classpath, f"-Dlog4j2.configurationFile={home}/config/tools-log4j2.yaml"]
        storage = [*tool, "kafka.tools.StorageTool"]
        cluster_id = subprocess.run([*storage, "random-uuid"], capture_output=True, text=True, check=True).stdout.strip()
        self.bootstrap = ",".join(f"127.0.0.1:{port}" for port in client_ports)
        if self.secure:
            self.ca_file, _ = write_test_pki(self.workdir)
        try:
            for node in range(self.nodes):
                properties = self.workdir / f"server-{node + 1}.properties"
                properties.write_text(self._properties(node, client_ports[node], controller_ports))
                format_command = [*storage, "format", "--cluster-id", cluster_id, "--config", str(properties)]
                if self.secure:
                    format_command += ["--add-scram", f"SCRAM-SHA-512=[name={self.sasl_username},password={self.sasl_password}]"]
                subprocess.run(format_command, capture_output=True, check=True)
                log = (self.workdir / f"broker-{node + 1}.log").open("w")
                self._logs.append(log)
                self.processes.append(
                    subprocess.Popen(
                        [
                            java,
                            "-Xmx512m",
                            "-cp",
                            classpath,
                            f"-Dlog4j2.configurationFile={home}/config/log4j2.yaml",
                            f"-Dkafka.logs.dir={self.workdir / f'logs-{node + 1}'}",
                            "kafka.Kafka",
                            str(properties),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            for port in client_ports:
                wait_for_port(port, timeout=120)
            isr = {"min.insync.replicas": str(min(2, self.replication))}
            topics = [
                NewTopic("celery.tasks", self.task_partitions, self.replication, config=isr),
                NewTopic("celery.tasks.dlq", 1, self.replication, config={**isr, "retention.ms": "604800000"}),
                *(NewTopic(name, partitions, self.replication, config=isr) for name, partitions in self.extra_topics.items()),
            ]
            admin = AdminClient(self.client_config)  # kept referenced until the futures resolve
            self._create_topics(admin, topics)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @staticmethod
    def _create_topics(admin: AdminClient, topics: list[NewTopic], timeout: float = 120) -> None:
        """Create the topics, retrying while a fresh cluster has not yet registered enough brokers."""
        deadline = time.monotonic() + timeout
        pending = topics
        while pending:
            failed = []
            for topic, future in zip(pending, admin.create_topics(pending).values(), strict=True):
                try:
                    future.result(timeout=30)
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    failed.append(topic)
            pending = failed
            if pending:
                time.sleep(1)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self._logs:
            log.close()
        self.processes, self._logs = [], []


class Worker:
    """One Celery worker node process that owns one partition of `task_topic` (its queue), started as the systemd
    unit starts it: an ordered queue's solo pool, or a concurrent queue's `pool` with `concurrency` processes."""

    def __init__(
        self,
        bootstrap: str,
        partition: int,
        workdir: Path,
        max_deliveries: int = 3,
        loglevel: str = "INFO",
        task_topic: str = "celery.tasks",
        extra_env: dict[str, str] | None = None,
        pool: str = "solo",
        concurrency: int = 1,
        journal: bool = True,
        profile_to: Path | None = None,
    ) -> None:
        self.partition = partition
        self.loglevel = loglevel
        self.task_topic = task_topic
        self.pool, self.concurrency = pool, concurrency
        # With a path: the worker runs under cProfile, which writes its stats there when the worker exits.
        self.profile_to = profile_to
        name = f"{partition}" if task_topic == "celery.tasks" else f"{task_topic}-{partition}"
        self.results = workdir / f"results-{name}.jsonl"
        self.log_path = workdir / f"worker-{name}.log"
        self.env = {
            **os.environ,
            "CELERY_KAFKA_BROKERS": bootstrap,
            "CELERY_KAFKA_TASK_TOPIC": task_topic,
            "CELERY_KAFKA_PARTITION": str(partition),
            "CELERY_KAFKA_RESULTS_FILE": str(self.results),
            "CELERY_KAFKA_MAX_DELIVERIES": str(max_deliveries),
            "CELERY_KAFKA_TASK_TIME_LIMIT": "60",
            "CELERY_KAFKA_POOL": pool,
            "CELERY_KAFKA_CONCURRENCY": str(concurrency),
            # The example app's fault tasks (demo_app.faults), which the tests send.
            "DEMO_APP_FAULT_TASKS": "1",
            # As the role sets it: the journal in the node's state directory (here, beside the results).
            **({"CELERY_KAFKA_JOURNAL_DIR": str(workdir / "journal")} if journal else {}),
            # Security settings (LocalKafka.environ), exactly as the systemd unit's EnvironmentFile gives them.
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *(["-m", "cProfile", "-o", str(self.profile_to)] if self.profile_to else []),
                    "-m",
                    "celery",
                    "-A",
                    "demo_app.celery:app",
                    "worker",
                    f"--pool={self.pool}",
                    f"--concurrency={self.concurrency}",
                    f"--loglevel={self.loglevel}",
                    "-Q",
                    self.task_topic,
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
        rows = [json.loads(line) for line in complete_lines(self.results.read_text()) if line.strip()]
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
