"""deferred_acks() bookkeeping, with a real librdkafka producer that has no broker to talk to (nothing mocked)."""

from __future__ import annotations

import pytest
from celery_kafka_testing.localkafka import free_port
from confluent_kafka import Producer

from celery_kafka.publishing import DeferredAcks, DeliveryFailed, current_deferred, deferred_acks


def test_records_nobody_acknowledged_raise_naming_each_of_them() -> None:
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 500, "log_level": 0})
    batch = DeferredAcks()
    for n in range(3):
        producer.produce("t", value=b"x", on_delivery=batch.track(producer, f"task demo[{n}] to t"))
    with pytest.raises(DeliveryFailed) as failed:
        batch.wait(timeout=10)
    assert [label for label, _ in failed.value.failures] == [f"task demo[{n}] to t" for n in range(3)]
    assert "3 of 3 records not acknowledged" in str(failed.value)


def test_an_empty_block_passes_and_blocks_do_not_nest() -> None:
    with deferred_acks(timeout=1) as batch:
        assert current_deferred() is batch
        with pytest.raises(RuntimeError, match="do not nest"), deferred_acks(timeout=1):
            pass
    assert current_deferred() is None
    assert batch.outcomes == []
