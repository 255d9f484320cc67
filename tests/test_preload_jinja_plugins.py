"""callback_plugins/preload_jinja_plugins.py: with it (the repository's ansible.cfg enables it), ansible-playbook's
main process loads the filter plugins once and the task workers inherit them; without it, each task's worker imports
every filter plugin file again."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_run import run_playbook, write_local_inventory

TASKS = 6

# A filter plugin that notes each import of its file.
COUNTING_FILTER = """
import os

with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")


class FilterModule:
    def filters(self):
        return {"counted": lambda value: value}
"""


def imports_of_a_filter_plugin(tmp_path: Path, callbacks: str | None) -> int:
    """How many times a playbook of TASKS templating tasks imports a filter plugin file beside it, with the callbacks
    the repository's ansible.cfg enables (None) or with these instead."""
    (tmp_path / "filter_plugins").mkdir(exist_ok=True)
    (tmp_path / "filter_plugins" / "counting.py").write_text(COUNTING_FILTER)
    tasks = [{"name": f"Template {n}", "ansible.builtin.debug": {"msg": f"{{{{ {n} | counted }}}}"}} for n in range(TASKS)]
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    inventory = write_local_inventory(tmp_path / "inventory.yml", {}, {"local": {"localhost": {}}})
    log = tmp_path / f"imports-{callbacks}.log"
    env = {"IMPORT_LOG": str(log)}
    if callbacks is not None:
        env["ANSIBLE_CALLBACKS_ENABLED"] = callbacks
    result = run_playbook(str(playbook), inventory, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return len(log.read_text().split())


def test_the_task_workers_inherit_the_filter_plugins_loaded_once(tmp_path):
    with_preload = imports_of_a_filter_plugin(tmp_path, None)
    without = imports_of_a_filter_plugin(tmp_path, "ansible.posix.timer")
    assert with_preload == 1
    assert without >= TASKS
