"""Task base class that writes a dead letter after the last retry, and the helper that sends keyed tasks."""

from __future__ import annotations

import traceback as tb
from typing import Any

from celery import Celery, Task
from celery.result import AsyncResult

from celery_kafka.deadletter import TASK_FAILED, DeadLetter, Source, encode_raw
from celery_kafka.delivery import delivery_of
from celery_kafka.envelope import PARTITION_KEY_HEADER, REPLAY_COUNT_HEADER
from celery_kafka.publishing import deferred_acks

__all__ = ["DeadLetteringTask", "deferred_acks", "send_keyed"]


class DeadLetteringTask(Task):
    """A task that, once it has failed for the last time (retries exhausted), lands in the dead-letter topic with
    its message, where it came from, the exception, the traceback and its retry count."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        request = self.request
        delivery = delivery_of(request)
        headers = request.headers or {}
        letter = DeadLetter(
            kind=TASK_FAILED,
            reason=f"{type(exc).__name__} after {request.retries} retries",
            source=Source(
                topic=delivery.topic if delivery else (request.delivery_info or {}).get("routing_key", ""),
                partition=delivery.partition if delivery else -1,
                offset=delivery.offset if delivery else -1,
                timestamp_ms=delivery.timestamp_ms if delivery else None,
                key=None if not delivery or delivery.key is None else delivery.key.decode("utf-8", "replace"),
                headers=delivery.headers if delivery else {},
            ),
            task_id=task_id,
            task_name=self.name,
            args=list(args or []),
            kwargs=dict(kwargs or {}),
            partition_key=headers.get(PARTITION_KEY_HEADER) or getattr(request, PARTITION_KEY_HEADER, None),
            retries=request.retries,
            replays=int(headers.get(REPLAY_COUNT_HEADER) or getattr(request, REPLAY_COUNT_HEADER, 0) or 0),
            exception=repr(exc),
            traceback=str(einfo) if einfo is not None else "".join(tb.format_exception(exc)),
            raw_value_b64=encode_raw(delivery.raw_value) if delivery else None,
        )
        with self.app.connection_for_write() as connection:
            connection.default_channel.publish_dead_letter(letter)


def send_keyed(app: Celery, task_name: str, key: str, *args: Any, **kwargs: Any) -> AsyncResult:
    """Send task `task_name` so that every task with the same `key` goes to the same partition, hence the same
    worker node, in the order sent. Returns once the brokers acknowledged the message (acks=all); inside a
    ``with deferred_acks(app):`` block it returns at once and the block's exit waits for every acknowledgement
    (raising DeliveryFailed for any that failed). Clients need only the task's name, not its code."""
    return app.send_task(task_name, args=args, kwargs=kwargs, headers={PARTITION_KEY_HEADER: key})
