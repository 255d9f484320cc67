"""`--tags kafka|celery|monitoring` select their part of site.yml and nothing else (ansible-playbook --list-tasks).

Every role's argument validation is tagged `always` by Ansible, so it is left out of the comparison. The default
Molecule scenario runs the monitoring and celery tags for real on a converged stack.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def roles_listed(tag: str) -> set[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories" / "local-vault-password"),
    }
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(REPO / "inventories" / "local"), str(REPO / "site.yml")]
    listing = subprocess.run([*command, "--tags", tag, "--list-tasks"], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    tasks = re.findall(r"^\s+(\w+) : (.+?)\tTAGS", listing.stdout, flags=re.MULTILINE)
    return {role for role, name in tasks if not name.startswith("Validating arguments against arg spec")}


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("kafka", {"kafka", "kafka_topics"}),
        ("celery", {"celery_worker", "kafka_topics"}),
        ("monitoring", {"node_exporter", "prometheus", "alertmanager", "kafka_lag_exporter", "grafana"}),
    ],
)
def test_tag_selects_only_its_roles(tag: str, expected: set[str]) -> None:
    assert roles_listed(tag) == expected
