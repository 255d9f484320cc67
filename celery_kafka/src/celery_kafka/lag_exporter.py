"""Consumer-lag exporter for Kafka 4.x: lag per consumer group, topic and partition, read from the brokers at scrape time.

Why our own: Burrow fails on Kafka 4.0, the kafka-lag-exporter project (Lightbend) is archived, and neither KMinion nor
danielqsj/kafka_exporter can be fetched through the Go module proxy here (docs/facts.md). This exporter only uses
Kafka's admin API (ListGroups, OffsetFetch, ListOffsets) through confluent-kafka, which the worker package already
ships, and names its metrics as kafka_exporter does so dashboards written for it keep working.

With TLS it also reports when each broker's certificate expires (celery_kafka.certificates).

Lag is measured from the broker, not from a consumer: it is there when every worker is stopped, which is exactly when
it matters. A partition the group has never committed on counts from the log start (the worker would start there).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from celery_kafka.certificates import CertificateCollector
from celery_kafka.security import KafkaSecurity, SecurityConfigError

logger = logging.getLogger("celery_kafka_exporter")


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    earliest: int
    latest: int


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    latest: int
    earliest: int

    @property
    def lag(self) -> int:
        start = self.committed if self.committed is not None and self.committed >= 0 else self.earliest
        return max(self.latest - start, 0)


def group_lags(offsets: dict[tuple[str, int], PartitionOffsets], committed: dict[str, dict[tuple[str, int], int]]) -> list[GroupLag]:
    """Lag of every partition of every topic a group has committed on (all its partitions, committed or not)."""
    lags: list[GroupLag] = []
    for group, positions in sorted(committed.items()):
        topics = {topic for topic, _ in positions}
        for (topic, partition), partition_offsets in sorted(offsets.items()):
            if topic in topics:
                lags.append(
                    GroupLag(
                        group=group,
                        topic=topic,
                        partition=partition,
                        committed=positions.get((topic, partition)),
                        latest=partition_offsets.latest,
                        earliest=partition_offsets.earliest,
                    )
                )
    return lags


class KafkaOffsets:
    """Reads topic end offsets and the groups' committed offsets with one admin client."""

    def __init__(
        self,
        bootstrap: str,
        timeout: float,
        group_pattern: re.Pattern[str],
        topic_pattern: re.Pattern[str],
        client_config: dict[str, str] | None = None,
    ) -> None:
        # client_config: security settings (KafkaSecurity.client_config), the same as the workers use.
        self.admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap, "client.id": "celery-kafka-exporter"})
        self.timeout = timeout
        self.group_pattern = group_pattern
        self.topic_pattern = topic_pattern

    def topic_offsets(self) -> dict[tuple[str, int], PartitionOffsets]:
        metadata = self.admin.list_topics(timeout=self.timeout)
        partitions = [
            TopicPartition(name, partition)
            for name, topic in metadata.topics.items()
            if not name.startswith("__") and self.topic_pattern.fullmatch(name) and topic.error is None
            for partition in topic.partitions
        ]
        if not partitions:
            return {}
        latest = self._list_offsets(partitions, OffsetSpec.latest())
        earliest = self._list_offsets(partitions, OffsetSpec.earliest())
        return {key: PartitionOffsets(key[0], key[1], earliest[key], latest[key]) for key in latest if key in earliest}

    def _list_offsets(self, partitions: list[TopicPartition], spec: OffsetSpec) -> dict[tuple[str, int], int]:
        futures = self.admin.list_offsets({tp: spec for tp in partitions}, request_timeout=self.timeout)
        result: dict[tuple[str, int], int] = {}
        for tp, future in futures.items():
            try:
                result[(tp.topic, tp.partition)] = future.result().offset
            except KafkaException as error:
                logger.warning("no offset for %s[%d]: %s", tp.topic, tp.partition, error)
        return result

    def group_names(self) -> list[str]:
        listing = self.admin.list_consumer_groups(request_timeout=self.timeout).result()
        for error in listing.errors:
            logger.warning("listing groups: %s", error)
        return sorted(group.group_id for group in listing.valid if self.group_pattern.fullmatch(group.group_id))

    def committed_offsets(self, groups: Iterable[str]) -> dict[str, dict[tuple[str, int], int]]:
        committed: dict[str, dict[tuple[str, int], int]] = {}
        for group in groups:
            # One group per request: the admin API accepts only one group per OffsetFetch call.
            [future] = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout).values()
            try:
                answer = future.result()
            except KafkaException as error:
                logger.warning("offsets of group %s: %s", group, error)
                continue
            committed[group] = {
                (tp.topic, tp.partition): tp.offset
                for tp in answer.topic_partitions
                if tp.offset >= 0 and self.topic_pattern.fullmatch(tp.topic)
            }
        return committed


class LagCollector(Collector):
    """Asks Kafka at each scrape; a failed scrape says so in celery_kafka_exporter_up instead of serving stale figures."""

    def __init__(self, offsets: KafkaOffsets) -> None:
        self.offsets = offsets
        self.lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            started = time.monotonic()
            up = GaugeMetricFamily("celery_kafka_exporter_up", "1 if the last read of offsets from Kafka worked")
            duration = GaugeMetricFamily("celery_kafka_exporter_scrape_duration_seconds", "Time spent reading offsets from Kafka")
            try:
                topic_offsets = self.offsets.topic_offsets()
                committed = self.offsets.committed_offsets(self.offsets.group_names())
            except KafkaException as error:
                logger.warning("reading offsets failed: %s", error)
                up.add_metric([], 0)
                duration.add_metric([], time.monotonic() - started)
                yield up
                yield duration
                return
            yield from self._families(topic_offsets, group_lags(topic_offsets, committed))
            up.add_metric([], 1)
            duration.add_metric([], time.monotonic() - started)
            yield up
            yield duration

    @staticmethod
    def _families(offsets: dict[tuple[str, int], PartitionOffsets], lags: list[GroupLag]) -> Iterator[GaugeMetricFamily]:
        partition_labels = ["topic", "partition"]
        group_labels = ["consumergroup", "topic", "partition"]
        latest = GaugeMetricFamily("kafka_topic_partition_current_offset", "End offset of the partition", labels=partition_labels)
        oldest = GaugeMetricFamily("kafka_topic_partition_oldest_offset", "First offset still in the partition", labels=partition_labels)
        partitions = GaugeMetricFamily("kafka_topic_partitions", "Partitions of the topic", labels=["topic"])
        per_topic: dict[str, int] = {}
        for (topic, partition), partition_offsets in sorted(offsets.items()):
            latest.add_metric([topic, str(partition)], partition_offsets.latest)
            oldest.add_metric([topic, str(partition)], partition_offsets.earliest)
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, count in sorted(per_topic.items()):
            partitions.add_metric([topic], count)
        current = GaugeMetricFamily(
            "kafka_consumergroup_current_offset", "Offset the group has committed on the partition", labels=group_labels
        )
        lag = GaugeMetricFamily("kafka_consumergroup_lag", "Messages in the partition the group has not committed", labels=group_labels)
        for entry in lags:
            labels = [entry.group, entry.topic, str(entry.partition)]
            if entry.committed is not None:
                current.add_metric(labels, entry.committed)
            lag.add_metric(labels, entry.lag)
        yield from (latest, oldest, partitions, current, lag)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="celery-kafka-exporter",
        description=__doc__.split("\n\n", 1)[0],
        epilog=(
            "Security comes from the environment, as for the workers: CELERY_KAFKA_SECURITY_PROTOCOL (PLAINTEXT, SSL, "
            "SASL_PLAINTEXT, SASL_SSL), CELERY_KAFKA_SASL_MECHANISM, CELERY_KAFKA_SASL_USERNAME, CELERY_KAFKA_SASL_PASSWORD, "
            "CELERY_KAFKA_SSL_CA_LOCATION. The password is never a command-line option (it would show in ps)."
        ),
    )
    parser.add_argument("--bootstrap-servers", required=True, help="host:port[,host:port...] of the brokers")
    parser.add_argument("--listen-address", default="0.0.0.0", help="address to serve /metrics on")
    parser.add_argument("--port", type=int, default=9308, help="port to serve /metrics on (kafka_exporter's port)")
    parser.add_argument("--group-regex", default=".*", help="consumer groups to report (full match)")
    parser.add_argument("--topic-regex", default=".*", help="topics to report (full match; internal topics never)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each Kafka request")
    parser.add_argument(
        "--certificate-refresh", type=float, default=300.0, help="with TLS: seconds between checks of the certificates the brokers serve"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        security = KafkaSecurity.from_environ()
    except SecurityConfigError as error:
        raise SystemExit(f"celery-kafka-exporter: {error}") from None
    registry = CollectorRegistry()
    offsets = KafkaOffsets(
        args.bootstrap_servers, args.timeout, re.compile(args.group_regex), re.compile(args.topic_regex), security.client_config()
    )
    registry.register(LagCollector(offsets))
    if security.uses_tls:
        brokers = [broker for broker in args.bootstrap_servers.split(",") if broker.strip()]
        registry.register(CertificateCollector(brokers, security.ssl_ca_location, args.timeout, args.certificate_refresh))
    server, thread = start_http_server(args.port, addr=args.listen_address, registry=registry)
    logger.info(
        "serving consumer lag of %s (%s) on %s:%d/metrics", args.bootstrap_servers, security.protocol, args.listen_address, args.port
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
