"""The transport's two producers: one that waits for each record's acknowledgement (acks=all) before a publish
returns, and one that batches the records of a ``deferred_acks()`` block (publishing.py) and reports each delivery to
the block. Records of one thread never wait in both: a synchronous publish is acknowledged before it returns, a
block's records before the block exits, so a key's order is kept."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from confluent_kafka import KafkaError, Message, Producer

from celery_kafka.publishing import DeferredAcks, DeliveryFailed


class DurableProducers:
    """Both producers of one channel, each made on first use from the client settings (brokers, security) and the
    transport options' overrides (``kafka_producer_config``, ``kafka_deferred_producer_config``)."""

    # librdkafka settings that make a published record durable before produce_durably returns.
    durable_config: ClassVar[dict[str, Any]] = {
        "acks": "all",
        "enable.idempotence": True,
        "retries": 2147483647,
        "max.in.flight.requests.per.connection": 5,
        "delivery.timeout.ms": 120000,
        # Each publish waits for its own acknowledgement, so lingering for a batch only adds latency.
        "linger.ms": 0,
        # Java-compatible key hashing: the owner of a key can be computed anywhere (partitioning.partition_for_key).
        "partitioner": "murmur2_random",
    }
    # In a deferred_acks() block nobody waits for a single record: let librdkafka collect a batch per partition. The
    # block's exit flushes, which sends at once, so the linger adds no latency there. 50 ms, not librdkafka's 5: with
    # records arriving every few hundred microseconds (each apply_async does Celery's work in between), a 5 ms linger
    # cost 130-170 us per produce() and 400-580 us of the client's CPU per record, 50 ms about 5 (docs/facts.md).
    deferred_config: ClassVar[dict[str, Any]] = {"linger.ms": 50}

    def __init__(
        self, client_config: dict[str, Any], overrides: dict[str, Any], deferred_overrides: dict[str, Any], publish_timeout: float
    ) -> None:
        self.config = {**client_config, **self.durable_config, **overrides}
        self.deferred = {**self.config, **self.deferred_config, **deferred_overrides}
        self.publish_timeout = publish_timeout
        self._durable: Producer | None = None
        self._batching: Producer | None = None

    def durable_producer(self) -> Producer:
        if self._durable is None:
            self._durable = Producer(self.config)
        return self._durable

    def batching_producer(self) -> Producer:
        if self._batching is None:
            self._batching = Producer(self.deferred)
        return self._batching

    def produce_durably(self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, str] | None = None) -> Message:
        """Produce one record and wait until the brokers acknowledged it (acks=all); raise DeliveryFailed if not."""
        producer = self.durable_producer()
        outcome: dict[str, Any] = {}

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            outcome["error"], outcome["message"] = error, message

        producer.produce(topic, value=value, key=key, headers=list((headers or {}).items()), on_delivery=on_delivery)
        deadline = time.monotonic() + self.publish_timeout
        while "message" not in outcome and time.monotonic() < deadline:
            producer.poll(0.05)
        if "message" not in outcome:
            raise DeliveryFailed(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"no acknowledgement from the brokers within {self.publish_timeout} s")
            )
        if outcome["error"] is not None:
            raise DeliveryFailed(outcome["error"])
        return outcome["message"]

    def produce_deferred(
        self, batch: DeferredAcks, topic: str, value: bytes, key: bytes | None, headers: dict[str, str] | None, label: str
    ) -> None:
        """Queue one record in the batching producer; its delivery report goes to `batch` (checked on block exit)."""
        producer = self.batching_producer()
        on_delivery = batch.track(producer, label)
        deadline = time.monotonic() + self.publish_timeout
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=list((headers or {}).items()), on_delivery=on_delivery)
                break
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports until there is room again.
                if time.monotonic() > deadline:
                    on_delivery(KafkaError(KafkaError._QUEUE_FULL, "producer queue full"), None)  # type: ignore[arg-type]
                    raise DeliveryFailed(KafkaError(KafkaError._QUEUE_FULL, f"{label}: producer queue full")) from None
                producer.poll(0.05)
        producer.poll(0)

    def flush(self) -> None:
        """Wait (up to the publish timeout each) for the records both producers still hold."""
        for producer in (self._durable, self._batching):
            if producer is not None:
                producer.flush(self.publish_timeout)
