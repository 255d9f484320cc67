"""Against a broker whose client listener is SASL_SSL (SCRAM-SHA-512, own CA): every client authenticates the same way.

The worker processes get their credentials the way the systemd unit gives them (CELERY_KAFKA_* environment), and a
client without them, or with the wrong password, is refused by the broker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from celery_kafka_testing.localkafka import LocalKafka, Worker, free_port
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from celery_kafka.partitioning import partition_for_key
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed
from conftest import TASK_PARTITIONS, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure_workers(secure_kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Worker]]:
    workdir = tmp_path_factory.mktemp("secure-workers")
    nodes = {
        partition: Worker(secure_kafka.bootstrap, partition, workdir, extra_env=secure_kafka.environ).start()
        for partition in range(TASK_PARTITIONS)
    }
    yield nodes
    for worker in nodes.values():
        worker.stop()


def environment(broker: LocalKafka, **overrides: str) -> WorkerEnvironment:
    return WorkerEnvironment.from_environ({"CELERY_KAFKA_BROKERS": broker.bootstrap, **broker.environ, **overrides})


def test_a_keyed_task_sent_with_credentials_runs_on_its_worker(secure_kafka, secure_workers, run_id):
    from celery_kafka.app import create_app

    app = create_app(environment(secure_kafka))
    key = "secure-customer"
    send_keyed(app, "demo_app.tasks.record", key, key, 0, run_id)
    owner = secure_workers[partition_for_key(key, TASK_PARTITIONS)]
    [row] = wait_until(lambda: owner.records(run_id), timeout=120, message="the task recorded by its partition's worker")
    assert row["key"] == key and row["partition"] == owner.partition
    assert "SaslAuthenticate" not in owner.log() and "Authentication failed" not in owner.log()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # The broker answers, and refuses the credentials.
        ({"CELERY_KAFKA_SASL_PASSWORD": "not-the-password"}, re.compile(r"code=_AUTHENTICATION\b.*invalid credentials")),
        # The listener speaks TLS and SASL: a client without them never gets a working connection (librdkafka 2.16
        # reports every broker down; the transport errors themselves only go to its log).
        ({"CELERY_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, re.compile(r"code=(_ALL_BROKERS_DOWN|_TRANSPORT|_SSL)\b")),
        ({"CELERY_KAFKA_SECURITY_PROTOCOL": "SSL"}, re.compile(r"code=(_ALL_BROKERS_DOWN|_TRANSPORT|_SSL)\b")),
    ],
    ids=["wrong-password", "plaintext", "tls-without-sasl"],
)
def test_clients_without_the_right_credentials_are_refused(secure_kafka, overrides, expected):
    config = {"bootstrap.servers": secure_kafka.bootstrap, **environment(secure_kafka, **overrides).kafka_client_config()}
    errors: list[str] = []
    admin = AdminClient({**config, "error_cb": lambda error: errors.append(str(error))})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=10)
    admin.poll(1)  # error_cb is served by poll(): collect what librdkafka reported
    assert any(expected.search(error) for error in errors), errors
    # The same refusal for a producer: nothing it sends is acknowledged.
    producer = Producer({**config, "message.timeout.ms": 5000})
    delivered: list[object] = []
    producer.produce("celery.tasks", b"refused", on_delivery=lambda error, _: delivered.append(error))
    producer.flush(15)
    assert delivered and delivered[0] is not None, "a record was accepted without the right credentials"


def test_lag_exporter_reports_lag_over_sasl_ssl(secure_kafka, run_id, tmp_path):
    topic, group = f"secure-lag-{run_id}", f"secure-lag-group-{run_id}"
    config = secure_kafka.client_config
    admin = AdminClient(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({**config, "acks": "all"})
    for number in range(4):
        producer.produce(topic, value=str(number).encode(), partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    consumer.close()

    # The exporter as the systemd unit runs it: brokers on the command line, credentials only in its environment.
    port = free_port()
    log = (tmp_path / "exporter.log").open("w")
    command = [sys.executable, "-m", "celery_kafka.lag_exporter", f"--bootstrap-servers={secure_kafka.bootstrap}"]
    command += ["--listen-address=127.0.0.1", f"--port={port}", f"--topic-regex={re.escape(topic)}", "--timeout=20"]
    exporter = subprocess.Popen(
        command,
        env={**os.environ, **secure_kafka.environ},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
                    return answer.read().decode()
            except OSError:
                return None

        text = wait_until(scrape, timeout=60, message="the exporter serving /metrics")
        assert secure_kafka.sasl_password not in " ".join(exporter.args)
    finally:
        exporter.terminate()
        exporter.wait(30)
        log.close()
    assert "celery_kafka_exporter_up 1.0" in text, text
    assert f'kafka_consumergroup_lag{{consumergroup="{group}",partition="0",topic="{topic}"}} 3.0' in text, text
    # The certificate the broker serves, checked against the clients' CA: localkafka's is valid for one day.
    broker = secure_kafka.bootstrap.split(",")[0]
    assert f'kafka_broker_certificate_probe_success{{broker="{broker}"}} 1.0' in text, text
    [expiry] = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(f'kafka_broker_certificate_expiry_timestamp_seconds{{broker="{broker}"}}')
    ]
    assert 23 * 3600 < expiry - time.time() < 25 * 3600


def test_lag_exporter_without_the_password_refuses_to_start(secure_kafka):
    env = {key: value for key, value in {**os.environ, **secure_kafka.environ}.items() if key != "CELERY_KAFKA_SASL_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "celery_kafka.lag_exporter", f"--bootstrap-servers={secure_kafka.bootstrap}", "--port=0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "CELERY_KAFKA_SASL_PASSWORD" in done.stderr


def test_dead_letter_cli_reads_over_sasl_ssl_with_the_same_variables(secure_kafka):
    command = [sys.executable, "-m", "celery_kafka.cli", f"--brokers={secure_kafka.bootstrap}", "list"]
    listed = subprocess.run(command, env={**os.environ, **secure_kafka.environ}, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.startswith("LETTER")
    no_password = {key: value for key, value in {**os.environ, **secure_kafka.environ}.items() if key != "CELERY_KAFKA_SASL_PASSWORD"}
    refused = subprocess.run(command, env=no_password, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "CELERY_KAFKA_SASL_PASSWORD" in refused.stderr
