"""The project-wide wiring group_vars/all.yml derives from the inventory (playbooks/filter_plugins/stack_wiring.py)."""

from __future__ import annotations

from repo_files import load

stack_wiring = load("playbooks/filter_plugins/stack_wiring.py", "stack_wiring")
TASKS = "celery.tasks"


def test_brokers_are_named_by_their_listener_host_else_their_inventory_name_with_the_listener_port() -> None:
    hostvars = {
        "kafka1": {"kafka_listener_host": "10.0.0.1", "kafka_client_port": 19092},
        "kafka2": {},
        "kafka3": {"kafka_listener_host": ""},
    }

    servers = stack_wiring.kafka_bootstrap_servers(["kafka1", "kafka2", "kafka3"], hostvars, "kafka_client_port", 9092)

    assert servers == ["10.0.0.1:19092", "kafka2:9092", "kafka3:9092"]
    assert stack_wiring.kafka_bootstrap_servers([], hostvars, "kafka_client_port", 9092) == []


def test_each_queue_has_as_many_partitions_as_its_hosts_own() -> None:
    hostvars = {
        "w1": {},
        "w2": {"celery_worker_partitions": [1, 2]},
        "w3": {"celery_worker_partitions": None, "celery_worker_partition": 3},
        "e1": {"celery_worker_queue": "exports"},
    }

    counts = stack_wiring.queue_partition_counts(["w1", "w2", "w3", "e1"], hostvars, TASKS)

    assert counts == {TASKS: 4, "exports": 1}


def test_the_task_topic_keeps_its_default_while_no_host_consumes_it() -> None:
    counts = stack_wiring.queue_partition_counts(["e1"], {"e1": {"celery_worker_queue": "exports"}}, TASKS)

    assert counts == {TASKS: 3, "exports": 1}
    assert stack_wiring.queue_partition_counts([], {}, TASKS) == {TASKS: 3}
