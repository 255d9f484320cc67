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
  knows how often each message was already tried and which already finished; past ``max_deliveries`` the message goes
  to the dead-letter topic instead of killing the worker again;
* a message given back by the worker (Celery requeues it when a pool child dies running it) is delivered again from
  memory, with its attempt counted, without rewinding the partition: messages after it that are running in other
  pool children are not read twice;
* a record that is not a Celery JSON message goes to the dead-letter topic and the worker goes on;
* topics are never created here: they are declared (partitions, replication) by the Ansible kafka_topics role.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from queue import Empty
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from kombu.transport import TRANSPORT_ALIASES, confluentkafka
from kombu.utils.json import dumps

from celery_kafka import metrics
from celery_kafka.deadletter import REDELIVERY_LIMIT, UNDECODABLE, DeadLetter, letter_for
from celery_kafka.delivery import Delivery, hand_out, take_back
from celery_kafka.delivery import delivery_of as delivery_of  # re-exported: its import path before 0.2
from celery_kafka.envelope import PARTITION_KEY_HEADER, TaskMessage, UndecodableMessage, decode_envelope, task_message
from celery_kafka.journal import Journal
from celery_kafka.offsets import Commit, PartitionPositions
from celery_kafka.producing import DurableProducers
from celery_kafka.publishing import current_deferred
from celery_kafka.publishing import deferred_acks as deferred_acks  # re-exported: its import path before 0.2

logger = logging.getLogger(__name__)

SCHEME = "partitionedkafka"
DEFAULT_PORT = 9092


def retry_while_coordinator_moves(call: Callable[[], Any], retriable: tuple[int, ...], timeout: float = 120, pause: float = 1) -> Any:
    """Run `call` (an offset commit), again while it fails with one of the `retriable` error codes and `timeout` has
    not passed. The group coordinator moves when its broker restarts (rolling restart, crash); a commit then fails with
    COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR for a few seconds. Committing the same offset twice is harmless."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exception:
            error = exception.args[0]
            if not isinstance(error, KafkaError) or error.code() not in retriable or time.monotonic() > deadline:
                raise
            logger.warning("commit waits for the group coordinator: %s", error)
        time.sleep(pause)


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
        self._attempts: dict[tuple[str, int, int], int] = {}
        self._positions: dict[tuple[str, int], PartitionPositions] = {}
        # Partitions with acks whose commit waits for the partition's next poll (see commit_delivery).
        self._unstored_acks: set[tuple[str, int]] = set()
        # Messages given back by the worker, delivered again before anything new is read (by topic).
        self._redeliveries: dict[str, list[Delivery]] = {}
        # With a journal: the journal of each owned partition, the last commit sent without waiting, and when.
        self._journals: dict[tuple[str, int], Journal] = {}
        self._sent_commits: dict[tuple[str, int], Commit] = {}
        self._last_commit_at: dict[tuple[str, int], float] = {}
        # Acks of a threads pool arrive from its threads while the consuming thread reads the next message.
        self._state_lock = threading.RLock()
        super().__init__(*args, **kwargs)

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
                    "on_commit": self._on_commit,
                    **(self.options.get("kafka_consumer_config") or {}),
                }
            )
            owned = TopicPartition(topic, partition)
            committed = self._committed(consumer, owned)
            self._resume(topic, partition, committed)
            consumer.assign([owned])
            metrics.PARTITIONS.channels.append(self)
            logger.info("consuming %s partition %s from committed offset %s", topic, partition, committed.offset)
            self._kafka_consumers[topic] = consumer
        return consumer

    # Answers a fresh cluster gives while the group coordinator (__consumer_offsets) is still being set up.
    _coordinator_not_ready = (
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    )

    def _committed(self, consumer: Consumer, owned: TopicPartition, timeout: float = 120) -> TopicPartition:
        """The committed offset (and metadata) of the owned partition, waiting out a coordinator that is not ready."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                [committed] = consumer.committed([owned], timeout=10)
                if committed.error is None:
                    return committed
                error = committed.error
            except KafkaException as exception:
                error = exception.args[0]
            if error.code() not in self._coordinator_not_ready or time.monotonic() > deadline:
                raise KafkaException(error)
            logger.info("waiting for the group coordinator: %s", error)
            time.sleep(1)

    def _resume(self, topic: str, partition: int, committed: TopicPartition) -> None:
        """Delivery attempts and finished offsets recorded before the worker stopped, or was killed: in the commit's
        metadata and, newer, in the node's journal."""
        attempts: dict[int, int] = {}
        if committed.offset != OFFSET_INVALID:
            positions, attempts = PartitionPositions.resumed(committed.offset, committed.metadata)
            self._positions[(topic, partition)] = positions
        if self.journal_dir:
            journal = Journal.for_partition(self.journal_dir, topic, partition)
            self._journals[(topic, partition)] = journal
            journaled, done = journal.read(committed.offset if committed.offset != OFFSET_INVALID else 0)
            self._partition_positions(topic, partition).restore_done(done)
            for offset, attempt in journaled.items():
                attempts[offset] = max(attempt, attempts.get(offset, 0))
            if journaled or done:
                logger.info("journal of %s[%s]: %d attempts, %d finished after the commit", topic, partition, len(journaled), len(done))
        for offset, attempt in attempts.items():
            self._attempts[(topic, partition, offset)] = attempt

    def _commit_soon(self, topic: str, partition: int) -> None:
        """With a journal: send the partition's commit without waiting, at most every commit_interval seconds (the
        journal holds what happened since)."""
        owned = (topic, partition)
        now = time.monotonic()
        if now - self._last_commit_at.get(owned, 0.0) < self.commit_interval:
            return
        with self._state_lock:
            commit = self._partition_positions(topic, partition).pending()
            if commit is None:
                return
            self._partition_positions(topic, partition).stored_as(commit)
            self._unstored_acks.discard(owned)
        self._last_commit_at[owned] = now
        self._sent_commits[owned] = commit
        owned_at = TopicPartition(topic, partition, commit.offset, metadata=commit.metadata())
        self._get_consumer(topic).commit(offsets=[owned_at], asynchronous=True)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        for owned in partitions:
            key = (owned.topic, owned.partition)
            if error is not None or owned.error is not None:
                # Sent again with the next commit; until then the journal holds what it would have stored.
                logger.warning("commit of %s[%s] at %s failed: %s", owned.topic, owned.partition, owned.offset, error or owned.error)
                with self._state_lock:
                    self._partition_positions(*key).stored = None
                    self._unstored_acks.add(key)
                continue
            sent = self._sent_commits.get(key)
            if sent is not None and sent.offset == owned.offset:
                self._compact_journal(key)

    def _compact_journal(self, owned: tuple[str, int]) -> None:
        """Once the latest commit is confirmed, the journal keeps only what comes after it."""
        journal = self._journals.get(owned)
        if journal is None:
            return
        with self._state_lock:
            positions = self._partition_positions(*owned)
            if positions.stored is None or positions.stored != self._sent_commits.get(owned):
                return  # a newer commit is on its way (or the last one failed): compact after that one
            # Attempts read at the restart for messages not delivered again yet are kept too.
            waiting = {offset: attempt for (topic, partition, offset), attempt in self._attempts.items() if (topic, partition) == owned}
            journal.compact({**waiting, **positions.in_flight}, positions.done | positions.done_before_restart)

    def _commit(self, topic: str, partition: int, commit: Commit | None) -> None:
        """Store a position and what it records (synchronously: a restart must never resume before a finished
        message, nor without the attempt of a message that was running).

        A commit is the partition's whole state, so it also stores any deferred ack; with nothing new to commit, the
        deferred acks are stored now."""
        positions = self._partition_positions(topic, partition)
        with self._state_lock:
            self._unstored_acks.discard((topic, partition))
            commit = commit or positions.pending()
        if commit is None:
            return
        owned = TopicPartition(topic, partition, commit.offset, metadata=commit.metadata())
        consumer = self._get_consumer(topic)
        retry_while_coordinator_moves(lambda: consumer.commit(offsets=[owned], asynchronous=False), self._coordinator_not_ready)
        with self._state_lock:
            positions.stored_as(commit)
        self._sent_commits[(topic, partition)] = commit
        self._last_commit_at[(topic, partition)] = time.monotonic()
        self._compact_journal((topic, partition))

    def _partition_positions(self, topic: str, partition: int) -> PartitionPositions:
        return self._positions.setdefault((topic, partition), PartitionPositions())

    def _get(self, queue: str, **kwargs: Any) -> dict[str, Any]:
        if self.assigned_partition is None:
            return super()._get(queue, **kwargs)
        topic = self.sanitize_queue_name(queue)
        delivery = self._next_delivery(topic)
        positions = self._partition_positions(topic, delivery.partition)
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

        # Record the attempt before the task runs: if the worker dies, the restart sees it (offset stays here).
        journal = self._journals.get((topic, delivery.partition))
        with self._state_lock:
            commit = positions.delivered(delivery.offset, delivery.attempt)
        if journal is None:
            self._commit(topic, delivery.partition, commit)
        else:
            journal.delivered(delivery.offset, delivery.attempt)
            self._commit_soon(topic, delivery.partition)
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
        positions = self._partition_positions(topic, partition)
        if positions.finished_before_restart(offset):
            # Finished before the worker restarted (recorded in the commit it resumed from, or in its journal).
            with self._state_lock:
                commit = positions.skipped(offset)
            if (topic, partition) in self._journals:
                self._unstored_acks.add((topic, partition))
                self._commit_soon(topic, partition)
            else:
                self._commit(topic, partition, commit)
            raise Empty()
        return Delivery.of_record(record, attempt=self._attempts.pop((topic, partition, offset), 0) + 1)

    def commit_delivery(self, delivery_tag: str) -> None:
        """Move the position past an acked message.

        The commit is deferred to the next poll of the partition: when the next message is there, one commit stores
        both this ack and the next message's delivery attempt, which halves the synchronous commits per task (each
        is a replicated write to __consumer_offsets). When the partition is idle, the ack is stored after one empty
        poll (wait_time_seconds), and on close. A worker killed inside that window runs the acked task again
        (at-least-once), it never skips one."""
        delivery = take_back(delivery_tag)
        if delivery is None:
            return
        journal = self._journals.get((delivery.topic, delivery.partition))
        if journal is not None:
            journal.done(delivery.offset)
        with self._state_lock:
            if self._partition_positions(delivery.topic, delivery.partition).acked(delivery.offset):
                self._unstored_acks.add((delivery.topic, delivery.partition))

    def flush_deferred_acks(self, topic: str | None = None) -> None:
        """Store every deferred ack (of one topic, or all)."""
        for owned_topic, partition in list(self._unstored_acks):
            if topic is None or owned_topic == topic:
                self._commit(owned_topic, partition, None)

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
        journal = self._journals.get((delivery.topic, delivery.partition))
        if journal is not None:
            journal.done(delivery.offset)
        positions = self._partition_positions(delivery.topic, delivery.partition)
        with self._state_lock:
            commit = positions.skipped(delivery.offset)
        self._commit(delivery.topic, delivery.partition, commit)
        logger.error("dead-lettered %s[%s]@%s (%s): %s", delivery.topic, delivery.partition, delivery.offset, kind, reason)

    def publish_dead_letter(self, letter: DeadLetter) -> None:
        if not self.dead_letter_topic:
            raise RuntimeError("transport option dead_letter_topic is not set: refusing to drop a message")
        self.produce_durably(self.dead_letter_topic, letter.to_json(), key=letter.record_key, headers={"kind": letter.kind})
        metrics.DEAD_LETTERED.labels(letter.kind).inc()

    def partition_positions(self) -> dict[tuple[str, int], PartitionPositions]:
        with self._state_lock:
            return dict(self._positions)

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
        for journal in self._journals.values():
            journal.close()
        self._journals.clear()
        super().close()


class Transport(confluentkafka.Transport):
    Channel = Channel
    driver_name = SCHEME
    # _get already blocks in poll(); the virtual transport's extra sleep after an empty poll only adds latency.
    polling_interval = 0.01


TRANSPORT_ALIASES.setdefault(SCHEME, "celery_kafka.transport:Transport")
