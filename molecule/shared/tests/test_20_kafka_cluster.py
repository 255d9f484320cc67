"""The Kafka cluster of any topology (combined or dedicated controllers), read from the scenario's inventory: brokers
and quorum, declared topics, safety settings, the JMX exporter, the topic module, the playbook's refusals, one broker
down, and a configuration change rolled out one node at a time. Tests run in file order; the disruptive ones last.
"""

from __future__ import annotations

import json
import random

import pytest
import requests
from confluent_kafka.admin import ConfigResource

from kafka_cluster_health import parse_quorum_replication, parse_quorum_status
from verify_support import (
    DLQ_TOPIC,
    KAFKA_HOME,
    RESTART_FLAG,
    TASK_TOPIC,
    address,
    admin,
    host,
    inventory,
    kafka_tool,
    output,
    poll,
    produce_and_consume,
    rolling_config_change,
    run_module,
    run_playbook,
    unit_property,
    upgrade_pending,
    wait_full_isr,
)

TOPOLOGY = inventory()
QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-controller " + ",".join(f"{name}:9093" for name in TOPOLOGY.controllers)
FIRST, SECOND, LAST = TOPOLOGY.brokers[0], TOPOLOGY.brokers[1], TOPOLOGY.brokers[-1]


def test_three_brokers_registered():
    cluster = admin().describe_cluster(request_timeout=10).result()
    assert len(TOPOLOGY.brokers) == 3
    assert sorted(node.id for node in cluster.nodes) == TOPOLOGY.node_ids(TOPOLOGY.brokers)
    assert cluster.controller is not None


def test_quorum_has_three_voters_and_one_leader():
    status = parse_quorum_status(kafka_tool(host(FIRST), QUORUM, "describe --status"))
    replicas = parse_quorum_replication(kafka_tool(host(SECOND), QUORUM, "describe --replication"))
    voters = [r for r in replicas if r.status in ("Leader", "Follower")]
    assert sorted(r.node_id for r in voters) == TOPOLOGY.node_ids(TOPOLOGY.controllers)
    assert len(voters) == 3
    leaders = [r.node_id for r in replicas if r.status == "Leader"]
    assert len(leaders) == 1
    assert int(status["LeaderId"]) == leaders[0]
    if TOPOLOGY.dedicated:
        # Brokers follow the metadata log as observers, not voters.
        assert sorted(r.node_id for r in replicas if r.status == "Observer") == TOPOLOGY.node_ids(TOPOLOGY.brokers)


def test_declared_topics_fully_replicated():
    metadata = admin().list_topics(timeout=10)
    assert len(metadata.topics[TASK_TOPIC].partitions) == 3
    assert len(metadata.topics[DLQ_TOPIC].partitions) == 1
    for name in (TASK_TOPIC, DLQ_TOPIC):
        for pid, partition in metadata.topics[name].partitions.items():
            assert len(partition.replicas) == 3, f"{name}:{pid} replicas {partition.replicas}"
            assert sorted(partition.isrs) == sorted(partition.replicas), f"{name}:{pid} isr {partition.isrs}"


def test_dead_letter_topic_keeps_seven_days():
    resource = ConfigResource(ConfigResource.Type.TOPIC, DLQ_TOPIC)
    configs = admin().describe_configs([resource])[resource].result()
    assert configs["retention.ms"].value == "604800000"
    assert configs["min.insync.replicas"].value == "2"


def test_cluster_wide_safety_settings():
    for name in TOPOLOGY.kafka_nodes:
        lines = host(name).file("/etc/kafka/server.properties").content_string.splitlines()
        roles = [role for role, group in (("broker", TOPOLOGY.brokers), ("controller", TOPOLOGY.controllers)) if name in group]
        assert f"process.roles={','.join(roles)}" in lines
        if "broker" in roles:
            for line in (
                "min.insync.replicas=2",
                "default.replication.factor=3",
                "unclean.leader.election.enable=false",
                "auto.create.topics.enable=false",
            ):
                assert line in lines


def test_produce_through_one_broker_consume_through_another():
    produce_and_consume(f"{address(FIRST)}:9092", f"{address(SECOND)}:9092")


@pytest.mark.parametrize("name", TOPOLOGY.kafka_nodes)
def test_jmx_exporter_serves_kafka_metrics(name):
    body = requests.get(f"http://{address(name)}:7071/metrics", timeout=10).text
    if name in TOPOLOGY.brokers:
        assert "kafka_server_replicamanager_underreplicatedpartitions 0.0" in body
        assert "kafka_server_kafkaserver_brokerstate 3.0" in body
        assert "kafka_network_requestmetrics_requests_total{" in body
    if name in TOPOLOGY.controllers:
        assert "kafka_controller_kafkacontroller_activecontrollercount " in body
        assert "kafka_controller_kafkacontroller_offlinepartitionscount 0.0" in body
    assert 'kafka_server_raft_metrics_current_state{state="' in body


SCRATCH = "verify.scratch"


def topic_module(partitions: int, replication: int = 3):
    spec = {
        "bootstrap_servers": ",".join(f"{name}:9091" for name in TOPOLOGY.brokers),
        "kafka_home": KAFKA_HOME,
        "topics": [{"name": SCRATCH, "partitions": partitions, "replication_factor": replication, "config": {"retention.ms": 3600000}}],
    }
    return run_module(FIRST, "kafka_topics", spec)


# The topic module and the topic preflight talk to the brokers only: the controller topology changes nothing for them,
# so they run in the combined topology (default) and not again with dedicated controllers.
ONCE = pytest.mark.skipif(TOPOLOGY.dedicated, reason="topology-independent: checked in the combined topology (default scenario)")


def remove_scratch_topic() -> None:
    """A verify run earlier on the same cluster left the scratch topic with 4 partitions: start from none."""
    if SCRATCH in admin().list_topics(timeout=10).topics:
        admin().delete_topics([SCRATCH], operation_timeout=15)[SCRATCH].result(timeout=30)
        poll(lambda: SCRATCH not in admin().list_topics(timeout=10).topics, timeout=60, message=f"{SCRATCH} deleted")


@ONCE
def test_topic_module_creates_grows_and_refuses_to_shrink():
    remove_scratch_topic()
    created = topic_module(2)
    assert created.returncode == 0 and '"changed": true' in created.stdout, created.stdout[-3000:]
    grown = topic_module(4)
    assert f"raise {SCRATCH} partitions from 2 to 4" in grown.stdout, grown.stdout[-3000:]
    again = topic_module(4)
    assert again.returncode == 0 and '"changed": false' in again.stdout, again.stdout[-3000:]
    shrink = topic_module(3)
    assert shrink.returncode != 0
    assert "refusing to lower partitions from 4 to 3" in shrink.stdout, shrink.stdout[-3000:]
    replication = topic_module(4, replication=2)
    assert "refusing to lower the replication factor from 3 to 2" in replication.stdout, replication.stdout[-3000:]
    metadata = admin().list_topics(SCRATCH, timeout=10)
    assert len(metadata.topics[SCRATCH].partitions) == 4, "a refused change must leave the topic as it was"


@ONCE
def test_playbook_refuses_fewer_partitions_before_touching_brokers():
    run = run_playbook("playbooks/kafka.yml", "-e", json.dumps({"celery_task_topic_partitions": 2}))
    assert run.returncode != 0
    assert "refusing to lower partitions from 3 to 2" in output(run), output(run)[-3000:]
    assert "To retire a worker node, give its celery_worker_partition" in output(run)
    assert "PLAY [Install and configure Kafka nodes]" not in run.stdout, "the refusal must come before any broker task"
    assert len(admin().list_topics(TASK_TOPIC, timeout=10).topics[TASK_TOPIC].partitions) == 3


@pytest.mark.skipif(
    TOPOLOGY.dedicated, reason="checked in the combined topology, where the stopped broker is also a voter the gate must notice"
)
def test_rolling_restart_refuses_to_take_a_node_down_while_the_cluster_is_unhealthy():
    """The health gate's refusal path: with one broker stopped (and left out of the run, so the converge does not
    start it again), flagged nodes must not be restarted; the run stops, keeps the nodes flagged and names the problem.
    The nodes are flagged the way the role's README tells an operator to restart a cluster on purpose (touch the flag,
    run the kafka_restart tag); that a configuration change sets the flag is checked by every rolling-restart test."""
    running = [name for name in TOPOLOGY.brokers if name != LAST]
    setting = {"kafka_restart_health_retries": 3, "kafka_restart_health_delay": 2}
    host(LAST).run_expect([0], "systemctl stop kafka")
    try:
        assert not host(LAST).service("kafka").is_running, f"{LAST}'s kafka did not stop"
        started = {name: unit_property(host(name), "kafka.service", "ExecMainStartTimestampMonotonic") for name in running}
        for name in running:
            host(name).run_expect([0], f"touch {RESTART_FLAG}")
        run = run_playbook("site.yml", "--tags", "kafka_restart", "--limit", f"all:!{LAST}", "-e", json.dumps(setting))
        assert run.returncode != 0, "the rolling restart went ahead on an unhealthy cluster"
        assert "so that no second node goes down" in output(run), output(run)[-3000:]
        for name in running:
            now = unit_property(host(name), "kafka.service", "ExecMainStartTimestampMonotonic")
            assert now == started[name], f"{name} was restarted although the cluster was unhealthy"
            assert host(name).file(RESTART_FLAG).exists, f"{name} lost its restart-pending flag"
    finally:
        for name in running:
            host(name).run(f"rm -f {RESTART_FLAG}")
        host(LAST).run("systemctl start kafka")
    wait_full_isr()


@pytest.mark.skipif(
    bool(TOPOLOGY.workers), reason="with worker nodes in the scenario, test_40 checks tasks keep flowing with a broker down"
)
def test_cluster_survives_one_broker_down():
    host(LAST).run_expect([0], "systemctl stop kafka")
    try:
        assert not host(LAST).service("kafka").is_running, f"{LAST}'s kafka did not stop"
        # acks=all with min.insync.replicas=2 still succeeds with two of three replicas.
        for partition in range(3):
            produce_and_consume(f"{address(FIRST)}:9092", f"{address(SECOND)}:9092", partition)
    finally:
        host(LAST).run("systemctl start kafka")
    wait_full_isr()


@pytest.mark.skipif(
    bool(TOPOLOGY.workers), reason="with worker nodes in the scenario, the chaos fault 'rolling restart' makes this check under load"
)
@pytest.mark.skipif(upgrade_pending(), reason="the upgrade (test_90_upgrade.py) rolls a release and a setting out, same checks, under load")
def test_config_change_rolls_one_node_at_a_time():
    """Change a setting through the playbook and watch every node's own state while the change rolls out."""
    # A value that differs on every run, so re-running verify restarts the nodes again.
    print(rolling_config_change("log.cleaner.backoff.ms", random.randint(15001, 29999)))
    wait_full_isr()
