"""Which partitions of which queue each worker host owns, worked out once from the inventory for the celery_worker
role (vars/main.yml, tasks/preflight.yml).

A host consumes one queue (its celery_worker_queue) and owns one partition of it (celery_worker_partition) or several
(celery_worker_partitions, a list). Left unset on every host of a queue, each host owns one partition: its position
among that queue's hosts. Each partition of a queue has exactly one owner; the topic has as many partitions as the
hosts of its queue own together. A partition that moves to another host keeps its number, so no key changes
partition: that is what makes scale-out order-preserving (docs/runbooks.md).

Unit tests: tests/test_worker_partition_filters.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _explicit(variables: Mapping[str, Any]) -> tuple[list[int] | None, str | None]:
    """The partitions a host's variables give it (None when they give none), or what is wrong with them."""
    single = variables.get("celery_worker_partition")
    several = variables.get("celery_worker_partitions")
    if single is not None and several is not None:
        return None, "sets both celery_worker_partition and celery_worker_partitions: keep one"
    if several is not None:
        if isinstance(several, (str, bytes, Mapping)) or not hasattr(several, "__iter__"):
            return None, "celery_worker_partitions must be a list of partition numbers"
        several = list(several)
        if not several or not all(str(item).isdigit() for item in several):
            return None, "celery_worker_partitions must be a non-empty list of partition numbers"
        return [int(item) for item in several], None
    if single is not None:
        if not str(single).isdigit():
            return None, f"celery_worker_partition must be a partition number, not {single!r}"
        return [int(single)], None
    return None, None


def ownership(hosts: list[str], variables: Mapping[str, Mapping[str, Any]], default_queue: str) -> dict[str, Any]:
    """For the worker hosts (in inventory order) and their variables: `hosts` (host -> {queue, partitions}),
    `partitions` (queue -> partition count), `queues` (in order of first appearance) and `errors` (sentences naming
    hosts and partitions; empty when the inventory is consistent)."""
    errors: list[str] = []
    queue_of = {host: str(variables[host].get("celery_worker_queue") or default_queue) for host in hosts}
    queues = list(dict.fromkeys(queue_of.values()))
    owned: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for queue in queues:
        peers = [host for host in hosts if queue_of[host] == queue]
        given: dict[str, list[int] | None] = {}
        for host in peers:
            partitions, problem = _explicit(variables[host])
            if problem:
                errors.append(f"{host} {problem}.")
            given[host] = partitions
        explicit = [host for host in peers if given[host] is not None]
        if explicit and len(explicit) != len(peers):
            unset = ", ".join(host for host in peers if given[host] is None)
            errors.append(
                f"Only some hosts of queue '{queue}' set celery_worker_partition (or celery_worker_partitions); {unset}"
                " do not: set it on all of them or on none."
            )
        for position, host in enumerate(peers):
            owned[host] = {"queue": queue, "partitions": given[host] if given[host] is not None else [position]}
        numbers = [partition for host in peers for partition in owned[host]["partitions"]]
        counts[queue] = len(numbers)
        if sorted(numbers) != list(range(len(numbers))):
            found = ", ".join(f"{host}={_shown(owned[host]['partitions'])}" for host in peers)
            errors.append(
                f"Worker partitions must be 0..{len(numbers) - 1} for queue '{queue}', each owned by exactly one host of"
                f" it; found {found}. A duplicate means two nodes would consume one partition; a gap means a partition"
                " nobody consumes."
            )
    return {"hosts": owned, "partitions": counts, "queues": queues, "errors": errors}


def _shown(partitions: list[int]) -> str:
    return str(partitions[0]) if len(partitions) == 1 else "[" + ", ".join(map(str, partitions)) + "]"


def unit_settings(partitions: list[int], paths: list[str], metrics_port: int | str) -> list[dict[str, str]]:
    """Each worker unit's own settings file (its EnvironmentFile, at the matching path): the port its metrics are
    served on, celery_worker_metrics_port plus the partition's position in the node's list (Prometheus' celery_workers
    job numbers them the same way). In the shape the config_files module takes."""
    return [
        {
            "path": path,
            "content": f"# celery-worker@{partition}.service (managed by Ansible)\n"
            f"CELERY_KAFKA_METRICS_PORT={int(metrics_port) + position}\n",
        }
        for position, (partition, path) in enumerate(zip(partitions, paths, strict=True))
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "celery_worker_ownership": lambda hosts, hostvars, default_queue: ownership(hosts, hostvars, default_queue),
            "celery_worker_unit_settings": unit_settings,
        }
