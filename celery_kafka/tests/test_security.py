"""Client security settings from the environment: one librdkafka dict for every client, clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_kafka.security import KafkaSecurity, SecurityConfigError
from celery_kafka.settings import WorkerEnvironment, celery_settings


def test_plaintext_by_default_adds_nothing():
    env = WorkerEnvironment.from_environ({"CELERY_KAFKA_BROKERS": "k1:9092"})
    assert env.security.protocol == "PLAINTEXT"
    assert env.kafka_client_config() == {}
    assert celery_settings(env)["broker_transport_options"]["kafka_common_config"] == {}


def test_sasl_ssl_from_the_environment_reaches_the_transport(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = WorkerEnvironment.from_environ(
        {
            "CELERY_KAFKA_BROKERS": "k1:9094,k2:9094",
            "CELERY_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "CELERY_KAFKA_SASL_USERNAME": "celery",
            "CELERY_KAFKA_SASL_PASSWORD": "s3cret",
            "CELERY_KAFKA_SSL_CA_LOCATION": str(ca),
        }
    )
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "celery",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(ca),
    }
    assert env.kafka_client_config() == expected
    assert celery_settings(env)["broker_transport_options"]["kafka_common_config"] == expected
    # The password never shows in a repr (logs, tracebacks).
    assert "s3cret" not in repr(env)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CELERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CELERY_KAFKA_SASL_USERNAME": "celery"}, "CELERY_KAFKA_SASL_PASSWORD"),
        ({"CELERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "CELERY_KAFKA_SASL_USERNAME and CELERY_KAFKA_SASL_PASSWORD"),
        ({"CELERY_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of PLAINTEXT"),
        (
            {
                "CELERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CELERY_KAFKA_SASL_USERNAME": "u",
                "CELERY_KAFKA_SASL_PASSWORD": "p",
                "CELERY_KAFKA_SASL_MECHANISM": "GSSAPI",
            },
            "CELERY_KAFKA_SASL_MECHANISM",
        ),
        ({"CELERY_KAFKA_SECURITY_PROTOCOL": "SSL", "CELERY_KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "not a readable file"),
    ],
)
def test_bad_security_settings_are_refused_clearly(environ: dict[str, str], message: str):
    with pytest.raises(SecurityConfigError, match=message):
        KafkaSecurity.from_environ(environ)


def test_lag_exporter_refuses_sasl_without_password(monkeypatch: pytest.MonkeyPatch):
    from celery_kafka import lag_exporter

    monkeypatch.setenv("CELERY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CELERY_KAFKA_SASL_USERNAME", "lag")
    monkeypatch.delenv("CELERY_KAFKA_SASL_PASSWORD", raising=False)
    with pytest.raises(SystemExit, match="CELERY_KAFKA_SASL_PASSWORD"):
        lag_exporter.main(["--bootstrap-servers", "127.0.0.1:1", "--port", "0"])
