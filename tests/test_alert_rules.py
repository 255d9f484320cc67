"""Every alert rule fires when it should and stays quiet otherwise: promtool unit tests on the rendered rules.

The rules are rendered from monitoring/kcs-alerts.yml.j2 with its defaults, as a deployment gets them, and checked
with `promtool check rules` (syntax, annotation templates). The unit tests in tests/prometheus/alerts_test.yml then
run against a copy without annotations: promtool compares annotations in full, and ours are long runbook texts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from repo_files import load

REPO = Path(__file__).resolve().parent.parent
PROMTOOL = REPO / ".cache" / "bin" / "promtool"
TESTS = REPO / "tests" / "prometheus" / "alerts_test.yml"

pytestmark = pytest.mark.skipif(not PROMTOOL.is_file(), reason="needs .cache/bin/promtool (make deps)")


def runbooks_script():
    """scripts/runbooks.py, which renders the rules with their defaults and writes docs/runbooks.md from them."""
    return load("scripts/runbooks.py", "runbooks")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return runbooks_script().render_rules(tmp_path_factory.mktemp("rules") / "rendered.yml")


def rules_of(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_rendered_rules_pass_promtool_check(rendered: Path) -> None:
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_carries_a_runbook(rendered: Path) -> None:
    for rule in rules_of(rendered):
        annotations = rule.get("annotations", {})
        assert {"summary", "description", "runbook"} <= annotations.keys(), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]


def test_settings_from_the_inventory_reach_the_rules(tmp_path: Path) -> None:
    """A threshold set in the inventory replaces its default; a runbook URL becomes an annotation of its own per rule."""
    settings = {"kcs_alert_consumer_lag_threshold": 5, "kcs_alert_runbook_url": "https://wiki.example/runbooks"}
    rules = {rule["alert"]: rule for rule in rules_of(runbooks_script().render_rules(tmp_path / "rules.yml", settings))}

    assert rules["KafkaConsumerLagHigh"]["expr"].rstrip().endswith("> 5"), rules["KafkaConsumerLagHigh"]["expr"]
    for name, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example/runbooks#{name.lower()}"
        assert "runbook_url" not in rule["annotations"]["runbook"], name


def test_the_runbooks_document_lists_every_rule_as_rendered(rendered: Path) -> None:
    """docs/runbooks.md's alert table is generated from the rules (their runbook annotations are the one source)."""
    module = runbooks_script()
    assert module.OUTPUT.read_text() == module.document(rendered), "run: python scripts/runbooks.py"


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    spec = yaml.safe_load(TESTS.read_text())
    cases = [case for test in spec["tests"] for case in test.get("alert_rule_test", [])]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    template = REPO / "monitoring" / "kcs-alerts.yml.j2"
    names = {line.split("alert:", 1)[1].strip() for line in template.read_text().splitlines() if line.strip().startswith("- alert:")}
    assert len(names) == 10
    assert names - firing == set(), "rules without a test that makes them fire"
    assert names - quiet == set(), "rules without a test that keeps them quiet"


def test_promtool_unit_tests_pass(rendered: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(rendered.read_text())
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "kcs-alerts.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(TESTS, tmp_path / "alerts_test.yml")
    result = subprocess.run([str(PROMTOOL), "test", "rules", "alerts_test.yml"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
