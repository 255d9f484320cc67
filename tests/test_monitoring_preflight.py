"""The monitoring preflight refuses missing secrets and bad sources before anything changes.

Each case runs playbooks/monitoring.yml with only its preflight play (`--tags monitoring_preflight`) against a
throwaway inventory (local connection, never contacted), and checks the exit code, the message and that no install
play started.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from ansible_run import LOCAL_CONNECTION, run_playbook, write_local_inventory
from ansible_run import assert_refused as shared_assert_refused

REPO = Path(__file__).resolve().parents[1]
NO_ROUTING_KEY = "alertmanager_pagerduty_routing_key is missing or empty on m1"
BAD_GRAFANA_PASSWORD = "grafana_admin_password is missing, empty or Grafana's default"
GOOD = {"alertmanager_pagerduty_routing_key": "0123456789abcdef0123456789abcdef", "grafana_admin_password": "a-real-password"}


def run_preflight(tmp_path: Path, variables: dict, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    settings = {**GOOD, **variables}
    for name in drop:
        settings.pop(name)
    # In the inventory's group_vars/ directory, as inventories/example keeps them: those files outrank the playbook's
    # group_vars/all.yml (prometheus_scrape_groups is set there), a group's vars written in hosts.yml do not.
    (tmp_path / "group_vars").mkdir(exist_ok=True)
    (tmp_path / "group_vars" / "monitoring.yml").write_text(yaml.safe_dump(settings))
    inventory = write_local_inventory(
        tmp_path / "hosts.yml", {"celery_kafka_exporter_wheels_dir": str(wheels)}, {"kafka": {"k1": {}}, "monitoring": {"m1": {}}}
    )
    return run_playbook("playbooks/monitoring.yml", inventory, "--tags", "monitoring_preflight")


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    shared_assert_refused(result, message, never_started=("Install the monitoring node", "Run the node exporter on every host"))


def test_good_monitoring_inventory_passes(tmp_path):
    result = run_preflight(tmp_path, {})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_missing_pagerduty_routing_key_is_refused(tmp_path):
    assert_refused(run_preflight(tmp_path, {}, drop=("alertmanager_pagerduty_routing_key",)), NO_ROUTING_KEY)


def test_empty_pagerduty_routing_key_is_refused(tmp_path):
    assert_refused(run_preflight(tmp_path, {"alertmanager_pagerduty_routing_key": " "}), NO_ROUTING_KEY)


def test_missing_grafana_password_is_refused(tmp_path):
    assert_refused(run_preflight(tmp_path, {}, drop=("grafana_admin_password",)), BAD_GRAFANA_PASSWORD)


def test_default_or_empty_grafana_password_is_refused(tmp_path):
    for password in ("admin", ""):
        assert_refused(run_preflight(tmp_path, {"grafana_admin_password": password}), BAD_GRAFANA_PASSWORD)


def test_prometheus_archive_without_checksum_is_refused(tmp_path):
    result = run_preflight(tmp_path, {"prometheus_install_method": "archive"})
    assert_refused(result, "prometheus_install_method=archive needs either prometheus_archive_source=url with prometheus_archive_sha256")


def test_duplicate_scrape_job_is_refused(tmp_path):
    scrape = [{"job": "kafka", "groups": ["kafka"], "port": 7071}, {"job": "kafka", "groups": ["kafka"], "port": 9100}]
    assert_refused(run_preflight(tmp_path, {"prometheus_scrape_groups": scrape}), "Scrape job names must be unique")


def test_a_variable_of_the_exporter_under_its_former_name_is_refused(tmp_path):
    result = run_preflight(tmp_path, {"kafka_lag_exporter_port": 9309})
    assert_refused(result, "kafka_lag_exporter_port is now celery_kafka_exporter_port")


def test_secrets_never_reach_the_output(tmp_path):
    for variables in ({}, {"grafana_admin_password": "admin"}):
        result = run_preflight(tmp_path, variables)
        output = result.stdout + result.stderr
        assert GOOD["alertmanager_pagerduty_routing_key"] not in output
        assert GOOD["grafana_admin_password"] not in output


def run_example_inventory(extra: dict) -> subprocess.CompletedProcess:
    variables = json.dumps({**LOCAL_CONNECTION, **extra})
    return run_playbook("playbooks/monitoring.yml", REPO / "inventories" / "example", "--tags", "monitoring_preflight", "-e", variables)


def test_example_inventory_without_its_vault_is_refused():
    assert_refused(run_example_inventory({}), "alertmanager_pagerduty_routing_key is missing or empty on monitoring-1.example.internal")


def test_example_inventory_passes_with_its_vault(tmp_path):
    secrets = {"vault_alertmanager_pagerduty_routing_key": "k" * 32, "vault_grafana_admin_password": "a-real-password"}
    result = run_example_inventory({**secrets, "celery_kafka_exporter_wheels_dir": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
