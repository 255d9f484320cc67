"""The Kafka preflight refuses bad inventories with a clear message before anything changes.

Each case writes an inventory, runs the real playbook with only its preflight play (`--tags kafka_preflight`) and
checks the exit code, the message, and that no later play started. A good inventory is the control: it must pass.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible_run import LOCAL_CONNECTION, run_playbook, write_local_inventory
from ansible_run import assert_refused as shared_assert_refused

REPO = Path(__file__).resolve().parents[1]


def write_inventory(
    tmp_path: Path, brokers: dict[str, int | None], controllers: dict[str, int] | None = None, extra: dict | None = None
) -> Path:
    archive = tmp_path / "kafka_2.13-4.3.1.tgz"
    archive.write_bytes(b"not a real archive; preflight only checks it exists")

    def hosts(spec: dict) -> dict:
        return {name: ({} if node_id is None else {"kafka_node_id": node_id}) for name, node_id in spec.items()}

    variables = {"kafka_archive_source": "local", "kafka_archive_local_path": str(archive), **(extra or {})}
    return write_local_inventory(tmp_path / "hosts.yml", variables, {"kafka": hosts(brokers), "kafka_controller": hosts(controllers or {})})


def run_preflight(inventory: Path, extra: dict | None = None) -> subprocess.CompletedProcess:
    return run_playbook("playbooks/kafka.yml", inventory, "--tags", "kafka_preflight", "-e", json.dumps(extra or {}))


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    shared_assert_refused(result, message, never_started=("Install and configure Kafka nodes", "Install and run the worker nodes"))


THREE = {"kafka1": 1, "kafka2": 2, "kafka3": 3}


def test_good_inventory_passes(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_good_inventory_with_dedicated_controllers_passes(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, {"ctl1": 11, "ctl2": 12, "ctl3": 13}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_even_number_of_dedicated_controllers_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, {"ctl1": 11, "ctl2": 12}))
    assert_refused(result, "KRaft needs an odd number of controllers for a majority quorum")
    assert_refused(result, "but 2 are configured (ctl1, ctl2)")


def test_even_number_of_combined_nodes_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, {**THREE, "kafka4": 4}))
    assert_refused(result, "but 4 are configured (kafka1, kafka2, kafka3, kafka4)")


def test_duplicate_node_ids_are_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, {"kafka1": 1, "kafka2": 2, "kafka3": 2}))
    assert_refused(result, "Duplicate kafka_node_id values (kafka1=1, kafka2=2, kafka3=2)")


def test_missing_node_id_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, {"kafka1": 1, "kafka2": 2, "kafka3": None}))
    assert_refused(result, "kafka3 has no valid kafka_node_id")


def test_replication_above_broker_count_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, {"kafka1": 1, "kafka2": 2}, {"ctl1": 11, "ctl2": 12, "ctl3": 13}))
    assert_refused(result, "kafka_default_replication_factor=3 and kafka_min_insync_replicas=2 do not fit 2 broker(s)")


def test_topic_replication_above_broker_count_is_refused(tmp_path):
    inventory = write_inventory(
        tmp_path,
        {"kafka1": 1, "kafka2": 2},
        {"ctl1": 11, "ctl2": 12, "ctl3": 13},
        {"kafka_default_replication_factor": 2, "kafka_min_insync_replicas": 1},
    )
    assert_refused(run_preflight(inventory), "Topic 'celery.tasks' is declared with partitions=3, replication_factor=3")


def test_download_without_checksum_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra={"kafka_archive_source": "url"}))
    assert_refused(result, "kafka_archive_sha512 must be the 128-hex-digit sha512 Apache publishes")


def test_missing_local_archive_is_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra={"kafka_archive_local_path": "/nonexistent.tgz"}))
    assert_refused(result, "kafka_archive_local_path ('/nonexistent.tgz') must name an existing archive")


@pytest.mark.parametrize("cluster_id", ["short", "has spaces in it and more"])
def test_malformed_cluster_id_is_refused(tmp_path, cluster_id):
    result = run_preflight(write_inventory(tmp_path, THREE, extra={"kafka_cluster_id": cluster_id}))
    assert_refused(result, f"kafka_cluster_id '{cluster_id}' is not a 22-character base64url UUID")


def run_shipped_inventory(name: str, tmp_path: Path, extra: dict) -> subprocess.CompletedProcess:
    # The preflight looks for an installed Kafka on the first broker: keep that look on this machine.
    return run_preflight(REPO / "inventories" / name, {**LOCAL_CONNECTION, **extra})


def test_example_inventory_needs_the_release_checksum(tmp_path):
    assert_refused(run_shipped_inventory("example", tmp_path, {}), "kafka_archive_sha512 must be the 128-hex-digit sha512")


def test_example_inventory_passes_once_the_checksum_is_set(tmp_path):
    result = run_shipped_inventory("example", tmp_path, {"kafka_archive_sha512": "ab" * 64})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "kafka-controller-3.example.internal" in result.stdout


def test_local_inventory_passes(tmp_path):
    archive = tmp_path / "kafka.tgz"
    archive.write_bytes(b"x")
    jar = tmp_path / "agent.jar"
    jar.write_bytes(b"x")
    result = run_shipped_inventory("local", tmp_path, {"kafka_archive_local_path": str(archive), "kafka_jmx_exporter_local_path": str(jar)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


APP = {"celery_worker_app": "myshop.celery:app", "celery_worker_app_packages": ["myshop==1.4.2"]}


def run_worker_preflight(
    tmp_path: Path,
    workers: dict[str, int | dict | None],
    wheels: bool = True,
    app: dict | None = None,
    beat: tuple[str, ...] = (),
    brokers: tuple[str, ...] = ("k1",),
) -> subprocess.CompletedProcess:
    """Each worker: its partition (None: unset), or its host variables. `brokers`: the hosts of group kafka."""
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir(exist_ok=True)
    if wheels:
        (wheel_dir / "celery_kafka_partitioned-0.1.0-py3-none-any.whl").write_bytes(b"x")
        (wheel_dir / "myshop-1.4.2-py3-none-any.whl").write_bytes(b"x")
    hosts = {
        name: (spec if isinstance(spec, dict) else {} if spec is None else {"celery_worker_partition": spec})
        | ({"celery_worker_beat": True} if name in beat else {})
        for name, spec in workers.items()
    }
    variables = {"celery_worker_wheels_dir": str(wheel_dir), **(APP if app is None else app)}
    groups = {"celery_workers": hosts, "kafka": {name: {} for name in brokers}}
    inventory = write_local_inventory(tmp_path / "workers.yml", variables, groups)
    return run_playbook("playbooks/celery.yml", inventory, "--tags", "celery_preflight")


def test_workers_with_explicit_or_derived_partitions_pass(tmp_path):
    for workers in ({"w1": 0, "w2": 1, "w3": 2}, {"w1": None, "w2": None}):
        result = run_worker_preflight(tmp_path, workers)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_a_host_owning_several_partitions_passes_and_an_ambiguous_one_is_refused(tmp_path):
    workers = {"w1": 0, "w2": {"celery_worker_partitions": [2, 1]}}
    result = run_worker_preflight(tmp_path, workers)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    both = run_worker_preflight(tmp_path, {"w1": 0, "w2": {"celery_worker_partition": 1, "celery_worker_partitions": [1, 2]}})
    assert_refused(both, "w2 sets both celery_worker_partition and celery_worker_partitions: keep one.")


def test_workers_without_brokers_are_refused(tmp_path):
    assert_refused(run_worker_preflight(tmp_path, {"w1": 0}, brokers=()), "No brokers: set celery_worker_brokers")


def test_duplicate_worker_partition_is_refused(tmp_path):
    assert_refused(run_worker_preflight(tmp_path, {"w1": 0, "w2": 1, "w3": 1}), "found w1=0, w2=1, w3=1")


def test_gap_in_worker_partitions_is_refused(tmp_path):
    result = run_worker_preflight(tmp_path, {"w1": 0, "w2": 2})
    assert_refused(result, "Worker partitions must be 0..1")
    assert_refused(result, "a gap means a partition nobody consumes")


def test_partly_explicit_partitions_are_refused(tmp_path):
    assert_refused(run_worker_preflight(tmp_path, {"w1": 0, "w2": None}), "set it on all of them or on none")


def test_missing_worker_wheels_are_refused(tmp_path):
    assert_refused(run_worker_preflight(tmp_path, {"w1": 0}, wheels=False), "Build the package and its dependencies on the controller")


def test_worker_without_an_application_is_refused(tmp_path):
    assert_refused(run_worker_preflight(tmp_path, {"w1": 0}, app={}), "Set celery_worker_app to the Celery app the workers run")


def test_application_package_without_its_wheel_is_refused(tmp_path):
    result = run_worker_preflight(tmp_path, {"w1": 0}, app={**APP, "celery_worker_app_packages": ["myshop==1.5.0"]})
    assert_refused(result, "No wheel for myshop==1.5.0 in")
    unpinned = run_worker_preflight(tmp_path, {"w1": 0}, app={**APP, "celery_worker_app_packages": ["myshop"]})
    assert_refused(unpinned, "Pin each application package as name==version")


def test_celery_beat_on_two_hosts_is_refused(tmp_path):
    assert run_worker_preflight(tmp_path, {"w1": 0, "w2": 1}, beat=("w2",)).returncode == 0
    assert_refused(run_worker_preflight(tmp_path, {"w1": 0, "w2": 1}, beat=("w1", "w2")), "celery_worker_beat is true on w1, w2")


EXPORTS = {"celery_worker_queue": "exports", "celery_worker_concurrency": 4}


def test_each_queue_numbers_its_own_partitions(tmp_path):
    workers = {"w1": 0, "w2": 1, "e1": {**EXPORTS, "celery_worker_partition": 0}, "e2": {**EXPORTS, "celery_worker_partition": 1}}
    result = run_worker_preflight(tmp_path, workers)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_duplicate_partition_in_a_second_queue_is_refused(tmp_path):
    workers = {"w1": 0, "e1": {**EXPORTS, "celery_worker_partition": 0}, "e2": {**EXPORTS, "celery_worker_partition": 0}}
    result = run_worker_preflight(tmp_path, workers)
    assert_refused(result, "Worker partitions must be 0..1 for queue 'exports'")
    assert_refused(result, "found e1=0, e2=0")


def test_solo_pool_with_concurrency_is_refused(tmp_path):
    workers = {"w1": {"celery_worker_partition": 0, "celery_worker_pool": "solo", "celery_worker_concurrency": 3}}
    assert_refused(run_worker_preflight(tmp_path, workers), "w1 runs pool 'solo' with concurrency 3")


SASL = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_inter_broker_password": "inter-broker-pass"}


def test_sasl_inventory_with_usable_users_passes(tmp_path):
    extra = {
        **SASL,
        "kafka_scram_users": [{"name": "celery", "password": "celery-pass"}],
        "kafka_tls_dir": str(tmp_path.parent / f"{tmp_path.name}-pki"),
        "kafka_acls_enabled": True,
        "kafka_acls": [{"principal": "User:celery", "resource_type": "topic", "name": "celery.tasks", "operations": ["Read", "Describe"]}],
    }
    result = run_preflight(write_inventory(tmp_path, THREE, extra=extra))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_acls_without_authentication_are_refused(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra={"kafka_acls_enabled": True}))
    assert_refused(result, "kafka_acls_enabled needs kafka_security_protocol=SASL_SSL")


def test_an_acl_kafka_would_refuse_is_refused_before_anything_changes(tmp_path):
    acls = [
        {"principal": "User:celery", "resource_type": "group", "name": "celery.tasks.workers", "operations": ["Write"]},
        {"principal": "lag", "resource_type": "topic", "name": "*", "operations": ["Describe"]},
    ]
    extra = {**SASL, "kafka_tls_dir": str(tmp_path.parent / f"{tmp_path.name}-pki"), "kafka_acls_enabled": True, "kafka_acls": acls}
    result = run_preflight(write_inventory(tmp_path, THREE, extra=extra))
    assert_refused(result, "kafka_acls[0]: Write not allowed on a group")
    assert_refused(result, "kafka_acls[1]: principal 'lag' is not User:<name>")


def test_sasl_users_without_or_with_unusable_passwords_are_refused_by_name(tmp_path):
    users = [{"name": "celery"}, {"name": "lag", "password": 'has"quote'}, {"name": "celery", "password": "x"}]
    extra = {**SASL, "kafka_scram_users": users, "kafka_tls_dir": str(tmp_path.parent / f"{tmp_path.name}-pki")}
    result = run_preflight(write_inventory(tmp_path, THREE, extra=extra))
    assert_refused(result, "No password: celery")
    assert_refused(result, "Unusable characters in the password of: lag")
    assert_refused(result, "Given twice: celery")
    assert 'has"quote' not in result.stdout + result.stderr


def test_provided_ca_without_its_key_names_the_hosts_it_would_sign_for(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    extra = {
        **SASL,
        "kafka_tls_dir": str(tmp_path.parent / f"{tmp_path.name}-pki"),
        "kafka_tls_ca_source": "provided",
        "kafka_tls_ca_cert_file": str(ca),
        "kafka_tls_ca_key_file": str(tmp_path / "missing.key"),
    }
    assert_refused(run_preflight(write_inventory(tmp_path, THREE, extra=extra)), "(kafka1, kafka2, kafka3)")


def test_a_variable_under_its_old_name_is_refused_with_the_new_one(tmp_path):
    result = run_preflight(write_inventory(tmp_path, THREE, extra={"kafka_user": "kafka"}))
    assert_refused(result, "Renamed variables: kafka_user is now kafka_system_user")


def test_a_worker_broker_setting_under_its_old_name_is_refused(tmp_path):
    result = run_worker_preflight(tmp_path, {"w1": {"celery_worker_partition": 0, "celery_worker_kafka_port": 9093}})
    assert_refused(result, "celery_worker_kafka_port is now celery_worker_brokers")
