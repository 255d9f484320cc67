"""What the modules that handle several paths in one run share (directories, config_files): one AnsibleModule with
ansible.builtin.file's attributes, and one result listing the paths that changed, with a diff per path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def file_batch_module(argument_spec: dict[str, Any]) -> AnsibleModule:
    """owner, group, mode (and the rest of ansible.builtin.file's attributes) apply to every path."""
    return AnsibleModule(argument_spec=argument_spec, add_file_common_args=True, supports_check_mode=True)


# What an item (a directory, a file) may set for itself instead of the module-wide option.
OWN_ATTRIBUTES = ("owner", "group", "mode")


def attributes_for(module: AnsibleModule, item: dict, path: str) -> dict:
    """ansible.builtin.file's attributes for `path`: the module's, with the item's own owner, group and mode."""
    attributes = module.load_file_common_arguments(module.params, path=path)
    attributes.update({name: item[name] for name in OWN_ATTRIBUTES if item.get(name) is not None})
    return attributes


def exit_with_each(
    module: AnsibleModule, items: Iterable[Any], ensure: Callable[[AnsibleModule, Any], tuple[bool, dict]], path_of: Callable[[Any], str]
) -> None:
    """Run `ensure` on each item in order; exit with changed_paths and their diffs."""
    changed_paths = []
    diffs = []
    for item in items:
        changed, diff = ensure(module, item)
        if changed:
            changed_paths.append(path_of(item))
            diffs.append(diff)
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, diff=diffs)
