"""callback_plugins/preload_plugins.py: with it (the repository's ansible.cfg enables it), ansible-playbook's main
process loads the filter, lookup and connection plugins and the task workers inherit them; without it, each task's
worker imports each plugin file again (and parses a lookup or connection plugin's documentation for its settings).
The lookups it loads are the ones its `lookups` option names."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_run import run_playbook, write_local_inventory

TASKS = 6

# Plugin files that note each import in a log of their own. Lookup and connection settings are loaded together with
# the file, so its imports count both.
LOG_IMPORT = """
import os

with open(os.path.join(os.environ["IMPORT_LOG_DIR"], "{kind}"), "a") as log:
    log.write(f"{{os.getpid()}}\\n")
"""

COUNTING_FILTER = """
class FilterModule:
    def filters(self):
        return {"counted": lambda value: value}
"""

COUNTING_LOOKUP = '''
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: counted
short_description: Returns its terms
description: [Returns its terms.]
options:
  _terms: {description: Any values., required: true}
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return terms
'''

# A connection plugin from a collection, as community.docker.docker is in Molecule: ansible.builtin's local, renamed.
COUNTING_CONNECTION = """
from ansible.plugins.connection.local import DOCUMENTATION as LOCAL_DOCUMENTATION
from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = LOCAL_DOCUMENTATION.replace("name: local", "name: counted")


class Connection(LocalConnection):
    transport = "kcs.testing.counted"
"""


def write_plugins(root: Path) -> None:
    plugins = {
        root / "filter_plugins" / "counting.py": ("filter", COUNTING_FILTER),
        root / "lookup_plugins" / "counted.py": ("lookup", COUNTING_LOOKUP),
        root / "ansible_collections/kcs/testing/plugins/connection/counted.py": ("connection", COUNTING_CONNECTION),
    }
    for path, (kind, body) in plugins.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LOG_IMPORT.format(kind=kind) + body)
    (root / "ansible_collections/kcs/testing/galaxy.yml").write_text(
        "namespace: kcs\nname: testing\nversion: 1.0.0\nreadme: README.md\nauthors: [test]\n"
    )


def imports_per_plugin(tmp_path: Path, callbacks: str | None) -> dict[str, int]:
    """How many times a playbook of TASKS tasks, each templating a filter and a lookup on a host reached through a
    collection's connection plugin, imports each plugin file, with the callbacks the repository's ansible.cfg enables
    (None) or with these instead."""
    write_plugins(tmp_path)
    message = "{{ [n | counted] + lookup('counted', n, wantlist=True) }}"
    tasks = [{"name": f"Template {n}", "ansible.builtin.debug": {"msg": message}, "vars": {"n": n}} for n in range(TASKS)]
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "local", "gather_facts": False, "tasks": tasks}]))
    host = {"ansible_connection": "kcs.testing.counted"}
    inventory = write_local_inventory(tmp_path / "inventory.yml", {}, {"local": {"localhost": host}})
    log_dir = tmp_path / f"imports-{callbacks}"
    log_dir.mkdir()
    # The lookups to load once are named (the callback's `lookups` option).
    env = {"IMPORT_LOG_DIR": str(log_dir), "ANSIBLE_COLLECTIONS_PATH": str(tmp_path), "ANSIBLE_PRELOAD_LOOKUPS": "counted"}
    if callbacks is not None:
        env["ANSIBLE_CALLBACKS_ENABLED"] = callbacks
    result = run_playbook(str(playbook), inventory, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return {log.name: len(log.read_text().split()) for log in log_dir.iterdir()}


def test_the_task_workers_inherit_the_plugins_loaded_once(tmp_path):
    with_preload = imports_per_plugin(tmp_path, None)
    without = imports_per_plugin(tmp_path, "ansible.posix.timer")
    assert without == {"filter": TASKS, "lookup": TASKS, "connection": TASKS}
    # The connection plugin a host names is loaded when the host's first result comes in: the first task's worker
    # loads it too.
    assert with_preload == {"filter": 1, "lookup": 1, "connection": 2}
