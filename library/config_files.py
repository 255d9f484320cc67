#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: several small files written from content the controller rendered, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_files
short_description: Write several small files (rendered on the controller) in one module run
description:
  - Does for each file what M(ansible.builtin.copy) with O(ansible.builtin.copy#module:content) does (atomic replace,
    owner, group, mode), but in one module run instead of two per file (a remote C(stat), then C(file)). A re-run
    over a role's configuration files costs one round trip per host instead of two per file.
  - Render a template with C(lookup('ansible.builtin.template', 'name.j2')), which finds it in the role's
    C(templates/) as M(ansible.builtin.template) does.
  - O(owner), O(group) and O(mode) apply to every file that does not set its own.
  - The parent directory must exist. Supports check mode and diff (per file, the content and attributes that change).
  - A file with O(files[].state=absent) is removed if it exists, so one task keeps a file that a setting turns on
    and off (a client's TLS settings, a password file) in the state that setting wants.
  - Mark the task C(no_log) when a file holds secrets; the module's arguments carry the content.
options:
  files:
    description: The files to write.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Where the file goes.
        type: path
        required: true
      content:
        description: The whole content of the file. Required unless O(files[].state=absent).
        type: str
      state:
        description: C(present) writes the file; C(absent) removes it (and ignores the other keys).
        type: str
        choices: [present, absent]
        default: present
      owner:
        description: Owner of this file, instead of O(owner).
        type: str
      group:
        description: Group of this file, instead of O(group).
        type: str
      mode:
        description: Mode of this file, instead of O(mode).
        type: raw
      validate:
        description:
          - A command that checks the new content before it replaces the file, with C(%s) where the new file's path
            goes (as in M(ansible.builtin.template)). Runs only when the content changed. Files are written in
            the order given, so a check may read files written before it in the same list.
        type: str
extends_documentation_fragment:
  # owner, group, mode and the other file attributes: they apply to every file that does not set its own.
  - ansible.builtin.files
"""

EXAMPLES = r"""
- name: Write Kafka's configuration
  config_files:
    owner: root
    group: kafka
    mode: "0640"
    files:
      - path: /etc/kafka/server.properties
        content: "{{ lookup('ansible.builtin.template', 'server.properties.j2') }}"
      - path: /etc/systemd/system/kafka.service
        content: "{{ lookup('ansible.builtin.template', 'kafka.service.j2') }}"
        group: root
        mode: "0644"

- name: Write the server's settings and remove the client settings of a previous TLS setup
  config_files:
    files:
      - path: /etc/kafka/server.properties
        content: "{{ lookup('ansible.builtin.template', 'server.properties.j2') }}"
      - path: /etc/kafka/client-tls.properties
        state: absent
"""

RETURN = r"""
changed_paths:
  description: The files written or whose attributes were corrected.
  returned: always
  type: list
  elements: str
"""

import os
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.file_batch import attributes_for, exit_with_each, file_batch_module

FILE_OPTIONS = {
    "path": {"type": "path", "required": True},
    "content": {"type": "str"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "raw"},
    "validate": {"type": "str"},
}


def ensure_file(module: AnsibleModule, wanted: dict) -> tuple[bool, dict]:
    """Write `wanted['content']` to `wanted['path']` if it differs, then set its attributes (or remove the file, with
    state absent); return whether anything changed, and the diff."""
    path = Path(wanted["path"])
    header = {"before_header": str(path), "after_header": str(path)}
    if wanted["state"] == "absent":
        return ensure_absent(module, path, header)
    content = wanted["content"].encode("utf-8")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        module.fail_json(msg=f"{path} exists and is not a regular file")
    # In check mode an earlier task may only have reported the directory it would create (as ansible.builtin.copy).
    if not path.parent.is_dir() and not module.check_mode:
        module.fail_json(msg=f"{path}: its directory {path.parent} does not exist")
    current = path.read_bytes() if path.exists() else None
    changed = current != content
    if changed:
        before = "" if current is None else current.decode("utf-8", "replace")
        diff = {**header, "before": before, "after": wanted["content"]}
        if module.check_mode:
            return True, diff
        _replace(module, path, content, wanted.get("validate"))
    else:
        # Filled in with the attributes that change, if any.
        diff = {**header, "before": {"path": str(path)}, "after": {"path": str(path)}}
    attributes = attributes_for(module, wanted, str(path))
    attributes_changed = module.set_fs_attributes_if_different(attributes, False, diff=None if changed else diff)
    return changed or attributes_changed, diff


def ensure_absent(module: AnsibleModule, path: Path, header: dict) -> tuple[bool, dict]:
    """Remove the file if it is there. Only a file (or a link) is removed: a directory in its place is refused."""
    if not path.exists() and not path.is_symlink():
        return False, {}
    if path.is_dir() and not path.is_symlink():
        module.fail_json(msg=f"{path} is a directory, not a file to remove")
    if not module.check_mode:
        path.unlink()
    return True, {**header, "before": {"state": "file"}, "after": {"state": "absent"}}


def _replace(module: AnsibleModule, path: Path, content: bytes, validate: str | None) -> None:
    """Write beside the file, check it, and move it in place, so a reader never sees half a file or a refused one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        if validate:
            if "%s" not in validate:
                module.fail_json(msg=f"{path}: validate must contain %s, where the new file's path goes: {validate}")
            rc, out, err = module.run_command(validate % temporary)
            if rc != 0:
                module.fail_json(msg=f"{path}: the new content failed the check {validate!r}", rc=rc, stdout=out, stderr=err)
        module.atomic_move(temporary, str(path), unsafe_writes=False)
    finally:
        Path(temporary).unlink(missing_ok=True)


def main() -> None:
    module = file_batch_module(
        {
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": FILE_OPTIONS,
                "required_if": [("state", "present", ["content"])],
            }
        }
    )
    exit_with_each(module, module.params["files"], ensure_file, path_of=lambda wanted: wanted["path"])


if __name__ == "__main__":
    main()
