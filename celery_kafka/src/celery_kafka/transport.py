"""A kombu transport for Celery on Kafka with static partition ownership, built on kombu's confluentkafka transport.

What it changes, and why:

* bootstrap from every broker in the URL (``partitionedkafka://k1:9092;partitionedkafka://k2:9092``), not only the
  first host;
* one producer with ``acks=all``, idempotence and retries (producing.py); a task's partition key (header
  ``partition_key``) is the record key and Kafka's murmur2 partitioner maps it, so the same key always lands on the
  same partition; ``_put`` returns only once the brokers acknowledged the record, unless the caller opened a
  ``deferred_acks()`` block: then records are batched (own producer, ``linger.ms`` > 0) and the block's exit waits
  for every acknowledgement and raises DeliveryFailed naming each record that was not acknowledged;
* a worker started with transport option ``partition`` consumes exactly that partition by ``assign()`` (no group
  rebalancing: no other worker can take it over) and resumes from the offset committed for it;
* an ack commits exactly ``offset + 1`` of the acked message (never "whatever was consumed"), and never past a
  message still in flight (offsets.py); with Celery's ``acks_late`` that happens after the task finished. The ack's
  commit rides on the next message's attempt commit, or is stored after one empty poll: one synchronous commit per
  task instead of two;
* before a message is handed to the worker, its delivery attempt is recorded, and so is every ack: with transport
  option ``journal_dir`` in the node's journal (journal.py), a line in a local file, while the offset (with the
  attempts of the messages in flight and, with a concurrent pool, the offsets after it that already finished, in the
  commit metadata) is committed asynchronously at most every ``commit_interval_seconds``; without a journal, by a
  synchronous commit before each task. A worker killed mid-task (OOM) restarts from the commit plus its journal and
  knows how often each message was already tried and which already finished (committing.py); past ``max_deliveries``
  the message goes to the dead-letter topic instead of killing the worker again;
* a message given back by the worker (Celery requeues it when a pool child dies running it) is delivered again from
  memory, with its attempt counted, without rewinding the partition: messages after it that are running in other
  pool children are not read twice;
* a record that is not a Celery JSON message goes to the dead-letter topic and the worker goes on;
* topics are never created here: they are declared (partitions, replication) by the Ansible kafka_topics role.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from kombu.transport import TRANSPORT_ALIASES, confluentkafka
from kombu.utils.json import dumps

from celery_kafka import metrics
from celery_kafka.committing import COORDINATOR_NOT_READY, PartitionCommits, retry_while_coordinator_moves
from celery_kafka.deadletter import REDELIVERY_LIMIT, UNDECODABLE, DeadLetter, letter_for
from celery_kafka.delivery import Delivery, hand_out, take_back
from celery_kafka.delivery import delivery_of as delivery_of  # re-exported: its import path before 0.2
from celery_kafka.envelope import PARTITION_KEY_HEADER, TaskMessage, UndecodableMessage, decode_envelope, task_message
from celery_kafka.offsets import PartitionPositions
from celery_kafka.producing import DurableProducers
from celery_kafka.publishing import current_deferred
from celery_kafka.publishing import deferred_acks as deferred_acks  # re-exported: its import path before 0.2

logger = logging.getLogger(__name__)

SCHEME = "partitionedkafka"
DEFAULT_PORT = 9092


def bootstrap_servers(hosts: list[tuple[str, int | None]]) -> str:
    """'host:port,...' of every broker named in the connection URL (failover list included), without repeats."""
    seen: list[str] = []
    for host, port in hosts:
        entry = f"{host}:{port or DEFAULT_PORT}"
        if entry not in seen:
            seen.append(entry)
    return ",".join(seen)


class QoS(confluentkafka.QoS):
    """Acks commit the acked message's own offset; a requeue delivers the message again."""

    def ack(self, delivery_tag: str) -> None:
        message = self._not_yet_acked.pop(delivery_tag, None)
        if message is not None:
            self.channel.commit_delivery(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            self.ack(delivery_tag)
            return
        if self._not_yet_acked.pop(delivery_tag, None) is not None:
            self.channel.redeliver(delivery_tag)


class Channel(confluentkafka.Channel):
    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._producers: DurableProducers | None = None
        # Messages given back by the worker, delivered again before anything new is read (by topic).
        self._redeliveries: dict[str, list[Delivery]] = {}
        super().__init__(*args, **kwargs)
        self.commits = PartitionCommits(self._get_consumer, self.journal_dir, self.commit_interval)

    # --- configuration -----------------------------------------------------------------------------------------
    @property
    def assigned_partition(self) -> int | None:
        value = self.options.get("partition")
        return None if value is None or value == "" else int(value)

    @property
    def max_deliveries(self) -> int:
        return int(self.options.get("max_deliveries", 3))

    @property
    def dead_letter_topic(self) -> str | None:
        return self.options.get("dead_letter_topic")

    @property
    def journal_dir(self) -> str | None:
        return self.options.get("journal_dir") or None

    @property
    def commit_interval(self) -> float:
        return float(self.options.get("commit_interval_seconds", 1.0))

    @property
    def publish_timeout(self) -> float:
        return float(self.options.get("publish_timeout_seconds", 30))

    @property
    def common_config(self) -> dict[str, Any]:  # type: ignore[override]
        client = self.connection.client
        hosts = [(client.hostname, client.port)]
        for url in client.alt or []:
            parsed = type(client)(url)
            hosts.append((parsed.hostname, parsed.port))
        config = dict(super().common_config)
        config["bootstrap.servers"] = bootstrap_servers(hosts)
        config.update(self.options.get("kafka_common_config") or {})
        return config

    # --- producing ---------------------------------------------------------------------------------------------
    @property
    def metadata_refresh_ms(self) -> int:
        """How soon a running producer sees partitions added for a new worker (librdkafka's default is 5 minutes)."""
        return int(self.options.get("metadata_refresh_ms", 30000))

    @property
    def producers(self) -> DurableProducers:
        # Celery keeps this channel (and so its producers) in the app's producer pool for the life of the client: they
        # must refresh topic metadata often enough to start using a partition added for a new worker node.
        if self._producers is None:
            self._producers = DurableProducers(
                {**self.common_config, "topic.metadata.refresh.interval.ms": self.metadata_refresh_ms},
                self.options.get("kafka_producer_config") or {},
                self.options.get("kafka_deferred_producer_config") or {},
                self.publish_timeout,
            )
        return self._producers

    def _get_producer(self, queue: str) -> Producer:
        return self.producers.durable_producer()

    def produce_durably(self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, str] | None = None) -> Message:
        """Produce one record and wait until the brokers acknowledged it (acks=all); raise DeliveryFailed if not."""
        return self.producers.produce_durably(topic, value, key=key, headers=headers)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        topic = self.sanitize_queue_name(queue)
        headers = message.get("headers") or {}
        key = headers.get(PARTITION_KEY_HEADER)
        value, record_key = dumps(message).encode(), None if key is None else str(key).encode()
        batch = current_deferred()
        if batch is None:
            self.produce_durably(topic, value, key=record_key)
        else:
            label = f"task {headers.get('task', '?')}[{headers.get('id', '?')}] to {topic}"
            self.producers.produce_deferred(batch, topic, value, record_key, None, label)

    # --- consuming ---------------------------------------------------------------------------------------------
    def _get_consumer(self, queue: str) -> Consumer:
        partition = self.assigned_partition
        if partition is None:
            return super()._get_consumer(queue)
        topic = self.sanitize_queue_name(queue)
        consumer = self._kafka_consumers.get(topic)
        if consumer is None:
            consumer = Consumer(
                {
                    **self.common_config,
                    # Offsets are stored under this group, but partitions are assigned, never balanced.
                    "group.id": self.options.get("consumer_group", f"{topic}.workers"),
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    # Results of the commits sent without waiting, served by poll() in this thread.
                    "on_commit": self.commits.on_commit,
                    **(self.options.get("kafka_consumer_config") or {}),
                }
            )
            owned = TopicPartition(topic, partition)
            committed = self._committed(consumer, owned)
            self.commits.resume(topic, partition, committed)
            consumer.assign([owned])
            metrics.PARTITIONS.channels.append(self)
            logger.info("consuming %s partition %s from committed offset %s", topic, partition, committed.offset)
            self._kafka_consumers[topic] = consumer
        return consumer

    def _committed(self, consumer: Consumer, owned: TopicPartition) -> TopicPartition:
        """The committed offset (and metadata) of the owned partition, waiting out a coordinator that is not ready (a
        worker that starts with its cluster, or beside a broker's restart: logged at INFO, as an expected wait)."""

        def read() -> TopicPartition:
            [committed] = consumer.committed([owned], timeout=10)
            if committed.error is not None:
                raise KafkaException(committed.error)
            return committed

        return retry_while_coordinator_moves(read, COORDINATOR_NOT_READY, waiting="waiting", log_level=logging.INFO)

    def _get(self, queue: str, **kwargs: Any) -> dict[str, Any]:
        if self.assigned_partition is None:
            return super()._get(queue, **kwargs)
        topic = self.sanitize_queue_name(queue)
        delivery = self._next_delivery(topic)
        try:
            envelope = decode_envelope(delivery.raw_value)
            task = task_message(envelope)
        except UndecodableMessage as error:
            self._dead_letter(delivery, UNDECODABLE, f"undecodable record: {error}")
            raise Empty() from None

        if delivery.attempt > self.max_deliveries:
            self._dead_letter(
                delivery,
                REDELIVERY_LIMIT,
                f"delivered {delivery.attempt - 1} times without an acknowledgement: the worker died running it "
                f"(killed by its memory limit, or crashed); limit is {self.max_deliveries}",
                task=task,
            )
            raise Empty()

        self.commits.delivered(topic, delivery.partition, delivery.offset, delivery.attempt)
        envelope.setdefault("headers", {}).update(delivery.source_headers())
        properties = envelope["properties"]
        properties["delivery_tag"] = hand_out(delivery)
        properties.setdefault("delivery_info", {})
        return {**envelope, "topic": topic}

    def _next_delivery(self, topic: str) -> Delivery:
        """The next message for the worker, attempt counted: one given back first, else the next record read.
        Raises Empty when there is none (and stores the deferred acks then)."""
        waiting = self._redeliveries.get(topic)
        if waiting:
            given_back = waiting.pop(0)
            given_back.attempt += 1
            return given_back
        consumer = self._get_consumer(topic)
        record = consumer.poll(self.wait_time_seconds)
        if record is None or record.error():
            if record is not None:
                logger.warning("consumer error on %s: %s", topic, record.error())
            self.flush_deferred_acks(topic)
            raise Empty()
        partition, offset = record.partition(), record.offset()
        if self.commits.finished_before_restart(topic, partition, offset):
            raise Empty()
        return Delivery.of_record(record, attempt=self.commits.attempt_of(topic, partition, offset))

    def commit_delivery(self, delivery_tag: str) -> None:
        """Move the position past an acked message.

        The commit is deferred to the next poll of the partition: when the next message is there, one commit stores
        both this ack and the next message's delivery attempt, which halves the synchronous commits per task (each
        is a replicated write to __consumer_offsets). When the partition is idle, the ack is stored after one empty
        poll (wait_time_seconds), and on close. A worker killed inside that window runs the acked task again
        (at-least-once), it never skips one."""
        delivery = take_back(delivery_tag)
        if delivery is not None:
            self.commits.acked(delivery.topic, delivery.partition, delivery.offset)

    def flush_deferred_acks(self, topic: str | None = None) -> None:
        """Store every deferred ack (of one topic, or all)."""
        self.commits.flush(topic)

    def redeliver(self, delivery_tag: str) -> None:
        """Requeue: deliver the message again (next, before anything new is read), counting the attempt. It stays in
        flight meanwhile, so the position cannot pass it."""
        delivery = take_back(delivery_tag)
        if delivery is not None:
            self._redeliveries.setdefault(delivery.topic, []).append(delivery)

    def _dead_letter(self, delivery: Delivery, kind: str, reason: str, task: TaskMessage | None = None) -> None:
        letter = letter_for(delivery, kind, reason, task)
        self.publish_dead_letter(letter)
        # Only once the dead letter is safely stored is the original skipped.
        self.commits.skipped(delivery.topic, delivery.partition, delivery.offset)
        logger.error("dead-lettered %s[%s]@%s (%s): %s", delivery.topic, delivery.partition, delivery.offset, kind, reason)

    def publish_dead_letter(self, letter: DeadLetter) -> None:
        if not self.dead_letter_topic:
            raise RuntimeError("transport option dead_letter_topic is not set: refusing to drop a message")
        self.produce_durably(self.dead_letter_topic, letter.to_json(), key=letter.record_key, headers={"kind": letter.kind})
        metrics.DEAD_LETTERED.labels(letter.kind).inc()

    def partition_positions(self) -> dict[tuple[str, int], PartitionPositions]:
        return self.commits.snapshot()

    def high_watermark(self, topic: str, partition: int) -> int | None:
        """End offset of an owned partition, asked from the broker (for the lag metric)."""
        consumer = self._kafka_consumers.get(topic)
        if consumer is None:
            return None
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=2, cached=False)
        except KafkaException:
            return None
        return high

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        """Topics are declared by the Ansible role with their partitions and replication; never create them here."""

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.sanitize_queue_name(queue) in self.client.list_topics(timeout=self.wait_time_seconds).topics

    def close(self) -> None:
        if self in metrics.PARTITIONS.channels:
            metrics.PARTITIONS.channels.remove(self)
        try:
            self.flush_deferred_acks()
        except KafkaException as error:
            # The acked task runs again after the restart (at-least-once); nothing is skipped.
            logger.warning("could not store the last ack on close: %s", error)
        if self._producers is not None:
            self._producers.flush()
            self._producers = None
        self.commits.close()
        super().close()


class Transport(confluentkafka.Transport):
    Channel = Channel
    driver_name = SCHEME
    # _get already blocks in poll(); the virtual transport's extra sleep after an empty poll only adds latency.
    polling_interval = 0.01


TRANSPORT_ALIASES.setdefault(SCHEME, "celery_kafka.transport:Transport")
