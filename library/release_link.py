#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: point a link at a release directory and remove the releases older than the one it replaces."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_link
short_description: Point a link at a release and keep only that release and the one before it
description:
  - For software installed side by side, one directory per release, and run through a symbolic link. Points O(link)
    at O(release) (a new link is renamed over the old one, so the path never dangles). The release it pointed at
    before is kept, and named by a second link beside it, C(<link>.previous), for a manual rollback (point the link
    where that one points, restart). With O(releases_dir), every other directory there is removed.
  - What M(ansible.builtin.stat), M(ansible.builtin.file) and M(ansible.builtin.find) do for this in five tasks, in one
    module run.
  - Supports check mode and diff.
options:
  link:
    description: The link the services run through.
    type: path
    required: true
  release:
    description: The release directory the link should point at. It must exist, except in check mode.
    type: path
    required: true
  releases_dir:
    description:
      - Where the releases are. Directories in it other than O(release) and the link's previous target are
        removed. Without it nothing is removed.
    type: path
  replace_directory:
    description:
      - A directory at O(link) (a layout from before releases) is removed to make way for the link. Without this
        the module fails rather than remove it.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Point the workers at this release and remove releases older than the previous one
  release_link:
    link: /opt/app/venv
    release: /opt/app/releases/3f2a9c1d0b7e
    releases_dir: /opt/app/releases
  notify: restart app
"""

RETURN = r"""
previous:
  description: What the link pointed at before (null if it was not a link).
  returned: always
  type: str
removed:
  description: The directories removed (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
"""

import os
import shutil
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def previous_target(module: AnsibleModule, link: Path, replace_directory: bool) -> str | None:
    """Where the link points now; a directory in its place is allowed only with replace_directory."""
    if link.is_symlink():
        return str(link.readlink())
    if link.is_dir() and not replace_directory:
        module.fail_json(msg=f"{link} is a directory, not a link; set replace_directory to remove it")
    if link.exists() and not link.is_dir():
        module.fail_json(msg=f"{link} exists and is neither a link nor a directory")
    return None


def point_link(link: Path, target: str) -> None:
    """Replace whatever is at `link` with a link to `target`; with an existing link, by one rename."""
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    staged = link.with_name(f".{link.name}.{os.getpid()}")
    if staged.is_symlink():
        staged.unlink()
    staged.symlink_to(target)
    staged.rename(link)


def rollback_link(link: Path) -> Path:
    return link.with_name(f"{link.name}.previous")


def older_releases(releases_dir: Path, keep: set[Path]) -> list[Path]:
    """Directories in releases_dir other than those kept (not following links)."""
    if not releases_dir.is_dir():
        return []
    return sorted(entry for entry in releases_dir.iterdir() if entry.is_dir() and not entry.is_symlink() and entry not in keep)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "link": {"type": "path", "required": True},
            "release": {"type": "path", "required": True},
            "releases_dir": {"type": "path"},
            "replace_directory": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    link, release = Path(module.params["link"]), Path(module.params["release"])
    if not module.check_mode and not release.is_dir():
        module.fail_json(msg=f"release {release} is not a directory")
    previous = previous_target(module, link, module.params["replace_directory"])
    relink = previous != str(release)
    # The release kept for a rollback: the one being replaced, else the one kept at the last switch.
    kept = rollback_link(link)
    rollback = previous if relink else (str(kept.readlink()) if kept.is_symlink() else None)

    removed: list[Path] = []
    if module.params["releases_dir"]:
        # A relative link target is relative to the link's directory.
        keep = {Path(os.path.normpath(link.parent / path)) for path in (str(release), rollback) if path}
        removed = older_releases(Path(module.params["releases_dir"]), keep)

    if not module.check_mode:
        if relink:
            if previous is not None:
                point_link(kept, previous)
            point_link(link, str(release))
        for directory in removed:
            shutil.rmtree(directory)
    diff = {
        "before": {"link": previous or "(none)", "releases": sorted(str(path) for path in removed)},
        "after": {"link": str(release), "releases": []},
    }
    module.exit_json(
        changed=relink or bool(removed), previous=previous, rollback=rollback, removed=[str(path) for path in removed], diff=diff
    )


if __name__ == "__main__":
    main()
