"""Publishing with deferred acknowledgements: ``with deferred_acks(app): ...`` queues every record of the block in the
producer and waits for all their acknowledgements (acks=all) when the block exits, raising DeliveryFailed naming each
record that was refused or not acknowledged. The transport's ``_put`` looks for the open block (current_deferred)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer


class DeliveryFailed(KafkaException):
    """The brokers did not acknowledge a record in time (or refused it). ``failures``: (what, why) of each record."""

    def __init__(self, error: KafkaError, failures: list[tuple[str, str]] | None = None) -> None:
        super().__init__(error)
        self.failures = failures or []


@dataclass
class _Outcome:
    label: str
    done: bool = False
    error: KafkaError | None = None


@dataclass
class DeferredAcks:
    """Records produced in one ``deferred_acks()`` block (one thread) and their delivery reports.

    Delivery callbacks run in whichever thread polls the producer (possibly another thread that shares it), hence
    the lock."""

    timeout: float | None = None
    outcomes: list[_Outcome] = field(default_factory=list)
    producers: dict[int, Producer] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, producer: Producer, label: str) -> Callable[[KafkaError | None, Message], None]:
        outcome = _Outcome(label)
        with self.lock:
            self.outcomes.append(outcome)
            self.producers[id(producer)] = producer

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            with self.lock:
                outcome.error, outcome.done = error, True

        return on_delivery

    def wait(self, timeout: float) -> int:
        """Wait for every delivery report; raise DeliveryFailed naming the records not acknowledged. Returns how
        many records were acknowledged."""
        deadline = time.monotonic() + timeout
        for producer in list(self.producers.values()):
            producer.flush(max(0.0, deadline - time.monotonic()))
        with self.lock:
            failures = [
                (o.label, str(o.error) if o.error is not None else f"no acknowledgement within {timeout} s")
                for o in self.outcomes
                if o.error is not None or not o.done
            ]
            total = len(self.outcomes)
        if failures:
            shown = "; ".join(f"{label}: {why}" for label, why in failures[:10])
            more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
            raise DeliveryFailed(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"{len(failures)} of {total} records not acknowledged: {shown}{more}"),
                failures,
            )
        return total


_DEFERRED = threading.local()


def current_deferred() -> DeferredAcks | None:
    return getattr(_DEFERRED, "batch", None)


@contextmanager
def deferred_acks(app: Any = None, timeout: float | None = None) -> Iterator[DeferredAcks]:
    """Opt-in: within the block, ``apply_async``/``send_keyed`` of this thread return as soon as the record is
    queued in the producer; leaving the block waits for every acknowledgement (acks=all) and raises DeliveryFailed
    naming each record that was refused or not acknowledged within ``timeout`` seconds (default: the transport's
    ``publish_timeout_seconds``). Nothing is acknowledged before the block exits. Blocks do not nest.

    ``app`` is the Celery app (its transport options give the default timeout)."""
    if current_deferred() is not None:
        raise RuntimeError("deferred_acks() blocks do not nest")
    if timeout is None:
        options = app.conf.broker_transport_options if app is not None else {}
        timeout = float((options or {}).get("publish_timeout_seconds", 30))
    batch = DeferredAcks(timeout=timeout)
    _DEFERRED.batch = batch
    try:
        yield batch
    finally:
        _DEFERRED.batch = None
        batch.wait(timeout)
