"""Web authentication of the monitoring stack, on the files the roles render (Grafana cannot be installed here).

The Prometheus and Alertmanager web configurations pass `promtool check web-config` and hold only a bcrypt hash that
matches the password; rendering twice gives the same bytes (a per-host salt: re-runs change nothing);
prometheus.yml sends credentials from password files (no secret inside) and passes `promtool check config`;
Grafana's datasource carries basic auth with the password in secureJsonData, and anonymous access stays off.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROMTOOL = REPO / ".cache" / "bin" / "promtool"
PROMETHEUS_PASSWORD = "prometheus-test-password"
ALERTMANAGER_PASSWORD = "alertmanager-test-password"

pytestmark = pytest.mark.skipif(not PROMTOOL.is_file(), reason="needs .cache/bin/promtool (make deps)")


def render(out: Path, host: str = "m1", **variables: object) -> Path:
    inventory = out.parent / f"{out.name}-hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"monitoring": {"hosts": {host: {"ansible_host": "127.0.0.1"}}}}}}))
    settings = {
        "out": str(out),
        "prometheus_config_dir": str(out / "prometheus"),
        "alertmanager_config_file": str(out / "alertmanager" / "alertmanager.yml"),
        "grafana_config_dir": str(out / "grafana"),
        "grafana_admin_password": "a-real-password",
        "prometheus_web_auth_enabled": True,
        "prometheus_web_auth_password": PROMETHEUS_PASSWORD,
        "alertmanager_web_auth_enabled": True,
        "alertmanager_web_auth_password": ALERTMANAGER_PASSWORD,
        **variables,
    }
    playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "tests/prometheus/render-auth.yml"]
    result = subprocess.run(
        [*playbook, "-e", json.dumps(settings)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert PROMETHEUS_PASSWORD not in result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("auth") / "out")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("path", "user", "password"),
    [
        ("prometheus/web.yml", "prometheus", PROMETHEUS_PASSWORD),
        ("alertmanager/alertmanager-web.yml", "alertmanager", ALERTMANAGER_PASSWORD),
    ],
)
def test_web_configs_hold_a_bcrypt_hash_of_the_password(rendered: Path, path: str, user: str, password: str) -> None:
    checked = promtool("check", "web-config", str(rendered / path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = (rendered / path).read_text()
    assert password not in text
    stored = yaml.safe_load(text)["basic_auth_users"][user]
    assert bcrypt.checkpw(password.encode(), stored.encode())
    assert not bcrypt.checkpw(b"wrong", stored.encode())


def test_rendering_again_gives_the_same_hash_but_another_host_gets_another_salt(rendered: Path, tmp_path: Path) -> None:
    again = render(tmp_path / "again")
    assert (again / "prometheus/web.yml").read_text() == (rendered / "prometheus/web.yml").read_text()
    assert (again / "alertmanager/alertmanager-web.yml").read_text() == (rendered / "alertmanager/alertmanager-web.yml").read_text()
    first = yaml.safe_load((rendered / "prometheus/web.yml").read_text())["basic_auth_users"]
    # The salt is per host: the same password on another monitoring host gets another hash.
    other = render(tmp_path / "other", host="m2")
    assert yaml.safe_load((other / "prometheus/web.yml").read_text())["basic_auth_users"] != first


def test_services_read_the_web_configs(rendered: Path) -> None:
    assert f"--web.config.file={rendered}/prometheus/web.yml" in (rendered / "prometheus/prometheus.service").read_text()
    assert f"--web.config.file={rendered}/alertmanager/alertmanager-web.yml" in (rendered / "alertmanager/alertmanager.service").read_text()


def test_prometheus_sends_credentials_from_files_to_itself_and_the_alertmanagers(rendered: Path) -> None:
    config_path = rendered / "prometheus/prometheus.yml"
    text = config_path.read_text()
    assert PROMETHEUS_PASSWORD not in text and ALERTMANAGER_PASSWORD not in text
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    secrets = rendered / "prometheus" / "secrets"
    assert jobs["prometheus"]["basic_auth"] == {"username": "prometheus", "password_file": f"{secrets}/prometheus.password"}
    alertmanager_auth = {"username": "alertmanager", "password_file": f"{secrets}/alertmanager.password"}
    assert jobs["alertmanager"]["basic_auth"] == alertmanager_auth
    assert config["alerting"]["alertmanagers"][0]["basic_auth"] == alertmanager_auth
    assert "basic_auth" not in jobs["node"]
    for name, password in (("prometheus", PROMETHEUS_PASSWORD), ("alertmanager", ALERTMANAGER_PASSWORD)):
        (rendered / "prometheus/secrets" / f"{name}.password").write_text(password)
    checked = promtool("check", "config", "--syntax-only", str(config_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_datasource_uses_basic_auth_and_anonymous_access_is_off(rendered: Path) -> None:
    [source] = yaml.safe_load((rendered / "grafana/datasource.yml").read_text())["datasources"]
    assert source["basicAuth"] is True and source["basicAuthUser"] == "prometheus"
    assert source["secureJsonData"] == {"basicAuthPassword": PROMETHEUS_PASSWORD}
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string((rendered / "grafana/grafana.ini").read_text())
    assert ini["auth.anonymous"]["enabled"] == "false"


def test_without_auth_nothing_changes(tmp_path: Path) -> None:
    plain = render(tmp_path / "plain", prometheus_web_auth_enabled=False, alertmanager_web_auth_enabled=False)
    assert "--web.config.file" not in (plain / "prometheus/prometheus.service").read_text()
    assert "--web.config.file" not in (plain / "alertmanager/alertmanager.service").read_text()
    assert "basic_auth" not in (plain / "prometheus/prometheus.yml").read_text()
    [source] = yaml.safe_load((plain / "grafana/datasource.yml").read_text())["datasources"]
    assert "basicAuth" not in source and "secureJsonData" not in source
