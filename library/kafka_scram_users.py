#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: SASL/SCRAM users of a Kafka cluster."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_scram_users
short_description: Create Kafka SASL/SCRAM users and keep their passwords as declared
description:
  - Sets the SCRAM credential of each declared user that has none for the mechanism, or whose declared password
    differs from the one this module last set. Users not declared are left alone.
  - Kafka stores only salted hashes, so the module keeps a salted PBKDF2 fingerprint of each password it set in
    C(state_file) on the node (mode 0600) to tell whether a password changed; a re-run with the same passwords
    changes nothing.
  - Passwords reach ConfigCommand through a temporary file (mode 0600, removed afterwards), never its command line.
extends_documentation_fragment:
  - kafka_admin_tool
  - kafka_admin_tool.kafka_home
options:
  users:
    description: Declared users.
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: User name., type: str, required: true}
      password: {description: Password., type: str, required: true, no_log: true}
  mechanism:
    description: SCRAM mechanism.
    type: str
    choices: [SCRAM-SHA-256, SCRAM-SHA-512]
    default: SCRAM-SHA-512
  iterations:
    description: SCRAM iterations for newly set credentials.
    type: int
    default: 8192
  bootstrap_servers:
    description: Comma-separated host:port list of brokers.
    type: str
    required: true
  state_file:
    description: Where the password fingerprints are kept on the node.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: SCRAM users
  kafka_scram_users:
    users:
      - {name: celery, password: "{{ vault_celery_password }}"}
    bootstrap_servers: kafka1:9091
    command_config: /etc/kafka/admin-client.properties
    state_file: /var/lib/kafka/scram-users.json
    kafka_home: /opt/kafka/current
  no_log: true
"""

RETURN = r"""
set_users:
  description: Names of the users whose credential was set (or would be, in check mode).
  type: list
  elements: str
  returned: always
"""

import json
import os
import secrets
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kafka_cli import ADMIN_TOOL_OPTIONS, CONFIG_COMMAND_CANDIDATES, find_main_class, run_admin_tool
from ansible.module_utils.kafka_scram_users import parse_user_scram_describe, plan_scram_users, scram_add_config, scram_fingerprint


def read_state(path: str) -> dict[str, dict[str, str]]:
    try:
        with Path(path).open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: str, state: dict[str, dict[str, str]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=".scram-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    Path(tmp).chmod(0o600)
    Path(tmp).replace(path)


def set_credential(module: AnsibleModule, main_class: str, name: str, password: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix="kafka-scram-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(scram_add_config(module.params["mechanism"], password, module.params["iterations"]))
        args = ["--alter", "--entity-type", "users", "--entity-name", name, "--add-config-file", tmp]
        run_admin_tool(module, main_class, args)
    finally:
        Path(tmp).unlink()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "users": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                },
            },
            "mechanism": {"type": "str", "choices": ["SCRAM-SHA-256", "SCRAM-SHA-512"], "default": "SCRAM-SHA-512"},
            "iterations": {"type": "int", "default": 8192},
            "bootstrap_servers": {"type": "str", "required": True},
            "state_file": {"type": "path", "required": True},
            **ADMIN_TOOL_OPTIONS,
            "kafka_home": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    users = params["users"]
    names = [user["name"] for user in users]
    if len(set(names)) != len(names):
        module.fail_json(msg=f"SCRAM users declared more than once: {sorted({n for n in names if names.count(n) > 1})}")
    main_class = find_main_class(params["kafka_home"], CONFIG_COMMAND_CANDIDATES)
    if main_class is None:
        module.fail_json(msg=f"no ConfigCommand ({', '.join(CONFIG_COMMAND_CANDIDATES)}) in {params['kafka_home']}/libs")

    existing = parse_user_scram_describe(run_admin_tool(module, main_class, ["--describe", "--entity-type", "users"]))
    state = read_state(params["state_file"])
    todo = plan_scram_users(users, params["mechanism"], existing, state)
    if todo and not module.check_mode:
        passwords = {user["name"]: user["password"] for user in users}
        for name in todo:
            set_credential(module, main_class, name, passwords[name])
            salt = secrets.token_hex(16)
            state[name] = {
                "mechanism": params["mechanism"],
                "salt": salt,
                "fingerprint": scram_fingerprint(passwords[name], salt, params["mechanism"]),
            }
            write_state(params["state_file"], state)
    module.exit_json(changed=bool(todo), set_users=todo)


if __name__ == "__main__":
    main()
