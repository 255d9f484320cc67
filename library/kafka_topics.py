#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: declare Kafka topics as code."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_topics
short_description: Create Kafka topics, raise their partition counts and set their configs
description:
  - Compares the declared topics with the cluster and creates missing topics, raises partition counts and sets
    per-topic configs. Topics not declared are left alone, as are configs not declared.
  - Refuses, with an explanation and before changing anything, to lower a partition count or to change a
    replication factor.
  - Runs on a Kafka node and uses Kafka's own admin tools from the release's libs directory (Java only).
extends_documentation_fragment:
  - kafka_admin_tool
  - kafka_admin_tool.kafka_home
options:
  topics:
    description: Declared topics.
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: Topic name., type: str, required: true}
      partitions: {description: Partition count; may only grow., type: int, required: true}
      replication_factor: {description: Replication factor; fixed once created., type: int, required: true}
      config: {description: Per-topic configs such as retention.ms., type: dict, default: {}}
      hint: {description: Sentence added to a refusal for this topic (what the operator should do instead)., type: str}
  bootstrap_servers:
    description: Comma-separated host:port list of brokers.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Declare the task topics
  kafka_topics:
    bootstrap_servers: kafka1:9091,kafka2:9091
    kafka_home: /opt/kafka/current
    topics:
      - name: celery.tasks
        partitions: 3
        replication_factor: 3
      - name: celery.tasks.dlq
        partitions: 1
        replication_factor: 3
        config:
          retention.ms: 604800000
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), one line per change.
  type: list
  elements: str
  returned: always
topics:
  description: State of each declared topic after the run (partition count, replication factor, overrides).
  type: dict
  returned: success
refused:
  description: True when the module failed because a declared change is unsafe (not because Kafka was unreachable).
  type: bool
  returned: failure
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kafka_cli import (
    ADMIN_TOOL_OPTIONS,
    CONFIG_COMMAND_CANDIDATES,
    TOPIC_COMMAND,
    find_main_class,
    run_admin_tool,
    run_admin_tools,
)
from ansible.module_utils.kafka_topics import PlanError, add_config_argument, parse_config_describe, parse_topic_describe, plan_topic


def config_command(module: AnsibleModule) -> str:
    main_class = find_main_class(module.params["kafka_home"], CONFIG_COMMAND_CANDIDATES)
    if main_class is None:
        module.fail_json(msg=f"no ConfigCommand ({', '.join(CONFIG_COMMAND_CANDIDATES)}) in {module.params['kafka_home']}/libs")
    return main_class


def read_cluster(module: AnsibleModule, names: list[str]):
    # One describe of each kind for all declared topics, side by side: every tool call starts a JVM.
    topics_out, configs_out = run_admin_tools(
        module,
        [(TOPIC_COMMAND, ["--describe", "--exclude-internal"]), (config_command(module), ["--describe", "--entity-type", "topics"])],
    )
    described, configs = parse_topic_describe(topics_out), parse_config_describe(configs_out)
    for name in names:
        if name in described:
            described[name].config = configs.get(name, {})
    return {name: described.get(name) for name in names}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "topics": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "partitions": {"type": "int", "required": True},
                    "replication_factor": {"type": "int", "required": True},
                    "config": {"type": "dict", "default": {}},
                    "hint": {"type": "str"},
                },
            },
            "bootstrap_servers": {"type": "str", "required": True},
            **ADMIN_TOOL_OPTIONS,
            "kafka_home": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    declared = module.params["topics"]
    names = [topic["name"] for topic in declared]
    if len(set(names)) != len(names):
        module.fail_json(msg=f"topics are declared more than once: {sorted({n for n in names if names.count(n) > 1})}")

    current = read_cluster(module, names)
    try:
        # Plan everything first: one refused topic means nothing at all is changed.
        plans = [plan_topic(topic, current[topic["name"]]) for topic in declared]
    except PlanError as error:
        module.fail_json(msg=str(error), refused=True)

    actions: list[str] = []
    for topic, plan in zip(declared, plans, strict=True):
        if plan.create:
            actions.append(f"create {plan.name} with {plan.partitions_to} partitions, replication {topic['replication_factor']}")
            args = ["--create", "--topic", plan.name, "--partitions", str(plan.partitions_to)]
            args += ["--replication-factor", str(topic["replication_factor"])]
            for key, value in sorted(plan.config_changes.items()):
                args += ["--config", f"{key}={value}"]
            if not module.check_mode:
                run_admin_tool(module, TOPIC_COMMAND, args)
            continue
        if plan.partitions_to is not None:
            actions.append(f"raise {plan.name} partitions from {plan.partitions_from} to {plan.partitions_to}")
            if not module.check_mode:
                run_admin_tool(module, TOPIC_COMMAND, ["--alter", "--topic", plan.name, "--partitions", str(plan.partitions_to)])
        if plan.config_changes:
            actions.append(f"set {plan.name} config {add_config_argument(plan.config_changes)}")
            if not module.check_mode:
                args = ["--alter", "--entity-type", "topics", "--entity-name", plan.name]
                run_admin_tool(module, config_command(module), [*args, "--add-config", add_config_argument(plan.config_changes)])

    final = current if (module.check_mode or not actions) else read_cluster(module, names)
    summary = {
        name: None
        if state is None
        else {
            "partitions": state.partition_count,
            "replication_factor": state.replication_factor,
            "config": state.config,
        }
        for name, state in final.items()
    }
    module.exit_json(changed=bool(actions), actions=actions, topics=summary)


if __name__ == "__main__":
    main()
