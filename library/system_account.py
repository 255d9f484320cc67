#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: a service's system group and system user, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: system_account
short_description: Create a service's system group and its system user (no login, no home created) in one module run
description:
  - Does what M(ansible.builtin.group) with C(system=true) followed by M(ansible.builtin.user) with C(system=true),
    C(create_home=false) and that group does, in one module run instead of two. Every service role of this project
    creates its account this way, and a re-run of an unchanged host pays one round trip for it.
  - An existing user keeps its uid; its primary group, home and shell are corrected with C(usermod). An existing group
    keeps its gid. Neither is removed (remove a former account with M(ansible.builtin.user) C(state=absent)).
  - Supports check mode and diff (the user's primary group, home and shell).
options:
  name:
    description: The user's name.
    type: str
    required: true
  group:
    description: Its primary group, created as a system group when missing. Defaults to O(name).
    type: str
  home:
    description: Its home directory, recorded in the password database only (never created; the role creates it).
    type: path
    required: true
  shell:
    description: Its login shell.
    type: path
    default: /usr/sbin/nologin
"""

EXAMPLES = r"""
- name: Create the Kafka group and user
  system_account:
    name: kafka
    group: kafka
    home: /var/lib/kafka
"""

RETURN = r"""
uid:
  description: The user's uid (absent in check mode when the user would be created).
  returned: when the user exists
  type: int
gid:
  description: The group's gid (absent in check mode when the group would be created).
  returned: when the group exists
  type: int
"""

import grp
import pwd
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def find_group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def find_group_by_gid(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def find_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def user_settings(user: pwd.struct_passwd | None, group_name: str | None) -> dict[str, Any]:
    """The settings this module keeps, as the password database has them (empty for a missing user)."""
    if user is None:
        return {}
    return {"group": group_name, "home": user.pw_dir, "shell": user.pw_shell}


def usermod_flags(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """usermod's options for the settings that differ, in a fixed order."""
    flags = {"group": "--gid", "home": "--home", "shell": "--shell"}
    return [arg for key, flag in flags.items() if current.get(key) != wanted[key] for arg in (flag, wanted[key])]


def run(module: AnsibleModule, argv: list[str]) -> None:
    rc, _out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"{argv[0]} failed for {module.params['name']}: {err.strip()}", rc=rc, cmd=argv)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "group": {"type": "str"},
            "home": {"type": "path", "required": True},
            "shell": {"type": "path", "default": "/usr/sbin/nologin"},
        },
        supports_check_mode=True,
    )
    name = module.params["name"]
    wanted = {"group": module.params["group"] or name, "home": module.params["home"], "shell": module.params["shell"]}
    changed = False

    group = find_group(wanted["group"])
    if group is None:
        changed = True
        if not module.check_mode:
            run(module, [module.get_bin_path("groupadd", required=True), "--system", wanted["group"]])
            group = find_group(wanted["group"])

    user = find_user(name)
    primary = find_group_by_gid(user.pw_gid) if user else None
    before = user_settings(user, primary)
    if user is None:
        changed = True
        if not module.check_mode:
            run(
                module,
                [
                    module.get_bin_path("useradd", required=True),
                    "--system",
                    "--gid",
                    wanted["group"],
                    "--home-dir",
                    wanted["home"],
                    "--no-create-home",
                    "--shell",
                    wanted["shell"],
                    name,
                ],
            )
    elif flags := usermod_flags(before, wanted):
        changed = True
        if not module.check_mode:
            run(module, [module.get_bin_path("usermod", required=True), *flags, name])

    result: dict[str, Any] = {"changed": changed, "name": name, "group": wanted["group"]}
    user = find_user(name)
    if user is not None:
        result["uid"] = user.pw_uid
    if group is not None:
        result["gid"] = group.gr_gid
    if changed and module._diff:
        result["diff"] = {"before": before, "after": wanted, "before_header": name, "after_header": name}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
