"""The Kafka preflight refuses bad security settings before anything changes, and never prints a password."""

from __future__ import annotations

from pathlib import Path

from test_preflight import THREE, assert_refused, run_preflight, write_inventory

PASSWORD = "preflight-secret-pw-7d1e"


def secure(tmp_path: Path, **overrides: object) -> dict:
    settings = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_inter_broker_password": PASSWORD,
        "kafka_scram_users": [{"name": "celery", "password": PASSWORD + "-celery"}],
        # Outside the inventory directory (tmp_path), as the preflight requires.
        "kafka_tls_dir": str(tmp_path.parent / f"{tmp_path.name}-tls"),
        # Read by the migration check: no deployed configuration unless a test writes one.
        "kafka_config_dir": str(tmp_path / "etc-kafka"),
    }
    settings.update(overrides)
    return settings


def no_password_in(result) -> None:
    assert PASSWORD not in result.stdout + result.stderr


def test_good_secure_settings_pass(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra=secure(tmp_path)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    no_password_in(result)


def test_sasl_ssl_without_the_inter_broker_password_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra=secure(tmp_path, kafka_sasl_inter_broker_password="")))
    assert_refused(result, "No password: kafka-broker")


def test_a_scram_user_without_password_is_refused(tmp_path):
    users = [{"name": "celery", "password": PASSWORD}, {"name": "exporter", "password": ""}]
    result = run_preflight(write_inventory(tmp_path, THREE, extra=secure(tmp_path, kafka_scram_users=users)))
    assert_refused(result, "No password: exporter")
    no_password_in(result)


def test_a_password_that_would_break_the_jaas_line_is_refused(tmp_path):
    users = [{"name": "celery", "password": PASSWORD + '"x'}]
    result = run_preflight(write_inventory(tmp_path, THREE, extra=secure(tmp_path, kafka_scram_users=users)))
    assert_refused(result, "Unusable characters in the password of: celery")
    no_password_in(result)


def test_an_unknown_mechanism_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra=secure(tmp_path, kafka_sasl_mechanism="PLAIN")))
    assert_refused(result, "kafka_sasl_mechanism SCRAM-SHA-256 or SCRAM-SHA-512 (is 'PLAIN')")


def test_a_provided_ca_that_does_not_exist_is_refused(tmp_path):
    extra = secure(tmp_path, kafka_tls_ca_source="provided", kafka_tls_ca_cert_file=str(tmp_path / "missing-ca.crt"))
    result = run_preflight(write_inventory(tmp_path, THREE, extra=extra))
    assert_refused(result, "kafka_tls_ca_source=provided needs the CA certificate")


def test_a_tls_directory_inside_the_inventory_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra=secure(tmp_path, kafka_tls_dir=str(tmp_path / "certs"))))
    assert_refused(result, "is inside the inventory directory")


def test_switching_a_running_plaintext_cluster_is_refused_unless_allowed(tmp_path):
    etc = tmp_path / "etc-kafka"
    etc.mkdir()
    (etc / "server.properties").write_text("listener.security.protocol.map=INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT\n")
    inventory = write_inventory(tmp_path, THREE, extra=secure(tmp_path))
    assert_refused(run_preflight(inventory), "runs Kafka with PLAINTEXT listeners, but kafka_security_protocol is SASL_SSL")
    allowed = run_preflight(inventory, {"kafka_security_allow_migration": True})
    assert allowed.returncode == 0, allowed.stdout[-3000:]
