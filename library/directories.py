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
    description:
      - Directories to create or correct, in order.
      - Each item is a path, or a dict with C(path) and that directory's own C(owner), C(group) or C(mode), which
        replace O(owner), O(group) and O(mode) for it (and for the parents created for it).
    type: list
    elements: raw
    required: true
extends_documentation_fragment:
  # owner, group, mode and the other file attributes: they apply to every path that does not set its own.
  - ansible.builtin.files
"""

EXAMPLES = r"""
- name: Create the data and log directories
  directories:
    paths: [/var/lib/kafka, /var/log/kafka]
    owner: kafka
    group: kafka
    mode: "0750"

- name: Create the install directory (root's) and the data directory (the service's)
  directories:
    owner: root
    group: kafka
    mode: "0755"
    paths:
      - /opt/kafka
      - {path: /var/lib/kafka, owner: kafka, mode: "0750"}
"""

RETURN = r"""
changed_paths:
  description: The paths created or corrected.
  returned: always
  type: list
  elements: str
"""

import os
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.file_batch import OWN_ATTRIBUTES, attributes_for, exit_with_each, file_batch_module


def wanted_directory(module: AnsibleModule, item: Any) -> dict:
    """An item of `paths` as {path, and the attributes it sets itself}; a bad item fails the module."""
    if isinstance(item, str):
        item = {"path": item}
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
        module.fail_json(msg=f"each item of paths is a path or a dict with a path: {item!r}")
    unknown = sorted(set(item) - {"path", *OWN_ATTRIBUTES})
    if unknown:
        module.fail_json(msg=f"{item['path']}: unknown keys {unknown}; a directory may set only path, owner, group and mode")
    # As a `path` option would: ~ and $VARIABLES expanded.
    return {**item, "path": str(Path(os.path.expandvars(item["path"])).expanduser())}


def ensure_directory(module: AnsibleModule, wanted: dict) -> tuple[bool, dict]:
    """Create the directory (and missing parents) and set its attributes; return whether anything changed, and the
    diff."""
    path = wanted["path"]
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
            module.set_fs_attributes_if_different(attributes_for(module, wanted, str(parent)), False)
    return module.set_fs_attributes_if_different(attributes_for(module, wanted, path), changed, diff=diff) or changed, diff


def main() -> None:
    module = file_batch_module({"paths": {"type": "list", "elements": "raw", "required": True}})
    # Every item is checked before the first directory is touched.
    wanted = [wanted_directory(module, item) for item in module.params["paths"]]
    exit_with_each(module, wanted, ensure_directory, path_of=lambda directory: directory["path"])


if __name__ == "__main__":
    main()
