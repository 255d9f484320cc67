"""Run the project's playbooks the way the preflight and tag tests need: real ansible-playbook, repo config, no colour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# The preflight tests' hosts are never contacted (the preflight runs without facts); a local connection keeps any
# mistake on this machine.
LOCAL_CONNECTION = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def write_local_inventory(path: Path, variables: dict, groups: dict[str, dict]) -> Path:
    """An inventory at `path`: `variables` (and LOCAL_CONNECTION) for every host, and each group's hosts."""
    children = {group: {"hosts": hosts} for group, hosts in groups.items()}
    path.write_text(yaml.safe_dump({"all": {"vars": {**LOCAL_CONNECTION, **variables}, "children": children}}))
    return path


def run_playbook(playbook: str, inventory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook <REPO/playbook> -i <inventory> <args>, never raising on a failed run."""
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})}
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *args]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, check=False)


def assert_refused(result: subprocess.CompletedProcess, message: str, never_started: tuple[str, ...]) -> None:
    """The run failed with `message`, and none of the plays that change hosts began."""
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    assert message in output, output[-3000:]
    for play in never_started:
        assert f"PLAY [{play}]" not in result.stdout


def run_module(module: str, args: dict, *options: str, container: str | None = None) -> dict:
    """`ansible localhost -m <module>` (one of library/) with the repo's config; the module's result as a dict. With
    `container`, the module runs in that Docker container instead (for modules that change system state)."""
    host = container or "localhost"
    command = [str(Path(sys.executable).parent / "ansible"), host, "-M", str(REPO / "library"), "-m", module]
    if container:
        command += ["-i", f"{container},", "-c", "community.docker.docker"]
    command += ["-a", json.dumps(args), *options]
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "json"}
    environment["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120, check=False)
    output = json.loads(done.stdout)
    return output["plays"][0]["tasks"][0]["hosts"][host]
