#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: Kafka ACLs as code."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_acls
short_description: Keep the ALLOW ACLs of the declared principals exactly as declared
description:
  - Adds each declared binding (principal, host, operation on a resource pattern) that the cluster lacks, and removes
    the ALLOW bindings of a declared principal that are no longer declared. Principals that appear in no declaration
    are left alone; DENY bindings are never touched.
  - Needs an authorizer on the cluster (authorizer.class.name) and an admin client allowed to alter ACLs (a super user).
  - Every declaration is checked before anything changes; with I(validate_only) nothing else is done, so a preflight
    can refuse bad input without a cluster.
  - One AclCommand call lists the ACLs; a change costs one call per principal and resource pattern.
extends_documentation_fragment:
  - kafka_admin_tool
options:
  acls:
    description: Declared ACLs.
    type: list
    elements: dict
    required: true
    suboptions:
      principal: {description: "User:<name> (a SCRAM user, or the certificate's principal).", type: str, required: true}
      resource_type: {description: Resource type., type: str, required: true, choices: [topic, group, cluster, transactional_id]}
      name: {description: "Resource name, or '*' for all; unused for the cluster.", type: str}
      pattern_type: {description: "literal, or prefixed (every name starting with name).", type: str, default: literal}
      operations: {description: "Operations allowed, e.g. [Read, Describe].", type: list, elements: str, required: true}
      host: {description: Client host the binding applies to., type: str, default: "*"}
  validate_only:
    description: Check the declarations and stop; no Kafka call.
    type: bool
    default: false
  bootstrap_servers:
    description: Comma-separated host:port list of brokers (required unless validate_only).
    type: str
  kafka_home:
    description: Kafka release directory (contains libs/; required unless validate_only).
    type: path
"""

EXAMPLES = r"""
- name: Workers read their queue and commit as their group
  kafka_acls:
    acls:
      - {principal: "User:celery", resource_type: topic, name: celery.tasks, operations: [Read, Describe]}
      - {principal: "User:celery", resource_type: group, name: celery.tasks.workers, operations: [Read]}
    bootstrap_servers: kafka1:9091
    command_config: /etc/kafka/admin-client.properties
    kafka_home: /opt/kafka/current
"""

RETURN = r"""
added: {description: Bindings added (or to add in check mode)., type: list, returned: always}
removed: {description: Bindings removed (or to remove in check mode)., type: list, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kafka_acls import (
    ACL_COMMAND_CANDIDATES,
    command_groups,
    declared_problems,
    expand,
    parse_acl_list,
    plan_acls,
)
from ansible.module_utils.kafka_cli import ADMIN_TOOL_OPTIONS, find_main_class, run_admin_tool


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "acls": {"type": "list", "elements": "dict", "required": True},
            "validate_only": {"type": "bool", "default": False},
            "bootstrap_servers": {"type": "str"},
            **ADMIN_TOOL_OPTIONS,
            "kafka_home": {"type": "path"},
        },
        required_if=[("validate_only", False, ("bootstrap_servers", "kafka_home"))],
        supports_check_mode=True,
    )
    declared = module.params["acls"]
    problems = declared_problems(declared)
    if problems:
        module.fail_json(msg="Refused ACLs (nothing was changed): " + "; ".join(problems), problems=problems)
    if module.params["validate_only"]:
        module.exit_json(changed=False, added=[], removed=[])

    main_class = find_main_class(module.params["kafka_home"], ACL_COMMAND_CANDIDATES)
    if main_class is None:
        module.fail_json(msg=f"no AclCommand ({', '.join(ACL_COMMAND_CANDIDATES)}) in {module.params['kafka_home']}/libs")
    desired = expand(declared)
    current, _denied = parse_acl_list(run_admin_tool(module, main_class, ["--list"]))
    plan = plan_acls(desired, current, {binding.principal for binding in desired})
    if not module.check_mode:
        # Additions first: a binding that moves (another host, say) is never missing in between.
        for args in command_groups(plan.add):
            run_admin_tool(module, main_class, ["--add", *args])
        for args in command_groups(plan.remove):
            run_admin_tool(module, main_class, ["--remove", "--force", *args])
    module.exit_json(
        changed=bool(plan.add or plan.remove),
        added=[binding.describe() for binding in plan.add],
        removed=[binding.describe() for binding in plan.remove],
    )


if __name__ == "__main__":
    main()
