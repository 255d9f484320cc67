"""Dead letters: what lands on the dead-letter topic, and how it is written and read back.

A dead letter is one JSON record keyed like the original task (so replays keep the task on its partition). It holds
the task (name, id, arguments), where the original record was (topic, partition, offset, headers), why it died
(exception and traceback, or the redelivery limit, or an undecodable value) and its retry and replay counts.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery_kafka.delivery import Delivery
    from celery_kafka.envelope import TaskMessage

# Why a message was dead-lettered.
TASK_FAILED = "task-failed"  # the task raised after its last retry
REDELIVERY_LIMIT = "redelivery-limit"  # delivered too often without an ack: the worker died running it (OOM, crash)
UNDECODABLE = "undecodable"  # not a Celery JSON message: cannot be run or replayed

KINDS = (TASK_FAILED, REDELIVERY_LIMIT, UNDECODABLE)


@dataclass
class Source:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class DeadLetter:
    kind: str
    source: Source
    reason: str
    task_id: str | None = None
    task_name: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    partition_key: str | None = None
    retries: int = 0
    replays: int = 0
    exception: str | None = None
    traceback: str | None = None
    # The original record value, base64: kept whole so nothing is lost even when it cannot be decoded.
    raw_value_b64: str | None = None
    worker: str = field(default_factory=socket.gethostname)
    dead_lettered_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown dead-letter kind {self.kind!r}; expected one of {KINDS}")

    @property
    def replayable(self) -> bool:
        return self.kind != UNDECODABLE and self.task_name is not None

    @property
    def raw_value(self) -> bytes | None:
        return None if self.raw_value_b64 is None else base64.b64decode(self.raw_value_b64)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, default=repr).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DeadLetter:
        data = json.loads(raw)
        data["source"] = Source(**data["source"])
        return cls(**data)

    @property
    def record_key(self) -> bytes | None:
        return None if self.partition_key is None else str(self.partition_key).encode()


def encode_raw(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def letter_for(delivery: Delivery, kind: str, reason: str, task: TaskMessage | None = None) -> DeadLetter:
    """The dead letter of a delivered record: where it was and its whole value, and the task when it decoded as one."""
    source = Source(
        topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
        timestamp_ms=delivery.timestamp_ms,
        key=None if delivery.key is None else delivery.key.decode("utf-8", "replace"),
        headers=delivery.headers,
    )
    letter = DeadLetter(kind=kind, reason=reason, source=source, raw_value_b64=encode_raw(delivery.raw_value))
    if task is not None:
        letter.task_id, letter.task_name = task.task_id, task.task_name
        letter.args, letter.kwargs = task.args, task.kwargs
        letter.partition_key, letter.retries, letter.replays = task.partition_key, task.retries, task.replays
    return letter
