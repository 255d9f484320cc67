"""Prometheus metrics of a worker node, served on its own HTTP endpoint (Celery events cannot travel over Kafka)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from celery_kafka.cgroup import read_memory

# `queue`: the queue (Kafka topic) the task came from, so one lagging or failing queue shows as such.
TASKS_RECEIVED = Counter("celery_kafka_tasks_received", "Tasks handed to this worker", ["queue", "task"])
TASKS_SUCCEEDED = Counter("celery_kafka_tasks_succeeded", "Tasks that finished successfully", ["queue", "task"])
TASKS_FAILED = Counter("celery_kafka_tasks_failed", "Tasks that failed for the last time (no retry left)", ["queue", "task"])
TASKS_RETRIED = Counter("celery_kafka_tasks_retried", "Task failures that were retried", ["queue", "task"])
DEAD_LETTERED = Counter("celery_kafka_tasks_dead_lettered", "Messages written to the dead-letter topic", ["kind"])
TASK_RUNTIME = Histogram(
    "celery_kafka_task_runtime_seconds",
    "Task run time",
    ["queue", "task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TASKS_IN_FLIGHT = Gauge("celery_kafka_tasks_in_flight", "Tasks running now", multiprocess_mode="livesum")


class PartitionCollector(Collector):
    """At scrape time: the partition each consumer owns, its committed offset and its lag, and the cgroup memory."""

    def __init__(self) -> None:
        self.channels: list[Any] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        owned = GaugeMetricFamily("celery_kafka_worker_partition", "Partition this worker node owns", labels=["topic"])
        committed = GaugeMetricFamily(
            "celery_kafka_committed_offset", "Offset committed for the owned partition", labels=["topic", "partition"]
        )
        lag = GaugeMetricFamily("celery_kafka_consumer_lag", "Messages in the owned partition not yet done", labels=["topic", "partition"])
        for channel in list(self.channels):
            for (topic, partition), position in channel.partition_positions().items():
                owned.add_metric([topic], partition)
                if position.committed is not None:
                    committed.add_metric([topic, str(partition)], position.committed)
                high = channel.high_watermark(topic, partition)
                if high is not None and position.committed is not None:
                    lag.add_metric([topic, str(partition)], max(high - position.committed, 0))
        yield owned
        yield committed
        yield lag
        memory = read_memory()
        usage = GaugeMetricFamily("celery_kafka_memory_usage_bytes", "Memory used by the worker's cgroup (the systemd unit)")
        limit = GaugeMetricFamily("celery_kafka_memory_limit_bytes", "Memory limit of the worker's cgroup (MemoryMax)")
        if memory.usage_bytes is not None:
            usage.add_metric([], memory.usage_bytes)
        if memory.limit_bytes is not None:
            limit.add_metric([], memory.limit_bytes)
        yield usage
        yield limit


PARTITIONS = PartitionCollector()
REGISTRY.register(PARTITIONS)


def served_registry() -> CollectorRegistry:
    """What the worker's endpoint serves: this process's metrics, or, with a prefork pool (PROMETHEUS_MULTIPROC_DIR
    set), the task metrics of every pool child summed, plus the partition and memory gauges of this process."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(PARTITIONS)
    return registry
