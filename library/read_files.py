#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: read some files and look for others on a node, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: read_files
short_description: Read several files and look for others in one module run
description:
  - What several M(ansible.builtin.slurp) and M(ansible.builtin.stat) tasks read, in one module run. Each module run
    costs a Python start-up on the node, so a role that must learn several things about a node before it changes
    anything asks once.
  - Never changes anything; runs in check mode too.
options:
  read:
    description:
      - Files whose contents are returned, base64-encoded as M(ansible.builtin.slurp) returns them. A missing file is
        not an error; it is reported with RV(files.exists) false.
    type: list
    elements: path
    default: []
  look_for:
    description: Paths whose existence alone is reported (files, directories or links to an existing target).
    type: list
    elements: path
    default: []
"""

EXAMPLES = r"""
- name: Read what this node runs now
  read_files:
    read: [/etc/kafka/server.properties]
    look_for: [/opt/kafka/kafka_2.13-4.3.1/libs]
  register: on_disk

- name: Show the deployed configuration
  ansible.builtin.debug:
    msg: "{{ on_disk.files['/etc/kafka/server.properties'].content | default('') | b64decode }}"
"""

RETURN = r"""
files:
  description:
    - One entry per path of O(read) and O(look_for), keyed by the path as given. Each has C(exists); a file of O(read)
      that exists also has C(content) (base64) and C(encoding) (C(base64)).
  returned: always
  type: dict
  sample:
    /etc/kafka/server.properties: {exists: true, content: "bm9kZS5pZD0x", encoding: base64}
    /opt/kafka/kafka_2.13-4.3.1/libs: {exists: false}
"""

import base64
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def read_file(path: str) -> dict:
    """A file's contents as slurp returns them, or that it is not there."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return {"exists": False}
    return {"exists": True, "content": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "read": {"type": "list", "elements": "path", "default": []},
            "look_for": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    files = {path: {"exists": Path(path).exists()} for path in module.params["look_for"]}
    try:
        files.update({path: read_file(path) for path in module.params["read"]})
    except OSError as error:
        # A file there but unreadable (a directory, no permission) says nothing reliable about the node: stop.
        module.fail_json(msg=f"cannot read {error.filename}: {error.strerror}")
    module.exit_json(changed=False, files=files)


if __name__ == "__main__":
    main()
