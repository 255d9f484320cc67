"""Kafka with security on, checked from the Docker host: who the listeners refuse, a SCRAM round trip over TLS,
mutual TLS on the controller listener, secrets kept out of logs and file permissions, and check mode changing nothing.
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
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
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
    SETTINGS["secure_celery_kafka_username"]: SETTINGS["secure_celery_kafka_password"],
    SETTINGS["secure_lag_exporter_kafka_username"]: SETTINGS["secure_lag_exporter_kafka_password"],
}
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
    user = SETTINGS["secure_celery_kafka_username"]
    config = sasl(bootstrap, user, USERS[user])
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
