"""The Kafka modules' pure logic in module_utils (kafka_topics, kafka_cluster_health, kafka_scram_users and the tool
arguments in kafka_cli), fed with output recorded from Kafka 4.3.1's tools."""

from __future__ import annotations

import zipfile

import pytest

from kafka_cli import CONFIG_COMMAND_CANDIDATES, find_main_class, quorum_describe_args, with_command_config
from kafka_cluster_health import QuorumReplica, assess_health, parse_quorum_replication, parse_quorum_status
from kafka_scram_users import parse_user_scram_describe, plan_scram_users, scram_add_config, scram_fingerprint
from kafka_topics import (
    PlanError,
    TopicState,
    add_config_argument,
    config_value,
    parse_config_describe,
    parse_topic_describe,
    plan_topic,
)

DESCRIBE = (
    "Topic: demo\tTopicId: vL6aZ98pQsalvvlpFc_iDQ\tPartitionCount: 3\tReplicationFactor: 3\t"
    "Configs: min.insync.replicas=2,segment.bytes=1073741824\n"
    "\tTopic: demo\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\tElr: \tLastKnownElr: \n"
    "\tTopic: demo\tPartition: 1\tLeader: 2\tReplicas: 2,3,1\tIsr: 2,3\tElr: \tLastKnownElr: \n"
    "\tTopic: demo\tPartition: 2\tLeader: none\tReplicas: 3,1,2\tIsr: \tElr: \tLastKnownElr: \n"
    "Topic: other\tTopicId: aaaaaaaaaaaaaaaaaaaaaa\tPartitionCount: 1\tReplicationFactor: 1\tConfigs: \n"
    "\tTopic: other\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr: \n"
)

CONFIGS = (
    "Dynamic configs for topic demo are:\n"
    "  retention.ms=604800000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=604800000}\n"
    "  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete}\n"
    "Dynamic configs for topic other are:\n"
)

STATUS = (
    "ClusterId:              _K9OHUvpQVuw8h0xHlwq3w\n"
    "LeaderId:               2\n"
    "LeaderEpoch:            4\n"
    "HighWatermark:          66\n"
    "MaxFollowerLag:         0\n"
    "MaxFollowerLagTimeMs:   0\n"
    'CurrentVoters:          [{"id": 1, "endpoints": ["CONTROLLER://kafka1:9093"]}]\n'
    "CurrentObservers:       []\n"
)

REPLICATION = (
    "NodeId\tDirectoryId           \tLogEndOffset\tLag\tLastFetchTimestamp\tLastCaughtUpTimestamp\tStatus\t\n"
    "2     \tAAAAAAAAAAAAAAAAAAAAAA\t69          \t0  \t1795224632254     \t1795224632254        \tLeader\t\n"
    "1     \tAAAAAAAAAAAAAAAAAAAAAA\t69          \t0  \t1795224632250     \t1795224632250        \tFollower\t\n"
    "3     \tAAAAAAAAAAAAAAAAAAAAAA\t12          \t57 \t1795224632100     \t1795224631000        \tFollower\t\n"
    "4     \tAAAAAAAAAAAAAAAAAAAAAA\t69          \t0  \t1795224632200     \t1795224632200        \tObserver\t\n"
)


def test_parse_topic_describe_reads_counts_replicas_and_isr():
    topics = parse_topic_describe(DESCRIBE)
    assert set(topics) == {"demo", "other"}
    demo = topics["demo"]
    assert (demo.partition_count, demo.replication_factor) == (3, 3)
    assert [p.isr for p in demo.partitions] == [[1, 2, 3], [2, 3], []]
    assert demo.partitions[1].replicas == [2, 3, 1]
    assert demo.partitions[2].leader is None


def test_parse_topic_describe_accepts_filtered_output_without_headers():
    under_replicated = "\tTopic: demo\tPartition: 1\tLeader: 2\tReplicas: 2,3,1\tIsr: 2,3\tElr: \tLastKnownElr: \n"
    topics = parse_topic_describe(under_replicated)
    assert [p.partition for p in topics["demo"].partitions] == [1]


def test_parse_config_describe_keeps_only_topic_overrides_and_commas():
    configs = parse_config_describe(CONFIGS)
    assert configs == {"demo": {"retention.ms": "604800000", "cleanup.policy": "compact,delete"}, "other": {}}


def test_parse_quorum_status_and_replication():
    status = parse_quorum_status(STATUS)
    assert status["LeaderId"] == "2"
    assert status["CurrentVoters"].startswith("[{")
    replicas = parse_quorum_replication(REPLICATION)
    assert [(r.node_id, r.lag, r.status) for r in replicas] == [
        (2, 0, "Leader"),
        (1, 0, "Follower"),
        (3, 57, "Follower"),
        (4, 0, "Observer"),
    ]


def state(partitions: int = 3, replication: int = 3, config: dict | None = None) -> TopicState:
    return TopicState(name="t", partition_count=partitions, replication_factor=replication, config=config or {})


def test_plan_creates_missing_topic_with_its_configs():
    plan = plan_topic({"name": "t", "partitions": 3, "replication_factor": 3, "config": {"retention.ms": 10}}, None)
    assert plan.create and plan.partitions_to == 3 and plan.config_changes == {"retention.ms": "10"}


def test_plan_is_empty_when_cluster_matches():
    desired = {"name": "t", "partitions": 3, "replication_factor": 3, "config": {"retention.ms": 10}}
    assert not plan_topic(desired, state(config={"retention.ms": "10"})).changed


def test_plan_raises_partitions_and_sets_only_differing_configs():
    desired = {"name": "t", "partitions": 6, "replication_factor": 3, "config": {"retention.ms": 10, "min.insync.replicas": 2}}
    plan = plan_topic(desired, state(config={"min.insync.replicas": "2"}))
    assert (plan.partitions_from, plan.partitions_to) == (3, 6)
    assert plan.config_changes == {"retention.ms": "10"}


def test_plan_refuses_to_lower_partitions():
    with pytest.raises(PlanError, match="refusing to lower partitions from 6 to 3"):
        plan_topic({"name": "t", "partitions": 3, "replication_factor": 3}, state(partitions=6))


@pytest.mark.parametrize(("declared", "verb"), [(2, "lower"), (4, "raise")])
def test_plan_refuses_to_change_replication(declared, verb):
    with pytest.raises(PlanError, match=f"refusing to {verb} the replication factor from 3 to {declared}"):
        plan_topic({"name": "t", "partitions": 3, "replication_factor": declared}, state())


def test_config_values_render_like_kafka():
    assert config_value(True) == "true"
    assert config_value(["compact", "delete"]) == "compact,delete"
    assert add_config_argument({"retention.ms": "1", "cleanup.policy": "compact,delete"}) == (
        "cleanup.policy=[compact,delete],retention.ms=1"
    )


def test_find_main_class_prefers_the_newest_location(tmp_path):
    libs = tmp_path / "libs"
    libs.mkdir()
    with zipfile.ZipFile(libs / "kafka_2.13-4.3.1.jar", "w") as jar:
        jar.writestr("kafka/admin/ConfigCommand.class", b"")
    assert find_main_class(str(tmp_path), CONFIG_COMMAND_CANDIDATES) == "kafka.admin.ConfigCommand"
    with zipfile.ZipFile(libs / "kafka-tools-4.4.0.jar", "w") as jar:
        jar.writestr("org/apache/kafka/tools/ConfigCommand.class", b"")
    assert find_main_class(str(tmp_path), CONFIG_COMMAND_CANDIDATES) == "org.apache.kafka.tools.ConfigCommand"
    assert find_main_class(str(tmp_path), ("no.such.Class",)) is None


def test_plan_refusal_carries_the_topics_hint():
    desired = {"name": "t", "partitions": 3, "replication_factor": 3, "hint": "Give the partition to a replacement host."}
    with pytest.raises(PlanError, match=r"lower partitions from 4 to 3\. .* Give the partition to a replacement host\.$"):
        plan_topic(desired, state(partitions=4))


USERS_DESCRIBE = (
    "SCRAM credential configs for user-principal 'kafka-broker' are SCRAM-SHA-512=iterations=4096\n"
    "SCRAM credential configs for user-principal 'celery' are SCRAM-SHA-256=iterations=8192, SCRAM-SHA-512=iterations=8192\n"
    "Quota configs for user-principal 'other' are producer_byte_rate=1024\n"
)


def test_parse_user_scram_describe_lists_mechanisms_per_user():
    assert parse_user_scram_describe(USERS_DESCRIBE) == {
        "kafka-broker": {"SCRAM-SHA-512"},
        "celery": {"SCRAM-SHA-256", "SCRAM-SHA-512"},
    }


def test_plan_scram_users_sets_only_missing_unknown_or_changed_passwords():
    mechanism = "SCRAM-SHA-512"
    salt = "00" * 16
    state = {
        "celery": {"mechanism": mechanism, "salt": salt, "fingerprint": scram_fingerprint("pw1", salt, mechanism)},
        "kafka-broker": {"mechanism": mechanism, "salt": salt, "fingerprint": scram_fingerprint("b", salt, mechanism)},
    }
    existing = parse_user_scram_describe(USERS_DESCRIBE)
    users = [
        {"name": "kafka-broker", "password": "b"},  # unchanged
        {"name": "celery", "password": "pw2"},  # changed password
        {"name": "exporter", "password": "x"},  # not in Kafka yet
    ]
    assert plan_scram_users(users, mechanism, existing, state) == ["celery", "exporter"]
    # Bootstrapped at format time but never set by the module: set once, so its fingerprint is known afterwards.
    assert plan_scram_users([{"name": "kafka-broker", "password": "b"}], mechanism, existing, {}) == ["kafka-broker"]
    # Another mechanism than the one the credential exists for.
    assert plan_scram_users([{"name": "kafka-broker", "password": "b"}], "SCRAM-SHA-256", existing, state) == ["kafka-broker"]


def test_scram_fingerprint_is_salted_and_hides_the_password():
    first = scram_fingerprint("secret", "01" * 16, "SCRAM-SHA-512")
    assert first != scram_fingerprint("secret", "02" * 16, "SCRAM-SHA-512")
    assert "secret" not in first


def test_scram_add_config_line_and_command_config():
    assert scram_add_config("SCRAM-SHA-512", "pw", 8192) == "SCRAM-SHA-512=iterations=8192,password=pw\n"
    assert with_command_config(["--describe"], "/etc/kafka/admin-client.properties") == [
        "--describe",
        "--command-config",
        "/etc/kafka/admin-client.properties",
    ]
    assert with_command_config(["--describe"], None) == ["--describe"]


def test_quorum_describe_puts_the_client_config_before_the_subcommand():
    # 4.3.1's MetadataQuorumCommand refuses options after `describe` ("unrecognized arguments: '--command-config'").
    assert quorum_describe_args("c1:9093", "/etc/kafka/controller-client.properties", "--status") == [
        "--bootstrap-controller",
        "c1:9093",
        "--command-config",
        "/etc/kafka/controller-client.properties",
        "describe",
        "--status",
    ]
    assert quorum_describe_args("c1:9093", None, "--replication") == ["--bootstrap-controller", "c1:9093", "describe", "--replication"]


def test_assess_health_names_every_problem_of_a_sick_cluster():
    problems, under_replicated, unavailable = assess_health(
        parse_quorum_replication(REPLICATION), parse_topic_describe(DESCRIBE), expected_voters=3, require_node=4, max_lag=10
    )
    assert under_replicated == ["demo:1"]
    assert unavailable == ["demo:2"]
    assert problems == [
        "voter 3 trails the leader by 57 records",
        "1 under-replicated partition(s): demo:1",
        "1 partition(s) without a leader: demo:2",
    ]


def test_assess_health_of_a_healthy_cluster_and_of_missing_answers():
    healthy = [QuorumReplica(1, 9, 0, "Leader"), QuorumReplica(2, 9, 0, "Follower"), QuorumReplica(3, 9, 0, "Follower")]
    assert assess_health(healthy, {"other": parse_topic_describe(DESCRIBE)["other"]}, expected_voters=3, require_node=2) == ([], [], [])
    leaderless = [QuorumReplica(1, 9, 0, "Follower"), QuorumReplica(2, 9, 0, "Follower")]
    problems, _, _ = assess_health(leaderless, None, expected_voters=3, require_node=5)
    assert problems == [
        "the KRaft quorum has no leader",
        "the quorum has 2 voters, expected 3",
        "node 5 is not part of the quorum yet",
    ]
    # A tool that failed is reported by the module itself; the other side is still judged.
    assert assess_health(None, None, expected_voters=3, require_node=1) == ([], [], [])


def test_assess_health_flags_a_node_that_stopped_fetching_though_its_lag_is_small():
    # A stopped controller keeps the lag it had; only the leader's clock shows it went quiet (here 20 s ago).
    quorum = [
        QuorumReplica(1, 90, 0, "Leader", last_fetch_ms=1_000_000),
        QuorumReplica(2, 90, 0, "Follower", last_fetch_ms=999_900),
        QuorumReplica(3, 88, 2, "Follower", last_fetch_ms=980_000),
    ]
    problems, _, _ = assess_health(quorum, None, expected_voters=3)
    assert problems == ["node 3 last fetched from the quorum leader 20 s ago"]
