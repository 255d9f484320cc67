"""The project-wide wiring that playbooks/group_vars/all.yml derives from the inventory: where clients reach the
brokers, and how many partitions each queue topic has. Ansible loads this file for every playbook in playbooks/
(site.yml imports them), so the roles get plain lists and numbers through their own variables.

Unit tests: tests/test_stack_wiring_filters.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any


def kafka_bootstrap_servers(
    hosts: list[str], hostvars: Mapping[str, Mapping[str, Any]], port_variable: str, default_port: int
) -> list[str]:
    """host:port of each broker host, in inventory order: its kafka_listener_host (else its inventory name) and its
    `port_variable` (else `default_port`, the kafka role's default for that listener)."""
    servers = []
    for host in hosts:
        variables = hostvars[host]
        address = variables.get("kafka_listener_host") or host
        servers.append(f"{address}:{variables.get(port_variable) or default_port}")
    return servers


def queue_partition_counts(
    hosts: list[str], hostvars: Mapping[str, Mapping[str, Any]], task_topic: str, task_topic_default: int = 3
) -> dict[str, int]:
    """Partitions of each queue topic: as many as the worker hosts consuming it (celery_worker_queue, else
    `task_topic`) own together, one each (celery_worker_partition, or unset) or several (celery_worker_partitions).
    The task topic keeps `task_topic_default` while no worker host consumes it."""
    owned: Counter[str] = Counter()
    for host in hosts:
        variables = hostvars[host]
        queue = variables.get("celery_worker_queue") or task_topic
        owned[queue] += len(variables.get("celery_worker_partitions") or [0])
    return {task_topic: task_topic_default, **owned}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kafka_bootstrap_servers": kafka_bootstrap_servers, "queue_partition_counts": queue_partition_counts}
