"""Client and monitoring security settings: the preflight plays refuse incomplete ones before anything changes.

SASL_SSL for the workers or the lag exporter needs a user, a password and the CA certificate on the controller;
basic auth on Prometheus, Alertmanager or Grafana's datasource needs a password. The passwords never reach the output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ansible_run import assert_refused, run_playbook, write_local_inventory
from test_monitoring_preflight import GOOD
from test_monitoring_preflight import assert_refused as assert_monitoring_refused
from test_monitoring_preflight import run_preflight as run_monitoring_preflight

SECRET = "never-print-this-password"


def run_worker_preflight(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess:
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    (wheels / "celery_kafka_partitioned-0.1.0-py3-none-any.whl").write_bytes(b"x")
    settings = {"celery_worker_wheels_dir": str(wheels), "celery_worker_app": "myshop.celery:app", **variables}
    inventory = write_local_inventory(tmp_path / "workers.yml", settings, {"celery_workers": {"w1": {}}, "kafka": {"k1": {}}})
    return run_playbook("playbooks/celery.yml", inventory, "--tags", "celery_preflight")


def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def worker_sasl(tmp_path: Path, **overrides: str) -> dict:
    return {
        "celery_worker_kafka_security_protocol": "SASL_SSL",
        "celery_worker_kafka_sasl_username": "celery",
        "celery_worker_kafka_sasl_password": SECRET,
        "celery_worker_kafka_ca_cert_file": ca_file(tmp_path),
        **overrides,
    }


def assert_worker_refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert_refused(result, message, never_started=("Install and run the worker nodes",))
    assert SECRET not in result.stdout + result.stderr


def test_worker_with_complete_sasl_settings_passes(tmp_path):
    result = run_worker_preflight(tmp_path, worker_sasl(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert SECRET not in result.stdout + result.stderr


def test_worker_sasl_without_password_is_refused(tmp_path):
    result = run_worker_preflight(tmp_path, worker_sasl(tmp_path, celery_worker_kafka_sasl_password=""))
    assert_worker_refused(result, "SASL_SSL needs celery_worker_kafka_sasl_username, celery_worker_kafka_sasl_password")
    assert_worker_refused(result, "password missing")


def test_worker_sasl_without_ca_certificate_is_refused(tmp_path):
    result = run_worker_preflight(tmp_path, worker_sasl(tmp_path, celery_worker_kafka_ca_cert_file=str(tmp_path / "nope.crt")))
    assert_worker_refused(result, "nope.crt, not found")


def test_worker_unknown_protocol_is_refused(tmp_path):
    result = run_worker_preflight(tmp_path, {"celery_worker_kafka_security_protocol": "SSL"})
    assert_worker_refused(result, "celery_worker_kafka_security_protocol is 'SSL' (PLAINTEXT or SASL_SSL)")


def test_lag_exporter_sasl_without_password_is_refused(tmp_path):
    variables = {
        "celery_kafka_exporter_kafka_security_protocol": "SASL_SSL",
        "celery_kafka_exporter_kafka_sasl_username": "lag",
        "celery_kafka_exporter_kafka_ca_cert_file": ca_file(tmp_path),
    }
    assert_monitoring_refused(run_monitoring_preflight(tmp_path, variables), "SASL_SSL needs celery_kafka_exporter_kafka_sasl_username")


def test_monitoring_with_web_auth_passes_and_never_prints_passwords(tmp_path):
    variables = {
        "prometheus_web_auth_enabled": True,
        "prometheus_web_auth_password": SECRET,
        "alertmanager_web_auth_enabled": True,
        "alertmanager_web_auth_password": SECRET + "-am",
    }
    result = run_monitoring_preflight(tmp_path, variables)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert SECRET not in result.stdout + result.stderr
    assert GOOD["grafana_admin_password"] not in result.stdout + result.stderr


def test_prometheus_web_auth_without_password_is_refused(tmp_path):
    result = run_monitoring_preflight(tmp_path, {"prometheus_web_auth_enabled": True})
    message = "prometheus_web_auth_enabled is true on m1 but prometheus_web_auth_username or prometheus_web_auth_password is empty"
    assert_monitoring_refused(result, message)


def test_alertmanager_web_auth_without_password_is_refused(tmp_path):
    result = run_monitoring_preflight(tmp_path, {"alertmanager_web_auth_enabled": True})
    # Prometheus' preflight runs first and already misses the password it would send.
    assert_monitoring_refused(result, "prometheus_alertmanager_auth_password (default: alertmanager_web_auth_password) is empty on m1")
    result = run_monitoring_preflight(tmp_path, {"alertmanager_web_auth_enabled": True, "prometheus_alertmanager_auth_password": "x"})
    assert_monitoring_refused(result, "alertmanager_web_auth_enabled is true on m1 but alertmanager_web_auth_username or")


def test_grafana_datasource_auth_without_password_is_refused(tmp_path):
    result = run_monitoring_preflight(tmp_path, {"grafana_datasource_basic_auth": True})
    assert_monitoring_refused(result, "grafana_datasource_basic_auth is true on m1 but grafana_datasource_basic_auth_username")
