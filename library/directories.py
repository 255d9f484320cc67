#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: several directories with one owner, group and mode, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: directories
short_description: Create directories and keep their owner, group and mode, several in one module run
description:
  - Does for each path what M(ansible.builtin.file) with C(state=directory) does (parents are created with the
    same attributes), but in one module run instead of one per path. A re-run over a role's directories costs one
    round trip per host instead of one per directory.
  - Supports check mode and diff (the attributes that would change, per path).
options:
  paths:
    description: Directories to create or correct.
    type: list
    elements: path
    required: true
extends_documentation_fragment:
  # owner, group, mode and the other file attributes: they apply to every path (and to the parents created).
  - ansible.builtin.files
"""

EXAMPLES = r"""
- name: Create the data and log directories
  directories:
    paths: [/var/lib/kafka, /var/log/kafka]
    owner: kafka
    group: kafka
    mode: "0750"
"""

RETURN = r"""
changed_paths:
  description: The paths created or corrected.
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.file_batch import exit_with_each, file_batch_module


def ensure_directory(module: AnsibleModule, path: str) -> tuple[bool, dict]:
    """Create `path` (and missing parents) and set its attributes; return whether anything changed, and the diff."""
    diff = {"before": {"path": path}, "after": {"path": path}}
    changed = False
    directory = Path(path)
    if not directory.is_dir():
        if directory.is_symlink() or directory.exists():
            module.fail_json(msg=f"{path} exists and is not a directory")
        diff["before"]["state"] = "absent"
        diff["after"]["state"] = "directory"
        changed = True
        if module.check_mode:
            return changed, diff
        # Parents created here get the same attributes, as with ansible.builtin.file.
        created_parents = [parent for parent in directory.parents if not parent.is_dir()]
        directory.mkdir(parents=True)
        for parent in reversed(created_parents):
            module.set_fs_attributes_if_different(_attributes(module, str(parent)), False)
    return module.set_fs_attributes_if_different(_attributes(module, path), changed, diff=diff) or changed, diff


def _attributes(module: AnsibleModule, path: str) -> dict:
    return module.load_file_common_arguments(module.params, path=path)


def main() -> None:
    module = file_batch_module({"paths": {"type": "list", "elements": "path", "required": True}})
    exit_with_each(module, module.params["paths"], ensure_directory, path_of=str)


if __name__ == "__main__":
    main()
