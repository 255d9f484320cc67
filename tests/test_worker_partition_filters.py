"""Partition ownership of the worker hosts (roles/celery_worker/filter_plugins/partition_ownership.py)."""

from __future__ import annotations

from repo_files import load

partition_ownership = load("roles/celery_worker/filter_plugins/partition_ownership.py", "partition_ownership")
TASKS = "celery.tasks"


def own(**hosts: dict) -> dict:
    return partition_ownership.ownership(list(hosts), hosts, TASKS)


def test_hosts_without_numbers_own_their_position_in_their_queue() -> None:
    result = own(w1={}, w2={}, e1={"celery_worker_queue": "exports"}, w3={})
    assert result["errors"] == []
    assert {host: entry["partitions"] for host, entry in result["hosts"].items()} == {"w1": [0], "w2": [1], "e1": [0], "w3": [2]}
    assert result["partitions"] == {TASKS: 3, "exports": 1}
    assert result["queues"] == [TASKS, "exports"]


def test_a_host_may_own_several_partitions_and_the_topic_counts_them_all() -> None:
    result = own(w1={"celery_worker_partition": 0}, w2={"celery_worker_partitions": [3, 1, 2]})
    assert result["errors"] == []
    assert result["hosts"]["w2"] == {"queue": TASKS, "partitions": [3, 1, 2]}
    assert result["partitions"] == {TASKS: 4}


def test_a_partition_set_to_null_counts_as_unset() -> None:
    # An inventory layered over another can only "unset" a variable by setting it to null.
    result = own(w1={"celery_worker_partition": 0}, w2={"celery_worker_partition": None, "celery_worker_partitions": [1, 2]})
    assert result["errors"] == [] and result["hosts"]["w2"]["partitions"] == [1, 2]


def test_a_partition_owned_twice_names_both_owners() -> None:
    result = own(w1={"celery_worker_partitions": [0, 1]}, w2={"celery_worker_partition": 1})
    assert len(result["errors"]) == 1
    assert "Worker partitions must be 0..2 for queue 'celery.tasks'" in result["errors"][0]
    assert "found w1=[0, 1], w2=1" in result["errors"][0]


def test_a_gap_and_partly_explicit_numbers_are_errors() -> None:
    (gap,) = own(w1={"celery_worker_partition": 0}, w2={"celery_worker_partition": 2})["errors"]
    assert "a gap means a partition nobody consumes" in gap
    (partly, *_) = own(w1={"celery_worker_partition": 0}, w2={})["errors"]
    assert "w2 do not: set it on all of them or on none" in partly


def test_malformed_partition_settings_are_errors() -> None:
    errors = own(
        w1={"celery_worker_partition": 0, "celery_worker_partitions": [0]},
        w2={"celery_worker_partitions": []},
        w3={"celery_worker_partitions": "1,2"},
        w4={"celery_worker_partition": "two"},
    )["errors"]
    assert "w1 sets both celery_worker_partition and celery_worker_partitions: keep one." in errors
    assert "w2 celery_worker_partitions must be a non-empty list of partition numbers." in errors
    assert "w3 celery_worker_partitions must be a list of partition numbers." in errors
    assert "w4 celery_worker_partition must be a partition number, not 'two'." in errors


def test_each_unit_of_a_node_serves_its_metrics_on_the_next_port() -> None:
    files = partition_ownership.unit_settings([2, 3], ["/etc/w/worker-2.env", "/etc/w/worker-3.env"], "9808")
    assert [entry["path"] for entry in files] == ["/etc/w/worker-2.env", "/etc/w/worker-3.env"]
    assert files[0]["content"] == "# celery-worker@2.service (managed by Ansible)\nCELERY_KAFKA_METRICS_PORT=9808\n"
    assert files[1]["content"].endswith("CELERY_KAFKA_METRICS_PORT=9809\n")
