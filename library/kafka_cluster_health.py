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
options:
  bootstrap_controllers:
    description: Comma-separated host:port list of KRaft controllers.
    type: str
    required: true
  bootstrap_servers:
    description: Comma-separated host:port list of brokers, for the partition checks. Omit to skip them.
    type: str
  kafka_home:
    description: Kafka release directory (contains libs/).
    type: path
    required: true
  java:
    description: Java executable.
    type: path
    default: /usr/bin/java
  command_config:
    description: Client properties file for the brokers' secured listener (passed as --command-config).
    type: path
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
supports_check_mode: true
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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kafka_cli import (
    QUORUM_COMMAND,
    TOPIC_COMMAND,
    java_tool_argv,
    parse_quorum_replication,
    parse_quorum_status,
    parse_topic_describe,
    quorum_describe_args,
    with_command_config,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "bootstrap_controllers": {"type": "str", "required": True},
            "bootstrap_servers": {"type": "str"},
            "kafka_home": {"type": "path", "required": True},
            "java": {"type": "path", "default": "/usr/bin/java"},
            "command_config": {"type": "path"},
            "controller_command_config": {"type": "path"},
            "expected_voters": {"type": "int"},
            "require_node": {"type": "int"},
            "max_lag": {"type": "int", "default": 100},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems: list[str] = []
    controller_config = params["controller_command_config"] or params["command_config"]

    def run(main_class: str, args: list[str]) -> tuple[int, str, str]:
        return module.run_command(java_tool_argv(params["java"], params["kafka_home"], main_class, args))

    calls = [
        (QUORUM_COMMAND, quorum_describe_args(params["bootstrap_controllers"], controller_config, flag))
        for flag in ("--status", "--replication")
    ]
    if params["bootstrap_servers"]:
        topic_args = ["--bootstrap-server", params["bootstrap_servers"], "--describe"]
        calls += [
            (TOPIC_COMMAND, with_command_config([*topic_args, flag], params["command_config"]))
            for flag in ("--under-replicated-partitions", "--unavailable-partitions")
        ]
    # Each call starts a JVM (seconds of CPU): started together, a check takes about as long as its slowest tool.
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        answers = list(pool.map(lambda call: run(*call), calls))

    def output(index: int) -> str | None:
        (main_class, args), (rc, out, err) = calls[index], answers[index]
        if rc != 0:
            problems.append(f"{main_class} {' '.join(args)} failed (rc={rc}): {(err or out).strip()[-400:]}")
            return None
        return out

    status_out = output(0)
    replication_out = output(1)
    status = parse_quorum_status(status_out or "")
    replicas = parse_quorum_replication(replication_out or "")
    leader_id = int(status.get("LeaderId", "-1")) if status.get("LeaderId", "-1").lstrip("-").isdigit() else -1
    voters = [r for r in replicas if r.status in ("Leader", "Follower")]
    observers = [r for r in replicas if r.status == "Observer"]

    if status_out is not None and leader_id < 0:
        problems.append("the KRaft quorum has no leader")
    if replication_out is not None:
        if params["expected_voters"] is not None and len(voters) != params["expected_voters"]:
            problems.append(f"the quorum has {len(voters)} voters, expected {params['expected_voters']}")
        for replica in voters:
            if replica.lag < 0 or replica.lag > params["max_lag"]:
                problems.append(f"voter {replica.node_id} trails the leader by {replica.lag} records")
        if params["require_node"] is not None:
            mine = [r for r in replicas if r.node_id == params["require_node"]]
            if not mine:
                problems.append(f"node {params['require_node']} is not part of the quorum yet")
            elif mine[0].lag < 0 or mine[0].lag > params["max_lag"]:
                problems.append(f"node {params['require_node']} trails the leader by {mine[0].lag} records")

    under_replicated: list[str] = []
    unavailable: list[str] = []
    if params["bootstrap_servers"]:
        for index, bucket in ((2, under_replicated), (3, unavailable)):
            for name, topic in parse_topic_describe(output(index) or "").items():
                bucket.extend(f"{name}:{p.partition}" for p in topic.partitions)
        if under_replicated:
            problems.append(f"{len(under_replicated)} under-replicated partition(s): {', '.join(under_replicated[:10])}")
        if unavailable:
            problems.append(f"{len(unavailable)} partition(s) without a leader: {', '.join(unavailable[:10])}")

    module.exit_json(
        changed=False,
        healthy=not problems,
        problems=problems,
        leader_id=leader_id,
        voters=[asdict(r) for r in voters],
        observers=[asdict(r) for r in observers],
        under_replicated=under_replicated,
        unavailable=unavailable,
    )


if __name__ == "__main__":
    main()
