#!/usr/bin/python
# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Ansible module: report KRaft quorum and partition replication health."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_cluster_health
short_description: Report the health of a KRaft Kafka cluster
description:
  - Reads the KRaft quorum (leader, voters, observers and how far each trails the leader) and the partitions that are
    under-replicated or have no leader, using Kafka's own admin tools from the release's libs directory.
  - Never changes anything and never fails because the cluster is unhealthy; it returns C(healthy) and C(problems)
    so a task can wait with C(until) or fail with C(failed_when).
extends_documentation_fragment:
  - kafka_admin_tool
  - kafka_admin_tool.kafka_home
options:
  bootstrap_controllers:
    description: Comma-separated host:port list of KRaft controllers.
    type: str
    required: true
  bootstrap_servers:
    description: Comma-separated host:port list of brokers, for the partition checks. Omit to skip them.
    type: str
  controller_command_config:
    description:
      - Client properties file for the controllers' listener (mutual TLS, for instance).
      - Defaults to O(command_config).
    type: path
  expected_voters:
    description: Number of voters the quorum must have.
    type: int
  require_node:
    description: Node id that must be part of the quorum (voter or observer) and caught up.
    type: int
  max_lag:
    description: Metadata records a replica may trail the leader and still count as caught up.
    type: int
    default: 100
"""

EXAMPLES = r"""
- name: Wait until the cluster is healthy again
  kafka_cluster_health:
    bootstrap_controllers: kafka1:9093,kafka2:9093,kafka3:9093
    bootstrap_servers: kafka1:9091,kafka2:9091,kafka3:9091
    kafka_home: /opt/kafka/current
    expected_voters: 3
    require_node: 2
  register: health
  until: health.healthy
  retries: 60
  delay: 5
"""

RETURN = r"""
healthy: {description: True when no problem was found., type: bool, returned: always}
problems: {description: What is wrong, one sentence each., type: list, elements: str, returned: always}
leader_id: {description: Node id of the quorum leader, or -1., type: int, returned: always}
voters: {description: Voter rows (node_id, log_end_offset, lag, status)., type: list, returned: always}
observers: {description: Observer rows (brokers in dedicated-controller mode)., type: list, returned: always}
under_replicated: {description: topic:partition entries with fewer in-sync replicas than replicas., type: list, returned: always}
unavailable: {description: topic:partition entries without a leader., type: list, returned: always}
"""

from dataclasses import asdict

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kafka_cli import (
    ADMIN_TOOL_OPTIONS,
    QUORUM_COMMAND,
    TOPIC_COMMAND,
    quorum_describe_args,
    run_java_tools,
    with_command_config,
)
from ansible.module_utils.kafka_cluster_health import assess_health, parse_quorum_replication
from ansible.module_utils.kafka_topics import parse_topic_describe


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "bootstrap_controllers": {"type": "str", "required": True},
            "bootstrap_servers": {"type": "str"},
            **ADMIN_TOOL_OPTIONS,
            "kafka_home": {"type": "path", "required": True},
            "controller_command_config": {"type": "path"},
            "expected_voters": {"type": "int"},
            "require_node": {"type": "int"},
            "max_lag": {"type": "int", "default": 100},
        },
        supports_check_mode=True,
    )
    params = module.params
    controller_config = params["controller_command_config"] or params["command_config"]
    # Two tools answer everything: the quorum's replication rows (the leader among them) and one unfiltered describe
    # of every partition (its leader, replicas and ISR). Each starts a JVM, so they run side by side.
    calls = [(QUORUM_COMMAND, quorum_describe_args(params["bootstrap_controllers"], controller_config, "--replication"))]
    if params["bootstrap_servers"]:
        describe = ["--bootstrap-server", params["bootstrap_servers"], "--describe"]
        calls.append((TOPIC_COMMAND, with_command_config(describe, params["command_config"])))
    answers = run_java_tools(module, calls)

    failures = [
        f"{main_class} {' '.join(args)} failed (rc={rc}): {(err or out).strip()[-400:]}"
        for (main_class, args), (rc, out, err) in zip(calls, answers, strict=True)
        if rc != 0
    ]
    replicas = parse_quorum_replication(answers[0][1]) if answers[0][0] == 0 else None
    topics = parse_topic_describe(answers[1][1]) if len(answers) > 1 and answers[1][0] == 0 else None
    problems, under_replicated, unavailable = assess_health(
        replicas,
        topics,
        expected_voters=params["expected_voters"],
        require_node=params["require_node"],
        max_lag=params["max_lag"],
    )
    replicas = replicas or []
    leaders = [r.node_id for r in replicas if r.status == "Leader"]
    module.exit_json(
        changed=False,
        healthy=not (failures or problems),
        problems=failures + problems,
        leader_id=leaders[0] if leaders else -1,
        voters=[asdict(r) for r in replicas if r.status in ("Leader", "Follower")],
        observers=[asdict(r) for r in replicas if r.status == "Observer"],
        under_replicated=under_replicated,
        unavailable=unavailable,
    )


if __name__ == "__main__":
    main()
