"""Every role variable is documented: in defaults/main.yml (unless it must come from the inventory), in the argument
spec, and in docs/variables.md as generated from both."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ROLES = sorted(path for path in (REPO / "roles").iterdir() if (path / "tasks" / "main.yml").is_file())


def test_variables_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("role_variables", REPO / "scripts" / "role-variables.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    assert (REPO / "docs" / "variables.md").read_text() == module.render(), "run: python scripts/role-variables.py"


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
    allowed = {"kafka_node_id", "celery_worker_partition"}
    assert undocumented - allowed == set(), "argument spec entries without a default must say they are required"
