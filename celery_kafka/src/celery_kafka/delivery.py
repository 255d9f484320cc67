"""Where a message handed to the worker came from (topic, partition, offset, attempt, raw bytes), and how a running
task finds it: by delivery tag in the consuming process, or from the headers the transport adds, in a pool child."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from celery_kafka.envelope import PARTITION_KEY_HEADER

# Message headers carrying the Kafka coordinates of a delivered task into the task's request, also in a pool child.
SOURCE_HEADERS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_attempt")


@dataclass
class Delivery:
    """Where a message handed to the worker came from; looked up by delivery tag (see current_delivery). A message
    given back for redelivery is kept as one, with the attempt it was delivered with."""

    topic: str
    partition: int
    offset: int
    attempt: int
    key: bytes | None
    timestamp_ms: int | None
    headers: dict[str, str]
    raw_value: bytes | None

    @classmethod
    def of_record(cls, record: Message, attempt: int) -> Delivery:
        """The delivery of a record read from Kafka, as its `attempt`-th try."""
        return cls(
            topic=record.topic(),
            partition=record.partition(),
            offset=record.offset(),
            attempt=attempt,
            key=record.key(),
            timestamp_ms=record.timestamp()[1],
            headers=record_headers(record),
            raw_value=record.value(),
        )

    def source_headers(self) -> dict[str, Any]:
        """The message headers that let a task in a pool child rebuild this delivery (delivery_of)."""
        return dict(zip(SOURCE_HEADERS, (self.topic, self.partition, self.offset, self.attempt), strict=True))


# Deliveries of this process by delivery tag. The solo and threads pools run tasks in the consuming process, so a task
# finds the Kafka coordinates and raw bytes of its own message here (the dead-letter writer needs them).
_DELIVERIES: dict[str, Delivery] = {}


def hand_out(delivery: Delivery) -> str:
    """Register a delivery about to be handed to the worker; returns its delivery tag."""
    delivery_tag = str(uuid.uuid4())
    _DELIVERIES[delivery_tag] = delivery
    return delivery_tag


def take_back(delivery_tag: str) -> Delivery | None:
    """The delivery of an acked or requeued message, no longer in this process' registry (None if it was not)."""
    return _DELIVERIES.pop(delivery_tag, None)


def current_delivery(delivery_tag: str | None) -> Delivery | None:
    return None if delivery_tag is None else _DELIVERIES.get(delivery_tag)


def delivery_of(request: Any) -> Delivery | None:
    """The delivery of the task `request` (a Celery task's self.request): from this process, or, in a prefork pool
    child, rebuilt from the message headers the transport added (without the raw bytes)."""
    found = current_delivery((getattr(request, "properties", None) or {}).get("delivery_tag"))
    if found is not None:
        return found
    topic, partition, offset, attempt = (getattr(request, name, None) for name in SOURCE_HEADERS)
    if topic is None or partition is None or offset is None:
        return None
    key = getattr(request, PARTITION_KEY_HEADER, None)
    return Delivery(
        topic=str(topic),
        partition=int(partition),
        offset=int(offset),
        attempt=int(attempt or 1),
        key=None if key is None else str(key).encode(),
        timestamp_ms=None,
        headers={},
        raw_value=None,
    )


def record_headers(message: Message) -> dict[str, str]:
    return {name: (value or b"").decode("utf-8", "replace") for name, value in (message.headers() or [])}
