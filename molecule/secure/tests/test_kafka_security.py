"""Kafka with security on, checked from the Docker host: who the listeners refuse, a SCRAM round trip over TLS,
what the ACLs refuse each principal (a worker deleting a topic or reading another, a client or the lag exporter
consuming), mutual TLS on the controller listener, secrets kept out of logs and file permissions, and check mode changing nothing.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from verify_support import address, changed_hosts, host, recap, run_playbook

SCENARIO = Path(__file__).resolve().parents[1]
BROKERS = ("secure-kafka1", "secure-kafka2", "secure-kafka3")
CLIENT_PORT = 9092
CONTROLLER_PORT = 9093
TLS_DIR = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "kafka-tls"
CA = TLS_DIR / "ca.crt"


def group_vars() -> dict:
    """The scenario's plain test settings (passwords included), read the way the tests need them."""
    return yaml.safe_load((SCENARIO / "group_vars" / "all.yml").read_text())


SETTINGS = group_vars()
USERS = {
    SETTINGS[f"secure_{role}_kafka_username"]: SETTINGS[f"secure_{role}_kafka_password"]
    for role in ("celery", "lag_exporter", "client", "verifier")
}
WORKER_USER, CLIENT_USER, LAG_USER, VERIFIER_USER = (
    SETTINGS[f"secure_{role}_kafka_username"] for role in ("celery", "client", "lag_exporter", "verifier")
)
TASK_TOPIC, DEAD_LETTER_TOPIC, WORKER_GROUP = "celery.tasks", "celery.tasks.dlq", "celery.tasks.workers"
MONITORING = yaml.safe_load((SCENARIO / "group_vars" / "monitoring" / "auth.yml").read_text()) or {}
PASSWORDS = [
    *USERS.values(),
    SETTINGS["kafka_sasl_inter_broker_password"],
    *(value for key, value in MONITORING.items() if key.endswith("_password") and value),
]


@pytest.fixture(scope="module")
def addresses() -> dict[str, str]:
    return {name: address(name) for name in BROKERS}


@pytest.fixture(scope="module")
def bootstrap(addresses) -> str:
    return ",".join(f"{address}:{CLIENT_PORT}" for address in addresses.values())


def sasl(bootstrap: str, user: str, password: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": SETTINGS["kafka_sasl_mechanism"],
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(CA),
    }


def metadata_errors(config: dict, timeout: float = 15) -> tuple[bool, list[KafkaError]]:
    """(metadata could be read, errors librdkafka reported) for a client with `config`."""
    errors: list[KafkaError] = []
    admin = AdminClient({**config, "error_cb": errors.append, "socket.connection.setup.timeout.ms": 5000})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as error:
        errors.append(error.args[0])
        admin.poll(1)  # error_cb is served by poll(): collect what librdkafka reported (authentication errors)
        return False, errors
    return True, errors


def test_ca_and_scram_variables_are_where_the_interface_says():
    assert CA.is_file(), f"no CA certificate at {CA}"
    assert "BEGIN CERTIFICATE" in CA.read_text()


def test_plaintext_client_is_refused(bootstrap):
    ok, errors = metadata_errors({"bootstrap.servers": bootstrap, "security.protocol": "PLAINTEXT"})
    assert not ok
    print(f"\nPLAINTEXT client: {errors[:2]}")


def test_tls_client_without_sasl_is_refused(bootstrap):
    ok, errors = metadata_errors({"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(CA)})
    assert not ok
    print(f"\nSSL-only client: {errors[:2]}")


def test_wrong_password_is_an_authentication_error(bootstrap):
    user = SETTINGS["secure_celery_kafka_username"]
    ok, errors = metadata_errors(sasl(bootstrap, user, "not-the-password"), timeout=8)
    assert not ok
    authentication = [e for e in errors if e.code() == KafkaError._AUTHENTICATION or "Authentication failed" in e.str()]
    assert authentication, errors
    print(f"\nwrong password: {authentication[:1]}")


@pytest.mark.parametrize("user", sorted(USERS))
def test_declared_users_authenticate(bootstrap, user):
    ok, errors = metadata_errors(sasl(bootstrap, user, USERS[user]))
    assert ok, errors


def test_produce_and_consume_round_trip_over_sasl_ssl(bootstrap):
    """On the verifier's own topic: its prefixed ACLs let it create, write and read there."""
    config = sasl(bootstrap, VERIFIER_USER, USERS[VERIFIER_USER])
    topic = "secure.verify"
    admin = AdminClient(config)
    if topic not in admin.list_topics(timeout=15).topics:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic].result(timeout=30)
    marker = uuid.uuid4().hex.encode()
    producer = Producer({**config, "acks": "all"})
    delivered: list = []
    producer.produce(topic, marker, on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None]
    consumer = Consumer({**config, "group.id": f"secure-verify-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 60
    try:
        while marker not in seen and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                seen.append(message.value())
    finally:
        consumer.close()
    assert marker in seen


def authorization_error_reading(config: dict, topic: str, group: str, timeout: float = 30) -> KafkaError | None:
    """The error a consumer with `config` gets fetching partition 0 of `topic` from its start, or None once it reads a
    message or `timeout` passes without an error. Assigned at an explicit offset: no group is joined, no committed
    offset is looked up and nothing is committed."""
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return None
            if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
                return error
        return None
    finally:
        consumer.close()


def test_the_nodes_run_the_authorizer_with_only_the_admin_user_and_the_nodes_as_super_users():
    properties = host("secure-kafka1").file("/etc/kafka/server.properties").content_string
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in properties
    assert "allow.everyone.if.no.acl.found=false" in properties
    [super_users] = [line.split("=", 1)[1] for line in properties.splitlines() if line.startswith("super.users=")]
    expected = {f"User:{SETTINGS['kafka_sasl_inter_broker_username']}", *(f"User:CN={name}" for name in BROKERS)}
    assert set(super_users.split(";")) == expected


def test_a_worker_cannot_delete_a_topic(bootstrap):
    admin = AdminClient(sasl(bootstrap, WORKER_USER, USERS[WORKER_USER]))
    with pytest.raises(KafkaException) as refused:
        admin.delete_topics([TASK_TOPIC], operation_timeout=15)[TASK_TOPIC].result(timeout=30)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused.value
    assert TASK_TOPIC in admin.list_topics(timeout=15).topics


def test_a_worker_may_read_its_queue_but_not_another_topic(bootstrap):
    """The dead-letter topic stands for another queue: the worker may write dead letters there, not read them."""
    config = sasl(bootstrap, WORKER_USER, USERS[WORKER_USER])
    refused = authorization_error_reading(config, DEAD_LETTER_TOPIC, WORKER_GROUP)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
    # The keyed task test_clients.py sent is there to read; without one this waits out the timeout instead.
    assert authorization_error_reading(config, TASK_TOPIC, WORKER_GROUP, timeout=10) is None


@pytest.mark.parametrize("user", ["client", "lag_exporter"])
def test_clients_and_the_lag_exporter_cannot_consume_tasks(bootstrap, user):
    name = SETTINGS[f"secure_{user}_kafka_username"]
    refused = authorization_error_reading(sasl(bootstrap, name, USERS[name]), TASK_TOPIC, f"{name}-probe")
    # The client is stopped at the group (it has none; librdkafka looks up a group coordinator even for an assigned
    # consumer), the lag exporter, which may describe groups, at the topic.
    assert refused is not None, f"{name} read {TASK_TOPIC}"
    assert refused.code() == {"client": KafkaError.GROUP_AUTHORIZATION_FAILED, "lag_exporter": KafkaError.TOPIC_AUTHORIZATION_FAILED}[user]
    print(f"\n{name} reading {TASK_TOPIC}: {refused.str()}")


def test_a_client_cannot_write_to_the_dead_letter_topic(bootstrap):
    producer = Producer({**sasl(bootstrap, CLIENT_USER, USERS[CLIENT_USER]), "acks": "all", "message.timeout.ms": 15000})
    delivered: list = []
    producer.produce(DEAD_LETTER_TOPIC, b"forged", on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(30)
    assert [error.code() for error in delivered] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], delivered


def controller_handshake(address: str, certificate: tuple[Path, Path] | None) -> str:
    """Connect to the controller listener with TLS and report what happened after the handshake."""
    context = ssl.create_default_context(cafile=str(CA))
    if certificate:
        context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    with (
        socket.create_connection((address, CONTROLLER_PORT), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=address) as tls,
    ):
        tls.settimeout(5)
        try:
            data = tls.recv(1)
        except TimeoutError:
            return "open"  # the server accepted us and waits for a request
        except ssl.SSLError as error:
            return f"refused: {error.reason}"
        return "closed" if data == b"" else "open"


def test_controller_listener_requires_a_client_certificate(addresses):
    address = addresses["secure-kafka1"]
    without = controller_handshake(address, None)
    assert without != "open", without
    node = (TLS_DIR / "secure-kafka2.crt", TLS_DIR / "secure-kafka2.key")
    assert controller_handshake(address, node) == "open"
    print(f"\ncontroller listener: without client certificate -> {without}; with a node certificate -> open")


def test_node_files_holding_secrets_are_private():
    node = host("secure-kafka1")
    server = node.file("/etc/kafka/server.properties")
    assert (server.user, server.group, server.mode) == ("root", "kafka", 0o640)
    admin = node.file("/etc/kafka/admin-client.properties")
    assert (admin.user, admin.mode) == ("root", 0o600)
    keystore = node.file("/etc/kafka/tls/node.pem")
    assert (keystore.group, keystore.mode) == ("kafka", 0o640)
    assert "listener.security.protocol.map=INTERNAL:SASL_SSL,CLIENT:SASL_SSL,CONTROLLER:SSL" in server.content_string


def test_check_mode_changes_nothing_and_prints_no_password():
    result = run_playbook("site.yml", "--check", "--diff", "-v")
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed[-4000:]
    assert set(recap(result)) >= set(BROKERS)
    assert changed_hosts(result) == {}
    leaked = [password for password in PASSWORDS if password in printed]
    assert leaked == [], "passwords printed by ansible-playbook -v"
