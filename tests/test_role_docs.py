"""Every role variable is documented: in defaults/main.yml (unless it must come from the inventory), in the argument
spec, and in docs/variables.md and the role's README as generated from both. Every role has a README in the same
sections."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from repo_files import load

REPO = Path(__file__).resolve().parent.parent
ROLES = sorted(path for path in (REPO / "roles").iterdir() if (path / "tasks" / "main.yml").is_file())


def generator():
    return load("scripts/role-variables.py", "role_variables")


def test_variables_reference_is_current() -> None:
    assert (REPO / "docs" / "variables.md").read_text() == generator().render(), "run: python scripts/role-variables.py"


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_role_readme_has_the_sections_and_a_current_variables_table(role: Path) -> None:
    readme = (role / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    expected = ["## Requirements", "## Role variables", "## Dependencies", "## Example playbook"]
    assert headings[: len(expected)] == expected
    assert readme == generator().role_readme(role), "run: python scripts/role-variables.py"


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_defaults_and_argument_spec_agree(role: Path) -> None:
    options = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    assert set(defaults) - set(options) == set(), "defaults without an argument spec entry"
    # ansible-doc lists a `required: true` option as one the user must give; one with a default is not.
    required_with_default = {name for name in defaults if options[name].get("required")}
    assert required_with_default == set(), "options with a default must not say required: true"
    # Variables without a default are the ones the inventory must give (secrets, per-host ids).
    undocumented = {name for name in set(options) - set(defaults) if "required" not in str(options[name].get("description", "")).lower()}
    allowed = {"kafka_node_id", "celery_worker_partition", "celery_worker_partitions"}
    assert undocumented - allowed == set(), "argument spec entries without a default must say they are required"
