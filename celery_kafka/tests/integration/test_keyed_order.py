"""Keyed tasks run on the worker that owns their partition, in the order they were sent."""

from __future__ import annotations

from collections import defaultdict

import pytest

from celery_kafka.partitioning import partition_for_key
from celery_kafka.tasks import send_keyed
from conftest import TASK_PARTITIONS, committed_and_end, wait_until

pytestmark = pytest.mark.integration


def test_each_key_runs_in_order_on_its_partition_owner(kafka, client_app, workers, run_id):
    keys = [f"customer-{n}" for n in range(12)]
    sent = 0
    for seq in range(10):
        for key in keys:
            send_keyed(client_app, "demo_app.tasks.record", key, key, seq, run_id)
            sent += 1

    def all_recorded() -> bool:
        return sum(len(worker.records(run_id)) for worker in workers.values()) >= sent

    wait_until(all_recorded, timeout=120, message=f"{sent} recorded tasks")
    by_key: dict[str, list[dict]] = defaultdict(list)
    # records() keeps the results file's order: the order in which that worker ran its tasks.
    for worker in workers.values():
        for row in worker.records(run_id):
            assert row["partition"] == worker.partition == row["worker_partition"], row
            by_key[row["key"]].append(row)
    assert sum(len(rows) for rows in by_key.values()) == sent, "a task ran twice or not at all"
    for key, rows in by_key.items():
        owner = partition_for_key(key, TASK_PARTITIONS)
        assert {row["partition"] for row in rows} == {owner}, f"{key} ran outside partition {owner}"
        assert [row["seq"] for row in rows] == list(range(10)), f"{key} ran out of order: {[row['seq'] for row in rows]}"
    assert len({partition_for_key(key, TASK_PARTITIONS) for key in keys}) == TASK_PARTITIONS, "the keys should cover every partition"
    # Every finished task was acknowledged: each worker's committed offset reached the end of its partition.
    for partition in range(TASK_PARTITIONS):
        wait_until(
            lambda p=partition: (lambda c, e: c == e)(*committed_and_end(kafka, "celery.tasks", p)),
            timeout=30,
            message=f"partition {partition} committed to its end",
        )
    for worker in workers.values():
        # Other tests make tasks fail on purpose; what must never appear is a failed ack or a dying consumer.
        assert "call_soon_ack" not in worker.log() and "CRITICAL" not in worker.log(), worker.log()[-3000:]
