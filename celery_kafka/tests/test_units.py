"""Pure parts of the package: partitioning, envelopes, dead letters, cgroup reading, settings."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from celery_kafka.cgroup import read_memory
from celery_kafka.committing import retry_while_coordinator_moves
from celery_kafka.deadletter import REDELIVERY_LIMIT, TASK_FAILED, UNDECODABLE, DeadLetter, Source, encode_raw, letter_for
from celery_kafka.delivery import Delivery
from celery_kafka.envelope import TaskMessage, UndecodableMessage, decode_envelope, task_message
from celery_kafka.partitioning import murmur2, partition_for_key
from celery_kafka.settings import WorkerEnvironment, celery_settings
from celery_kafka.transport import bootstrap_servers

# Expected values from Kafka's own UtilsTest (Java ints).
MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "java"), MURMUR2_VECTORS.items())
def test_murmur2_matches_kafkas_java_implementation(data, java):
    assert murmur2(data) == java & 0xFFFFFFFF


def test_partition_for_key_is_stable_and_in_range():
    assert partition_for_key("customer-7", 3) == partition_for_key(b"customer-7", 3)
    assert {partition_for_key(f"k{n}", 4) for n in range(200)} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for_key("k", 0)


def envelope(task: str = "demo.add", args: list | None = None, headers: dict | None = None) -> bytes:
    body = base64.b64encode(json.dumps([args or [1, 2], {"x": 1}, {}]).encode()).decode()
    return json.dumps(
        {
            "body": body,
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "headers": {"task": task, "id": "abc", "retries": 2, "partition_key": "k1", **(headers or {})},
            "properties": {"body_encoding": "base64", "delivery_info": {}},
        }
    ).encode()


def test_task_message_reads_name_arguments_and_counters():
    message = task_message(decode_envelope(envelope(headers={"dlq_replays": 1})))
    assert (message.task_name, message.task_id, message.args, message.kwargs) == ("demo.add", "abc", [1, 2], {"x": 1})
    assert (message.retries, message.partition_key, message.replays) == (2, "k1", 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00\xff", "not JSON"),
        (b'{"hello": 1}', "not a kombu message envelope"),
        (envelope().replace(b"application/json", b"application/x-python-serialize"), "JSON only"),
        (None, "no value"),
    ],
)
def test_undecodable_records_are_recognised(raw, reason):
    with pytest.raises(UndecodableMessage, match=reason):
        task_message(decode_envelope(raw))


def test_dead_letter_round_trips_through_json():
    letter = DeadLetter(
        kind=TASK_FAILED,
        reason="RuntimeError after 2 retries",
        source=Source("celery.tasks", 1, 42, key="k1", headers={"a": "b"}),
        task_id="abc",
        task_name="demo.add",
        args=[1],
        partition_key="k1",
        retries=2,
        raw_value_b64=encode_raw(b"payload"),
    )
    again = DeadLetter.from_json(letter.to_json())
    assert again == letter and again.raw_value == b"payload" and again.replayable and again.record_key == b"k1"
    assert not DeadLetter(kind=UNDECODABLE, reason="x", source=Source("t", 0, 0)).replayable
    with pytest.raises(ValueError, match="unknown dead-letter kind"):
        DeadLetter(kind="lost", reason="x", source=Source("t", 0, 0))


def test_the_dead_letter_of_a_delivery_keeps_its_source_and_value_and_the_task_when_there_is_one():
    delivery = Delivery("celery.tasks", 2, 7, attempt=4, key=b"k\xff", timestamp_ms=5, headers={"h": "v"}, raw_value=b"\x00raw")
    undecodable = letter_for(delivery, UNDECODABLE, "not JSON")
    assert undecodable.source == Source("celery.tasks", 2, 7, timestamp_ms=5, key="k\ufffd", headers={"h": "v"})
    assert undecodable.raw_value == b"\x00raw" and undecodable.task_name is None and not undecodable.replayable
    task = TaskMessage("id-1", "demo.add", [1, 2], {"z": 3}, retries=1, partition_key="k", replays=2)
    died = letter_for(delivery, REDELIVERY_LIMIT, "delivered 3 times", task)
    assert (died.task_id, died.task_name, died.args, died.kwargs) == ("id-1", "demo.add", [1, 2], {"z": 3})
    assert (died.partition_key, died.retries, died.replays, died.record_key) == ("k", 1, 2, b"k")
    assert died.replayable and DeadLetter.from_json(died.to_json()) == died


def test_cgroup_v1_memory_limit_of_a_systemd_unit(tmp_path: Path):
    unit = tmp_path / "memory" / "system.slice" / "celery-worker@2.service"
    unit.mkdir(parents=True)
    (unit / "memory.limit_in_bytes").write_text("2147483648\n")
    (unit / "memory.usage_in_bytes").write_text("52428800\n")
    proc = tmp_path / "cgroup"
    proc.write_text("12:memory:/system.slice/celery-worker@2.service\n1:name=systemd:/system.slice/celery-worker@2.service\n")
    reading = read_memory(proc, tmp_path)
    assert (reading.usage_bytes, reading.limit_bytes) == (52428800, 2147483648)


def test_cgroup_v1_without_limit_and_v2(tmp_path: Path):
    v1 = tmp_path / "memory" / "x"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory.usage_in_bytes").write_text("1\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/x\n")
    assert read_memory(proc, tmp_path).limit_bytes is None
    v2 = tmp_path / "v2"
    (v2 / "svc").mkdir(parents=True)
    (v2 / "svc" / "memory.max").write_text("1073741824\n")
    (v2 / "svc" / "memory.current").write_text("1000\n")
    proc.write_text("0::/svc\n")
    assert read_memory(proc, v2).limit_bytes == 1073741824


def test_settings_fit_kafka():
    env = WorkerEnvironment.from_environ({"CELERY_KAFKA_BROKERS": "k1:9092,k2:9092", "CELERY_KAFKA_PARTITION": "2"})
    assert env.broker_url == "partitionedkafka://k1:9092;partitionedkafka://k2:9092" and env.partition == 2
    settings = celery_settings(env)
    assert settings["accept_content"] == ["json"] and settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["worker_prefetch_multiplier"] == 1 and not settings["worker_enable_remote_control"]
    assert WorkerEnvironment.from_environ({}).partition is None
    assert settings["task_ignore_result"] and settings["result_backend"] is None


def test_a_result_backend_of_the_users_choosing_is_passed_through():
    env = WorkerEnvironment.from_environ({"CELERY_KAFKA_BROKERS": "k1:9092", "CELERY_KAFKA_RESULT_BACKEND": "redis://cache:6379/1"})
    settings = celery_settings(env)
    assert settings["result_backend"] == "redis://cache:6379/1" and not settings["task_ignore_result"]


def test_configure_applies_the_kafka_side_to_an_existing_app_and_refuses_when_too_late():
    from celery import Celery, Task

    import celery_kafka

    app = Celery("shop")
    assert celery_kafka.configure(app, WorkerEnvironment(brokers=["k1:9092"])) is app

    @app.task(name="shop.ship")
    def ship() -> None: ...

    app.finalize()
    assert isinstance(app.tasks["shop.ship"], celery_kafka.DeadLetteringTask)
    assert app.conf.broker_url == "partitionedkafka://k1:9092" and app.conf.task_acks_late

    late = Celery("late")
    assert late.Task is not None and issubclass(late.Task, Task)  # the task class is built with Celery's default base
    with pytest.raises(celery_kafka.ConfigureError, match="right after Celery"):
        celery_kafka.configure(late)


def test_transport_helpers():
    assert bootstrap_servers([("k1", 9092), ("k2", None), ("k1", 9092)]) == "k1:9092,k2:9092"


def test_lag_counts_from_commit_or_from_log_start() -> None:
    from celery_kafka.lag_exporter import PartitionOffsets, group_lags

    offsets = {
        ("tasks", 0): PartitionOffsets("tasks", 0, earliest=0, latest=1100),
        ("tasks", 1): PartitionOffsets("tasks", 1, earliest=40, latest=50),
        ("other", 0): PartitionOffsets("other", 0, earliest=0, latest=9),
    }
    lags = group_lags(offsets, {"workers": {("tasks", 0): 100}})
    assert [(lag.topic, lag.partition, lag.lag) for lag in lags] == [("tasks", 0, 1000), ("tasks", 1, 10)]


def test_a_commit_is_retried_while_the_group_coordinator_moves():
    from confluent_kafka import KafkaError, KafkaException

    retriable = (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR)
    answers = [KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR, None]

    def commit() -> str:
        code = answers.pop(0)
        if code is not None:
            raise KafkaException(KafkaError(code))
        return "committed"

    assert retry_while_coordinator_moves(commit, retriable, pause=0) == "committed" and answers == []

    def refused() -> None:
        raise KafkaException(KafkaError(KafkaError.OFFSET_OUT_OF_RANGE))

    with pytest.raises(KafkaException):
        retry_while_coordinator_moves(refused, retriable, pause=0)

    def never_ready() -> None:
        raise KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS))

    with pytest.raises(KafkaException):
        retry_while_coordinator_moves(never_ready, retriable, timeout=0.05, pause=0.01)


def test_each_wait_for_the_coordinator_is_logged_at_the_callers_level(caplog: pytest.LogCaptureFixture):
    import logging

    from confluent_kafka import KafkaError, KafkaException

    answers = [KafkaError.COORDINATOR_NOT_AVAILABLE, None]

    def read() -> str:
        code = answers.pop(0)
        if code is not None:
            raise KafkaException(KafkaError(code))
        return "offset"

    with caplog.at_level(logging.DEBUG, logger="celery_kafka.committing"):
        retriable = (KafkaError.COORDINATOR_NOT_AVAILABLE,)
        assert retry_while_coordinator_moves(read, retriable, pause=0, waiting="waiting", log_level=logging.INFO) == "offset"
    assert [(record.levelno, record.getMessage().split(":")[0]) for record in caplog.records] == [
        (logging.INFO, "waiting for the group coordinator")
    ]


def test_beat_entries_are_sent_keyed_by_their_name_unless_they_name_a_key():
    from celery.beat import ScheduleEntry

    from celery_kafka.beat import keyed_options

    plain = ScheduleEntry(name="nightly-report", task="shop.report", schedule=60.0, options={"queue": "celery.tasks"})
    assert keyed_options(plain) == {"queue": "celery.tasks", "headers": {"partition_key": "nightly-report"}}
    own = ScheduleEntry(name="sync", task="shop.sync", schedule=60.0, options={"headers": {"partition_key": "acct-7", "x": 1}})
    assert keyed_options(own)["headers"] == {"partition_key": "acct-7", "x": 1}
