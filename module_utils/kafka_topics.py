# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Topics as code: parse what TopicCommand and ConfigCommand print, and plan the difference to the declared topics.

Pure functions, so the planning can be unit-tested without a cluster; library/kafka_topics.py runs the tools.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class PlanError(Exception):
    """A requested change that Kafka cannot make, or that would lose data."""


@dataclass
class PartitionState:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]


@dataclass
class TopicState:
    name: str
    partition_count: int
    replication_factor: int
    partitions: list[PartitionState] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _fields(line: str) -> dict[str, str]:
    """'Topic: a\tPartition: 0\tLeader: 1' -> {'Topic': 'a', 'Partition': '0', 'Leader': '1'}."""
    result: dict[str, str] = {}
    for chunk in line.strip().split("\t"):
        key, sep, value = chunk.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


def parse_topic_describe(output: str) -> dict[str, TopicState]:
    """Parse `TopicCommand --describe` output into topic states (configs are read separately)."""
    topics: dict[str, TopicState] = {}
    for raw in output.splitlines():
        if not raw.strip():
            continue
        fields = _fields(raw)
        name = fields.get("Topic")
        if name is None:
            continue
        if "Partition" in fields:
            leader = fields.get("Leader", "")
            # Filtered describes (--under-replicated-partitions) print partition lines without a topic header.
            topic = topics.setdefault(name, TopicState(name=name, partition_count=-1, replication_factor=-1))
            topic.partitions.append(
                PartitionState(
                    partition=int(fields["Partition"]),
                    leader=int(leader) if leader.lstrip("-").isdigit() and int(leader) >= 0 else None,
                    replicas=_int_list(fields.get("Replicas", "")),
                    isr=_int_list(fields.get("Isr", "")),
                )
            )
        elif "PartitionCount" in fields:
            topic = topics.setdefault(name, TopicState(name=name, partition_count=-1, replication_factor=-1))
            topic.partition_count = int(fields["PartitionCount"])
            topic.replication_factor = int(fields["ReplicationFactor"])
    return topics


_CONFIG_HEADER = re.compile(r"^(?:Dynamic )?configs for topic (?P<name>\S+) are:$")
_CONFIG_LINE = re.compile(r"^\s+(?P<key>[^=\s]+)=(?P<value>.*?) sensitive=(?:true|false) synonyms=\{.*\}$")


def parse_config_describe(output: str) -> dict[str, dict[str, str]]:
    """Parse `ConfigCommand --describe --entity-type topics`: the dynamic (per-topic) overrides of each topic."""
    configs: dict[str, dict[str, str]] = {}
    current: str | None = None
    for raw in output.splitlines():
        header = _CONFIG_HEADER.match(raw.strip())
        if header:
            current = header.group("name")
            configs.setdefault(current, {})
            continue
        entry = _CONFIG_LINE.match(raw)
        if entry and current is not None:
            configs[current][entry.group("key")] = entry.group("value")
    return configs


def config_value(value: object) -> str:
    """Render a declared config value the way Kafka prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(config_value(item) for item in value)
    return str(value)


@dataclass
class TopicPlan:
    name: str
    create: bool = False
    partitions_from: int | None = None
    partitions_to: int | None = None
    config_changes: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.create or self.partitions_to is not None or bool(self.config_changes)


def plan_topic(desired: dict, current: TopicState | None) -> TopicPlan:
    """Compare one declared topic with the cluster and say what to do; raise PlanError for unsafe requests
    (with the topic's own `hint`, if it declares one, appended)."""
    try:
        return _plan_topic(desired, current)
    except PlanError as error:
        hint = desired.get("hint")
        raise PlanError(f"{error} {hint}" if hint else str(error)) from None


def _plan_topic(desired: dict, current: TopicState | None) -> TopicPlan:
    name = desired["name"]
    partitions = int(desired["partitions"])
    replication = int(desired["replication_factor"])
    declared = {key: config_value(value) for key, value in (desired.get("config") or {}).items()}
    if current is None:
        return TopicPlan(name=name, create=True, partitions_to=partitions, config_changes=declared)
    if partitions < current.partition_count:
        raise PlanError(
            f"topic {name}: refusing to lower partitions from {current.partition_count} to {partitions}. Kafka cannot "
            "remove partitions, and keys would move to other partitions. Keep the declared count at "
            f"{current.partition_count} or more; to really shrink, create a new topic and migrate to it."
        )
    if replication != current.replication_factor:
        direction = "lower" if replication < current.replication_factor else "raise"
        raise PlanError(
            f"topic {name}: refusing to {direction} the replication factor from {current.replication_factor} to "
            f"{replication}. Changing replication moves replicas between brokers; do it with a reviewed "
            "kafka-reassign-partitions plan, then declare the new factor here."
        )
    plan = TopicPlan(name=name)
    if partitions > current.partition_count:
        plan.partitions_from = current.partition_count
        plan.partitions_to = partitions
    plan.config_changes = {key: value for key, value in declared.items() if current.config.get(key) != value}
    return plan


def add_config_argument(changes: dict[str, str]) -> str:
    """`--add-config` value; values holding commas are wrapped in brackets as ConfigCommand requires."""
    return ",".join(f"{key}=[{value}]" if "," in value else f"{key}={value}" for key, value in sorted(changes.items()))
