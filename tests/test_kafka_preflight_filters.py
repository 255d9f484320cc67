"""The kafka role's preflight filters (roles/kafka/filter_plugins/kafka_preflight.py): what each reports as wrong."""

from __future__ import annotations

from repo_files import load

kafka_preflight = load("roles/kafka/filter_plugins/kafka_preflight.py", "kafka_preflight")


def test_usable_scram_users_have_no_problems() -> None:
    users = [{"name": "broker", "password": "s3cret-Pass"}, {"name": "celery@shop.example", "password": "x.y_z"}]
    assert kafka_preflight.scram_user_problems(users) == {
        "without_password": [],
        "unusable_password": [],
        "bad_name": [],
        "duplicate_name": [],
    }


def test_scram_user_problems_name_each_user_and_never_a_password() -> None:
    users = [
        {"name": "nopass"},
        {"name": "empty", "password": ""},
        {"name": "quote", "password": 'a"b'},
        {"name": "comma", "password": "a,b"},
        {"name": "space", "password": "a b"},
        {"name": "bad name", "password": "fine"},
        {"name": "twice", "password": "fine"},
        {"name": "twice", "password": "fine"},
    ]
    problems = kafka_preflight.scram_user_problems(users)
    assert problems == {
        "without_password": ["nopass", "empty"],
        "unusable_password": ["quote", "comma", "space"],
        "bad_name": ["bad name"],
        "duplicate_name": ["twice"],
    }
    assert 'a"b' not in str(problems) and "a,b" not in str(problems)


def test_hosts_without_own_certificate() -> None:
    files = {"kafka1": "", "kafka2": "/pki/kafka2.crt", "kafka3": ""}
    assert kafka_preflight.hosts_without_own_certificate(files) == ["kafka1", "kafka3"]


def test_deployed_security_protocol_from_server_properties() -> None:
    plaintext = "node.id=1\nlistener.security.protocol.map=INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
    secure = "listener.security.protocol.map=INTERNAL:SASL_SSL,CLIENT:SASL_SSL,CONTROLLER:SSL\nnode.id=1\n"
    assert kafka_preflight.deployed_security_protocol(plaintext) == "PLAINTEXT"
    assert kafka_preflight.deployed_security_protocol(secure) == "SASL_SSL"
    assert kafka_preflight.deployed_security_protocol("") == ""
    assert kafka_preflight.deployed_security_protocol("# listener.security.protocol.map=x\n") == ""


def settings(tmp_path, **changes) -> dict:
    archive = tmp_path / "kafka.tgz"
    archive.write_bytes(b"x")
    return {
        "kafka_broker_group": "kafka",
        "kafka_controller_group": "kafka_controller",
        "dedicated_controllers": False,
        "kafka_default_replication_factor": 3,
        "kafka_min_insync_replicas": 2,
        "kafka_archive_source": "local",
        "kafka_archive_url": "https://downloads.example/kafka.tgz",
        "kafka_archive_sha512": "",
        "kafka_archive_local_path": str(archive),
        "kafka_jmx_exporter_enabled": False,
        "kafka_jmx_exporter_source": "url",
        "kafka_jmx_exporter_url": "https://repo.example/agent.jar",
        "kafka_jmx_exporter_sha256": "",
        "kafka_jmx_exporter_local_path": "",
        "kafka_metadata_version": "",
        "kafka_cluster_id": "",
        "kafka_security_protocol": "PLAINTEXT",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_tls_ca_source": "generate",
        "kafka_tls_ca_cert_file": "",
        "kafka_tls_ca_key_file": "",
        "kafka_tls_dir": str(tmp_path / "pki"),
        "kafka_acls_enabled": False,
        "secure": False,
        "scram_users": [{"name": "broker", "password": "s3cret-Pass"}],
        "inventory_dir": str(tmp_path / "inventory"),
        **changes,
    }


THREE = ["kafka1", "kafka2", "kafka3"]
NODES = {"kafka1": {"kafka_node_id": 1}, "kafka2": {"kafka_node_id": 2}, "kafka3": {"kafka_node_id": 3}}


def test_a_good_cluster_has_no_problems(tmp_path) -> None:
    assert kafka_preflight.cluster_problems(NODES, THREE, THREE, settings(tmp_path)) == []
    secure = settings(tmp_path, kafka_security_protocol="SASL_SSL", secure=True, kafka_acls_enabled=True)
    assert kafka_preflight.cluster_problems(NODES, THREE, THREE, secure) == []


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    nodes = {**NODES, "kafka3": {"kafka_node_id": 2}, "kafka4": {}}
    hosts = [*THREE, "kafka4"]
    problems = kafka_preflight.cluster_problems(
        nodes, hosts, hosts, settings(tmp_path, kafka_archive_local_path="/nonexistent.tgz", kafka_cluster_id="short")
    )
    assert problems == [
        "kafka4 has no valid kafka_node_id. Give every host of groups kafka and kafka_controller a unique integer"
        " kafka_node_id in the inventory; ids are stored on disk and must never change.",
        "Duplicate kafka_node_id values (kafka1=1, kafka2=2, kafka3=2, kafka4=None): every Kafka node, broker or"
        " controller, needs its own id.",
        "KRaft needs an odd number of controllers for a majority quorum (3 or 5 in production), but 4 are configured"
        " (kafka1, kafka2, kafka3, kafka4): an even number tolerates no more failures than one fewer. Add or remove a host"
        " in group 'kafka'.",
        "kafka_archive_local_path ('/nonexistent.tgz') must name an existing archive on the Ansible controller.",
        "kafka_cluster_id 'short' is not a 22-character base64url UUID (kafka-storage random-uuid prints one).",
    ]


def test_downloads_need_their_checksums(tmp_path) -> None:
    problems = kafka_preflight.cluster_problems(
        NODES, THREE, THREE, settings(tmp_path, kafka_archive_source="url", kafka_jmx_exporter_enabled=True)
    )
    assert problems == [
        "kafka_archive_sha512 must be the 128-hex-digit sha512 Apache publishes beside https://downloads.example/kafka.tgz.",
        "kafka_jmx_exporter_sha256 must be the sha256 of https://repo.example/agent.jar.",
    ]


def test_secure_problems_name_users_and_files_never_passwords(tmp_path) -> None:
    inventory = tmp_path / "inventory"
    users = [{"name": "broker", "password": "with space"}, {"name": "celery"}]
    nodes = {**NODES, "kafka2": {"kafka_node_id": 2, "kafka_tls_node_cert_file": "/missing.crt"}}
    secure = settings(
        tmp_path,
        kafka_security_protocol="SASL_SSL",
        secure=True,
        scram_users=users,
        kafka_tls_ca_source="provided",
        kafka_tls_ca_cert_file=str(tmp_path / "kafka.tgz"),
        kafka_tls_ca_key_file="/missing.key",
        kafka_tls_dir=str(inventory / "pki"),
    )
    problems = kafka_preflight.cluster_problems(nodes, THREE, THREE, secure)
    text = " ".join(problems)
    assert "No password: celery" in text and "Unusable characters in the password of: broker" in text
    assert "with space" not in text
    assert "to sign certificates for the hosts without their own" in text and "(kafka1, kafka3)" in text
    assert "kafka2: kafka_tls_node_cert_file ('/missing.crt') and kafka_tls_node_key_file ('')" in text
    assert f"kafka_tls_dir ('{inventory / 'pki'}') is inside the inventory directory" in text
    assert len(problems) == 4


def test_acls_need_authentication_and_bad_protocols_are_named(tmp_path) -> None:
    [acls] = kafka_preflight.cluster_problems(NODES, THREE, THREE, settings(tmp_path, kafka_acls_enabled=True))
    assert acls.startswith("kafka_acls_enabled needs kafka_security_protocol=SASL_SSL")
    [protocol] = kafka_preflight.cluster_problems(NODES, THREE, THREE, settings(tmp_path, kafka_security_protocol="SSL"))
    assert "kafka_security_protocol must be PLAINTEXT or SASL_SSL (is 'SSL')" in protocol
