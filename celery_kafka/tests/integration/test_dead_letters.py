"""Failures end in the dead-letter topic with what is needed to replay them; the worker keeps going."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from celery_kafka import cli
from celery_kafka.deadletter import REDELIVERY_LIMIT, TASK_FAILED, UNDECODABLE
from celery_kafka.partitioning import partition_for_key
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed
from conftest import TASK_PARTITIONS, committed_and_end, wait_until

pytestmark = pytest.mark.integration


def letters(kafka: str) -> dict[str, cli.Entry]:
    return cli.DeadLetterTopic.read(kafka, "celery.tasks.dlq").entries


def find(kafka: str, predicate) -> cli.Entry | None:
    return next((entry for entry in letters(kafka).values() if predicate(entry.letter)), None)


def test_transient_failures_are_retried_until_they_succeed(client_app, workers, run_id):
    send_keyed(client_app, "demo_app.tasks.flaky", "flaky-key", "flaky-key", 2, run_id)
    owner = workers[partition_for_key("flaky-key", TASK_PARTITIONS)]
    [row] = wait_until(lambda: owner.records(run_id), message="the flaky task to succeed")
    assert row["retries"] == 2


def test_last_failure_lands_in_dead_letter_topic_and_replays(kafka, client_app, workers, run_id, capsys):
    send_keyed(client_app, "demo_app.faults.always_fails", "doomed", "doomed", run_id)
    entry = wait_until(
        lambda: find(kafka, lambda letter: letter.kind == TASK_FAILED and letter.kwargs == {} and run_id in letter.args),
        timeout=90,
        message="a dead letter for always_fails",
    )
    first = entry.letter
    assert first.task_name == "demo_app.faults.always_fails"
    assert first.partition_key == "doomed" and first.retries == 2 and first.replays == 0
    assert first.source.topic == "celery.tasks" and first.source.partition == partition_for_key("doomed", TASK_PARTITIONS)
    assert first.source.offset >= 0 and "RuntimeError" in first.exception and "Traceback" in first.traceback

    env = WorkerEnvironment(brokers=[kafka])
    assert cli.main(["--brokers", kafka, "list"]) == 0
    assert entry.letter_id in capsys.readouterr().out
    assert cli.main(["--brokers", kafka, "replay", entry.letter_id]) == 0
    assert "replayed demo_app.faults.always_fails" in capsys.readouterr().out
    # The replayed task failed again: a second letter, counting one replay, and the first one is resolved.
    replayed = wait_until(
        lambda: find(kafka, lambda letter: letter.task_id == first.task_id and letter.replays == 1),
        timeout=90,
        message="the replayed task's dead letter",
    )
    assert letters(kafka)[entry.letter_id].status == "replayed"
    assert cli.replay(env, letters(kafka)[replayed.letter_id], max_replays=1, force=False).endswith("use --force to replay anyway")
    assert cli.main(["--brokers", kafka, "skip", replayed.letter_id]) == 0
    assert letters(kafka)[replayed.letter_id].status == "skipped"


def test_undecodable_record_is_dead_lettered_and_worker_goes_on(kafka, client_app, workers, run_id):
    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    producer.produce("celery.tasks", value=b"\x00not json " + run_id.encode(), partition=1)
    producer.produce("celery.tasks", value=json.dumps({"hello": run_id}).encode(), partition=1)
    assert producer.flush(30) == 0
    wait_until(
        lambda: (
            sum(1 for e in letters(kafka).values() if e.letter.kind == UNDECODABLE and run_id.encode() in (e.letter.raw_value or b"")) == 2
        ),
        timeout=60,
        message="two undecodable dead letters",
    )
    key = next(k for k in (f"after-poison-{n}" for n in range(100)) if partition_for_key(k, TASK_PARTITIONS) == 1)
    send_keyed(client_app, "demo_app.tasks.record", key, key, 0, run_id)
    wait_until(lambda: workers[1].records(run_id), message="a task after the poison records")
    assert workers[1].alive


def test_worker_killed_mid_task_redelivers_then_dead_letters(kafka, client_app, workers, run_id):
    key = next(k for k in (f"crash-{n}" for n in range(100)) if partition_for_key(k, TASK_PARTITIONS) == 2)
    worker = workers[2]
    send_keyed(client_app, "demo_app.faults.crash", key, run_id)
    send_keyed(client_app, "demo_app.tasks.record", key, key, 1, run_id)
    # Play systemd: start the worker again every time it dies. It must die exactly max_deliveries (3) times.
    deaths = 0
    for _ in range(3):
        wait_until(lambda: not worker.alive, timeout=60, message="the worker to be killed by the crash task")
        deaths += 1
        worker.start()
    entry = wait_until(
        lambda: find(
            kafka,
            lambda letter: letter.kind == REDELIVERY_LIMIT and letter.task_name == "demo_app.faults.crash" and run_id in letter.args,
        ),
        timeout=60,
        message="the redelivery-limit dead letter",
    )
    assert "delivered 3 times" in entry.letter.reason
    [row] = wait_until(lambda: worker.records(run_id), message="the task queued behind the crash")
    assert row["seq"] == 1 and worker.alive and deaths == 3


def test_offsets_survive_a_worker_restart(kafka, client_app, workers, run_id):
    worker = workers[0]
    key = next(k for k in (f"restart-{n}" for n in range(100)) if partition_for_key(k, TASK_PARTITIONS) == 0)
    send_keyed(client_app, "demo_app.tasks.record", key, key, 0, run_id)
    wait_until(lambda: worker.records(run_id), message="the first task")
    worker.stop()
    for seq in range(1, 6):
        send_keyed(client_app, "demo_app.tasks.record", key, key, seq, run_id)
    worker.start()
    rows = wait_until(
        lambda: (lambda r: r if len(r) >= 6 else None)(worker.records(run_id)), timeout=90, message="the tasks sent while stopped"
    )
    assert [row["seq"] for row in rows] == list(range(6)), "each task exactly once, in order, across the restart"
    wait_until(lambda: (lambda c, e: c == e)(*committed_and_end(kafka, "celery.tasks", 0)), timeout=30, message="partition 0 committed")
