"""A concurrent queue: the example app's "exports" topic, one partition, consumed by a worker with a prefork pool of 3.

Clients send there with `queue="exports"` (the example app routes its export task there with task_routes). Tasks
there need no key order, so several run at once; the partition's offset still only moves below the oldest task
in flight, and a pool child killed mid-task (as the memory limit's OOM kill does) ends in a redelivery, then a dead
letter, while the worker and its other tasks go on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery_kafka_testing.localkafka import Worker

from celery_kafka import cli
from celery_kafka.deadletter import REDELIVERY_LIMIT
from conftest import committed_and_end, wait_until

pytestmark = pytest.mark.integration

QUEUE = "exports"


@pytest.fixture(scope="module")
def pool_worker(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = Worker(kafka, 0, tmp_path_factory.mktemp("exports"), task_topic=QUEUE, pool="prefork", concurrency=3).start()
    yield worker
    worker.stop()


def overlapping(one: dict, other: dict) -> bool:
    return one["started_at"] < other["finished_at"] and other["started_at"] < one["finished_at"]


def fully_committed(kafka: str) -> bool:
    committed, end = committed_and_end(kafka, QUEUE, 0, group=f"{QUEUE}.workers")
    return committed == end


def test_tasks_of_a_concurrent_queue_run_at_the_same_time_and_each_runs_once(kafka, client_app, pool_worker, run_id):
    for seq in range(9):
        client_app.send_task("demo_app.tasks.export", args=(f"report-{seq}", seq, 1.5, run_id), queue=QUEUE)
    rows = wait_until(lambda: (lambda r: r if len(r) >= 9 else None)(pool_worker.records(run_id)), timeout=90, message="9 exports")
    assert sorted(row["seq"] for row in rows) == list(range(9)), "each export exactly once"
    assert {row["partition"] for row in rows} == {0} and {row["worker_partition"] for row in rows} == {0}
    # Most exports overlapping at one moment: 1 would mean one at a time.
    overlap = max(sum(1 for other in rows if overlapping(row, other)) for row in rows)
    assert overlap >= 2, f"no two exports ran at the same time: {[(r['started_at'], r['finished_at']) for r in rows]}"
    assert len({row["pid"] for row in rows}) >= 2, "the exports ran in one process, not in the pool"
    wait_until(lambda: fully_committed(kafka), timeout=30, message="the exports partition committed to its end")


def test_a_pool_child_killed_mid_task_is_redelivered_then_dead_lettered_and_the_rest_finish(kafka, client_app, pool_worker, run_id):
    client_app.send_task("demo_app.faults.crash", args=(run_id,), queue=QUEUE)
    for seq in range(6):
        client_app.send_task("demo_app.tasks.export", args=(f"report-{seq}", seq, 0.5, run_id), queue=QUEUE)
    entry = wait_until(
        lambda: next(
            (
                entry
                for entry in cli.DeadLetterTopic.read(kafka, "celery.tasks.dlq").entries.values()
                if entry.letter.kind == REDELIVERY_LIMIT and run_id in entry.letter.args
            ),
            None,
        ),
        timeout=90,
        message="the crash task's redelivery-limit dead letter",
    )
    assert entry.letter.source.topic == QUEUE and "delivered 3 times" in entry.letter.reason
    rows = wait_until(lambda: (lambda r: r if len(r) >= 6 else None)(pool_worker.records(run_id)), timeout=60, message="6 exports")
    assert sorted(row["seq"] for row in rows) == list(range(6)), "each export exactly once, none lost to the killed child"
    assert pool_worker.alive, "the worker itself must survive its pool child being killed"
    wait_until(lambda: fully_committed(kafka), timeout=30, message="the exports partition committed to its end")
