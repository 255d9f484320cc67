#!/usr/bin/env python3
"""Grafana dashboards of the stack, as code: `python scripts/dashboards.py` writes monitoring/dashboards/*.json.

The JSON files are committed (the grafana role copies them); tests/test_dashboards.py fails when they differ from
what this script writes, and checks every query with promtool. Panels use only the datasource the role provisions
(uid `prometheus`) and Grafana's $__rate_interval, so every query can also be run as is against Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "monitoring" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"


@dataclass
class Query:
    expr: str
    legend: str = ""


@dataclass
class Panel:
    title: str
    queries: list[Query]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: list[tuple[float, str]] = field(default_factory=list)
    max_value: float | None = None


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.max_value is not None:
        defaults["max"] = panel.max_value
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": query.expr, "legendFormat": query.legend or "__auto"}
            for index, query in enumerate(panel.queries)
        ],
    }
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "background"}
    else:
        body["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}}
    return body


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    laid_out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["kafka-celery-stack"],
        "editable": False,
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": laid_out,
    }


def kafka_cluster() -> dict[str, Any]:
    return dashboard(
        "kcs-kafka-cluster",
        "Kafka cluster",
        "Brokers, the KRaft controller quorum, partition health, traffic and request latency.",
        [
            Panel("Kafka nodes up", [Query('sum(up{job="kafka"})')], kind="stat", width=4, height=4),
            Panel(
                "Active controllers (must be 1)",
                [Query("sum(kafka_controller_kafkacontroller_activecontrollercount)")],
                kind="stat",
                width=4,
                height=4,
                thresholds=[(2, "red")],
            ),
            Panel(
                "Under-replicated partitions",
                [Query("sum(kafka_server_replicamanager_underreplicatedpartitions)")],
                kind="stat",
                width=4,
                height=4,
                thresholds=[(1, "orange")],
            ),
            Panel(
                "Under min ISR partitions",
                [Query("sum(kafka_server_replicamanager_underminisrpartitioncount)")],
                kind="stat",
                width=4,
                height=4,
                thresholds=[(1, "red")],
            ),
            Panel(
                "Offline partitions",
                [Query("max(kafka_controller_kafkacontroller_offlinepartitionscount)")],
                kind="stat",
                width=4,
                height=4,
                thresholds=[(1, "red")],
            ),
            Panel(
                "Fenced brokers",
                [Query("max(kafka_controller_kafkacontroller_fencedbrokercount)")],
                kind="stat",
                width=4,
                height=4,
                thresholds=[(1, "orange")],
            ),
            Panel(
                "Broker state (3 = running)",
                [Query("kafka_server_kafkaserver_brokerstate", "{{instance}}")],
                description="0 not running, 1 starting, 2 recovering, 3 running, 6 pending controlled shutdown, 7 shutting down.",
            ),
            Panel(
                "KRaft quorum: role of each node",
                [Query("kafka_server_raft_metrics_current_state == 1", "{{instance}} {{state}}")],
                description="Exactly one leader; the other controllers are followers, brokers observers.",
            ),
            Panel(
                "KRaft metadata log: high watermark",
                [Query("kafka_server_raft_metrics_high_watermark", "{{instance}}")],
                description="Every node should follow the leader closely.",
            ),
            Panel(
                "Partitions and leaders per broker",
                [
                    Query("kafka_server_replicamanager_partitioncount", "partitions {{instance}}"),
                    Query("kafka_server_replicamanager_leadercount", "leaders {{instance}}"),
                ],
            ),
            Panel(
                "Bytes in / out",
                [
                    Query(f"sum by (instance) (rate(kafka_server_brokertopicmetrics_bytesin_total[{RATE}]))", "in {{instance}}"),
                    Query(f"sum by (instance) (rate(kafka_server_brokertopicmetrics_bytesout_total[{RATE}]))", "out {{instance}}"),
                ],
                unit="Bps",
            ),
            Panel(
                "Messages in",
                [Query(f"sum by (instance) (rate(kafka_server_brokertopicmetrics_messagesin_total[{RATE}]))", "{{instance}}")],
                unit="short",
            ),
            Panel(
                "Produce latency (p99)",
                [Query('max by (instance) (kafka_network_requestmetrics_totaltimems{request="Produce",quantile="0.99"})', "{{instance}}")],
                unit="ms",
            ),
            Panel(
                "Fetch latency (p99)",
                [
                    Query(
                        'max by (instance) (kafka_network_requestmetrics_totaltimems{request="FetchConsumer",quantile="0.99"})',
                        "consumer {{instance}}",
                    ),
                    Query(
                        'max by (instance) (kafka_network_requestmetrics_totaltimems{request="FetchFollower",quantile="0.99"})',
                        "follower {{instance}}",
                    ),
                ],
                unit="ms",
            ),
            Panel(
                "Requests per second",
                [Query(f"sum by (request) (rate(kafka_network_requestmetrics_requests_total[{RATE}]))", "{{request}}")],
                unit="reqps",
            ),
            Panel(
                "Request handler idle",
                [Query("kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent", "{{instance}}")],
                unit="percentunit",
                description="Below 0.3 the broker is short of request threads.",
            ),
        ],
    )


def celery_tasks() -> dict[str, Any]:
    return dashboard(
        "kcs-celery-tasks",
        "Celery tasks",
        "Tasks run by the worker nodes: throughput, failures, retries, dead letters, run time and work in flight.",
        [
            Panel("Worker nodes up", [Query('sum(up{job="celery_workers"})')], kind="stat", width=6, height=4),
            Panel(
                "Tasks in flight",
                [Query("sum(celery_kafka_tasks_in_flight)")],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Failure ratio (10m)",
                [
                    Query(
                        "sum(increase(celery_kafka_tasks_failed_total[10m])) / clamp_min("
                        "sum(increase(celery_kafka_tasks_succeeded_total[10m])) + sum(increase(celery_kafka_tasks_failed_total[10m])), 1)"
                    )
                ],
                kind="stat",
                unit="percentunit",
                width=6,
                height=4,
                thresholds=[(0.05, "red")],
            ),
            Panel(
                "Dead letters (1h)",
                [Query("sum(increase(celery_kafka_tasks_dead_lettered_total[1h]))")],
                kind="stat",
                width=6,
                height=4,
                thresholds=[(1, "orange")],
            ),
            Panel(
                "Tasks succeeded per second, by queue and task",
                [Query(f"sum by (queue, task) (rate(celery_kafka_tasks_succeeded_total[{RATE}]))", "{{queue}} {{task}}")],
                unit="ops",
            ),
            Panel(
                "Tasks received per second, by queue and worker",
                [Query(f"sum by (queue, instance) (rate(celery_kafka_tasks_received_total[{RATE}]))", "{{queue}} {{instance}}")],
                unit="ops",
            ),
            Panel(
                "Failures and retries per second",
                [
                    Query(f"sum by (queue, task) (rate(celery_kafka_tasks_failed_total[{RATE}]))", "failed {{queue}} {{task}}"),
                    Query(f"sum by (queue, task) (rate(celery_kafka_tasks_retried_total[{RATE}]))", "retried {{queue}} {{task}}"),
                ],
                unit="ops",
            ),
            Panel(
                "Dead letters per second, by reason",
                [Query(f"sum by (kind) (rate(celery_kafka_tasks_dead_lettered_total[{RATE}]))", "{{kind}}")],
                unit="ops",
            ),
            Panel(
                "Task run time percentiles, by queue",
                [
                    Query(
                        f"histogram_quantile({quantile}, sum by (queue, le) (rate(celery_kafka_task_runtime_seconds_bucket[{RATE}])))",
                        f"p{label} {{{{queue}}}}",
                    )
                    for quantile, label in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
                ],
                unit="s",
            ),
            Panel(
                "Tasks in flight, by worker",
                [Query("celery_kafka_tasks_in_flight", "{{instance}}")],
            ),
        ],
    )


def consumer_lag() -> dict[str, Any]:
    return dashboard(
        "kcs-consumer-lag",
        "Consumer lag",
        "Messages not yet processed, per consumer group and partition, read from the brokers (celery-kafka-exporter).",
        [
            Panel(
                "Lag per partition",
                [Query("kafka_consumergroup_lag", "{{consumergroup}} {{topic}}[{{partition}}]")],
                width=24,
                thresholds=[(1000, "red")],
            ),
            Panel(
                "Total lag per group",
                [Query("sum by (consumergroup, topic) (kafka_consumergroup_lag)", "{{consumergroup}} {{topic}}")],
            ),
            Panel(
                "Lag exporter reads Kafka",
                [Query("celery_kafka_exporter_up", "{{instance}}")],
                description="1 when the last read of offsets from the brokers worked.",
            ),
            Panel(
                "Produced per second, per partition",
                [Query(f"sum by (topic, partition) (rate(kafka_topic_partition_current_offset[{RATE}]))", "{{topic}}[{{partition}}]")],
                unit="ops",
            ),
            Panel(
                "Committed per second, per partition",
                [
                    Query(
                        f"sum by (consumergroup, topic, partition) (rate(kafka_consumergroup_current_offset[{RATE}]))",
                        "{{consumergroup}} {{topic}}[{{partition}}]",
                    )
                ],
                unit="ops",
            ),
        ],
    )


def worker_memory() -> dict[str, Any]:
    return dashboard(
        "kcs-worker-memory",
        "Worker memory",
        "Memory of each worker node's systemd unit against its MemoryMax; the kernel kills the worker at the limit.",
        [
            Panel(
                "Memory used / limit",
                [Query("celery_kafka_memory_usage_bytes / celery_kafka_memory_limit_bytes", "{{instance}}")],
                unit="percentunit",
                width=24,
                thresholds=[(0.9, "red")],
                max_value=1,
            ),
            Panel(
                "Memory used and limit",
                [
                    Query("celery_kafka_memory_usage_bytes", "used {{instance}}"),
                    Query("celery_kafka_memory_limit_bytes", "limit {{instance}}"),
                ],
                unit="bytes",
            ),
            Panel(
                "Worker restarts (process start time changes)",
                [Query('changes(process_start_time_seconds{job="celery_workers"}[1h])', "{{instance}}")],
                description="A restart after an OOM kill shows here; the journal says status=9/KILL.",
            ),
        ],
    )


def hosts() -> dict[str, Any]:
    return dashboard(
        "kcs-hosts",
        "Hosts",
        "Every host of the inventory, from node_exporter.",
        [
            Panel("Hosts up", [Query('sum(up{job="node"})')], kind="stat", width=6, height=4),
            Panel("Load (1m)", [Query("node_load1", "{{instance}}")], width=18, height=4),
            Panel(
                "CPU busy",
                [Query(f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE}]))', "{{instance}}")],
                unit="percentunit",
            ),
            Panel(
                "Memory available",
                [Query("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "{{instance}}")],
                unit="percentunit",
            ),
            Panel(
                "Filesystem space available",
                [
                    Query(
                        'min by (instance) (node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs"}'
                        ' / node_filesystem_size_bytes{fstype!~"tmpfs|ramfs"})',
                        "{{instance}}",
                    )
                ],
                unit="percentunit",
            ),
            Panel(
                "Network received / sent",
                [
                    Query(f'sum by (instance) (rate(node_network_receive_bytes_total{{device!="lo"}}[{RATE}]))', "in {{instance}}"),
                    Query(f'sum by (instance) (rate(node_network_transmit_bytes_total{{device!="lo"}}[{RATE}]))', "out {{instance}}"),
                ],
                unit="Bps",
            ),
        ],
    )


DASHBOARDS = {
    "kafka-cluster.json": kafka_cluster,
    "celery-tasks.json": celery_tasks,
    "consumer-lag.json": consumer_lag,
    "worker-memory.json": worker_memory,
    "hosts.json": hosts,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUTPUT / name).write_text(render(build))
        print(OUTPUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
