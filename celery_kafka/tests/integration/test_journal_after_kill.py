"""A worker killed with SIGKILL in the middle of a backlog runs again only the task it was running: its journal says
which messages after the last offset commit already finished. Without the journal (the node lost), every task finished
since the last commit runs again, and still none is lost."""

from __future__ import annotations

import shutil

import pytest
from celery_kafka_testing.localkafka import Worker

from celery_kafka.app import create_app
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import deferred_acks, send_keyed
from conftest import committed_and_end, wait_until

pytestmark = pytest.mark.integration

TOPIC = "journal.tasks"
TASKS = 400


@pytest.mark.parametrize(("partition", "journal_kept"), [(0, True), (1, False)], ids=["journal kept", "journal lost"])
def test_a_killed_worker_resumes_from_its_journal(kafka, tmp_path, run_id, partition, journal_kept):
    app = create_app(WorkerEnvironment(brokers=[kafka], task_topic=TOPIC))
    key = next(f"key-{n}" for n in range(100) if _partition(f"key-{n}") == partition)
    with deferred_acks(app):
        for seq in range(TASKS):
            # export: a record that takes 10 ms, so the kill lands in the middle of the backlog.
            send_keyed(app, "demo_app.tasks.export", key, key, seq, 0.01, run_id)
    # A long commit interval: while the backlog drains, Kafka holds only the first commit.
    worker = Worker(kafka, partition, tmp_path, task_topic=TOPIC, extra_env={"CELERY_KAFKA_COMMIT_INTERVAL_SECONDS": "60"})
    worker.start()
    wait_until(lambda: len(worker.records(run_id)) >= 150, timeout=120, interval=0.05, message="150 tasks done")
    assert worker.process is not None
    worker.process.kill()
    worker.process.wait()
    done_at_kill = len(worker.records(run_id))
    committed = committed_offset(kafka, partition)
    assert committed < done_at_kill - 100, f"commit {committed} should lag the {done_at_kill} done tasks"
    if not journal_kept:
        shutil.rmtree(tmp_path / "journal")
    worker.start()
    try:
        wait_until(lambda: {r["seq"] for r in worker.records(run_id)} >= set(range(TASKS)), timeout=120, message="every task")
        # One more idle poll of the partition stores the final offset: nothing more runs after that.
        wait_until(lambda: committed_offset(kafka, partition) >= TASKS, timeout=30, message="final commit")
    finally:
        worker.stop()
    seqs = [row["seq"] for row in worker.records(run_id)]
    reruns = len(seqs) - TASKS
    assert sorted(set(seqs)) == list(range(TASKS)), "a task was lost"
    if journal_kept:
        assert reruns <= 1, f"{reruns} tasks ran twice; only the one running at the kill may"
        # Run order is send order, the one rerun (if any) right after itself.
        assert [s for n, s in enumerate(seqs) if n == 0 or s != seqs[n - 1]] == list(range(TASKS))
    else:
        assert done_at_kill - committed - 1 <= reruns <= done_at_kill - committed + 1, (reruns, done_at_kill, committed)
    kept = "journal kept" if journal_kept else "journal lost"
    print(f"\n{kept}: {done_at_kill} done at the kill, commit at {committed}, {reruns} reruns")


def committed_offset(kafka: str, partition: int) -> int:
    return committed_and_end(kafka, TOPIC, partition, group=f"{TOPIC}.workers")[0]


def _partition(key: str) -> int:
    from celery_kafka.partitioning import partition_for_key

    return partition_for_key(key, 2)
