"""`--tags kafka|celery|monitoring` select their part of site.yml and nothing else (ansible-playbook --list-tasks).

Every role's argument validation is tagged `always` by Ansible, so it is left out of the comparison. The default
Molecule scenario runs the celery and monitoring tags live, in check mode, on a converged stack.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible_run import run_playbook

REPO = Path(__file__).resolve().parents[1]


def roles_listed(tag: str) -> set[str]:
    vault = {"ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories" / "local-vault-password")}
    listing = run_playbook("site.yml", REPO / "inventories" / "local", "--tags", tag, "--list-tasks", env=vault)
    assert listing.returncode == 0, listing.stderr
    tasks = re.findall(r"^\s+(\w+) : (.+?)\tTAGS", listing.stdout, flags=re.MULTILINE)
    return {role for role, name in tasks if not name.startswith("Validating arguments against arg spec")}


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("kafka", {"kafka", "kafka_topics"}),
        ("celery", {"celery_worker", "kafka_topics"}),
        ("monitoring", {"node_exporter", "prometheus", "alertmanager", "celery_kafka_exporter", "grafana"}),
    ],
)
def test_tag_selects_only_its_roles(tag: str, expected: set[str]) -> None:
    assert roles_listed(tag) == expected
