"""Read Celery task messages as kombu's virtual transports store them: a JSON envelope around the task body.

Only JSON is accepted (see settings.py), so a message can always be decoded without running any code.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

# Header carrying the key that picks the partition (and so the worker) of a task; see send_keyed().
PARTITION_KEY_HEADER = "partition_key"
# Header counting how many times a dead letter was replayed, to stop endless replay loops.
REPLAY_COUNT_HEADER = "dlq_replays"


class UndecodableMessage(ValueError):
    """The record on the task topic is not a Celery message this worker can read."""


@dataclass
class TaskMessage:
    """The parts of a Celery (protocol 2) message the dead-letter topic and its tools need."""

    task_id: str
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    retries: int
    partition_key: str | None
    replays: int
    headers: dict[str, Any] = field(default_factory=dict)


def decode_envelope(raw: bytes | None) -> dict[str, Any]:
    """The envelope dict of a raw Kafka record value; raises UndecodableMessage for anything else."""
    if raw is None:
        raise UndecodableMessage("record has no value")
    try:
        envelope = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UndecodableMessage(f"value is not JSON: {error}") from error
    if not isinstance(envelope, dict) or not isinstance(envelope.get("properties"), dict) or "body" not in envelope:
        raise UndecodableMessage("value is JSON but not a kombu message envelope")
    if envelope.get("content-type") != "application/json":
        raise UndecodableMessage(f"content type {envelope.get('content-type')!r} is not accepted (JSON only)")
    return envelope


def task_message(envelope: dict[str, Any]) -> TaskMessage:
    """Task name, id, arguments and counters of an envelope; raises UndecodableMessage if they are missing."""
    headers = envelope.get("headers") or {}
    if "task" not in headers or "id" not in headers:
        raise UndecodableMessage("envelope carries no Celery task headers")
    body = envelope["body"]
    try:
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
        args, kwargs = (decoded[0], decoded[1]) if isinstance(decoded, list) else (decoded.get("args", []), decoded.get("kwargs", {}))
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise UndecodableMessage(f"task body is not a JSON [args, kwargs, embed] list: {error}") from error
    return TaskMessage(
        task_id=str(headers["id"]),
        task_name=str(headers["task"]),
        args=list(args),
        kwargs=dict(kwargs),
        retries=int(headers.get("retries") or 0),
        partition_key=headers.get(PARTITION_KEY_HEADER),
        replays=int(headers.get(REPLAY_COUNT_HEADER) or 0),
        headers=dict(headers),
    )
