"""A rolling Kafka upgrade under a keyed load, where the scenario deploys an older release (the day2 scenario: 4.2.1,
in its hosts.yml): the metadata version is refused while a node runs the old release, then the documented inventory
change (kafka_version, kafka_metadata_version) and playbooks/kafka.yml upgrade one node at a time, controllers first,
and raise the metadata version after the last node. Every acknowledged message is still there, once and in key order.
Last in the scenario: nothing runs the old release's inventory after it.
"""

from __future__ import annotations

import json
import re

import pytest

from verify_support import UPGRADE_TARGET, KeyedLoad, host, inventory, kafka_release, kafka_tool, output, rolling_restart_by, run_playbook

TARGET, TARGET_METADATA = UPGRADE_TARGET, ".".join(UPGRADE_TARGET.split(".")[:2])
TOPOLOGY = inventory()
NODES = TOPOLOGY.kafka_nodes
# A setting rolled out with the release, so this roll also proves what test_config_change_rolls_one_node_at_a_time
# does (it is skipped where this test runs).
SETTING, VALUE = "log.cleaner.backoff.ms", 17000
release_of = kafka_release


def finalized_metadata_version() -> str:
    broker = TOPOLOGY.brokers[0]
    described = kafka_tool(host(broker), "org.apache.kafka.tools.FeatureCommand", f"--bootstrap-server {broker}:9091 describe")
    found = re.search(r"Feature: metadata\.version\s.*FinalizedVersionLevel: (\S+)", described)
    assert found, described
    return found.group(1)


pytestmark = pytest.mark.skipif(
    all(release_of(name) == TARGET for name in NODES), reason=f"this scenario deploys {TARGET} already: nothing to upgrade"
)


def test_the_metadata_version_is_refused_while_a_node_runs_the_old_release():
    before = finalized_metadata_version()
    change = json.dumps({"kafka_metadata_version": TARGET_METADATA})
    run = run_playbook("playbooks/kafka.yml", "--tags", "kafka_metadata_version", "-e", change)
    assert run.returncode != 0, "the metadata version was raised on an old release"
    assert f"kafka_metadata_version {TARGET_METADATA} needs every node on release {TARGET_METADATA} or newer" in output(run)
    assert finalized_metadata_version() == before


def test_a_rolling_upgrade_under_a_keyed_load_loses_nothing_and_raises_the_metadata_version_last():
    old = {name: release_of(name) for name in NODES}
    metadata_before = finalized_metadata_version()
    assert all(version != TARGET for version in old.values()), old
    change = {"kafka_version": TARGET, "kafka_metadata_version": TARGET_METADATA, "kafka_extra_properties": {SETTING: VALUE}}
    with KeyedLoad("upgrade.load") as load:
        summary = rolling_restart_by(change)
    assert {name: release_of(name) for name in NODES} == dict.fromkeys(NODES, TARGET)
    for name in NODES:
        assert f"{SETTING}={VALUE}" in host(name).file("/etc/kafka/server.properties").content_string
    metadata_after = finalized_metadata_version()
    assert metadata_after.startswith(TARGET_METADATA + "-"), metadata_after
    figures = load.report()
    print(f"\nupgrade {sorted(set(old.values()))} -> {TARGET}, metadata {metadata_before} -> {metadata_after}: {summary}; {figures}")
    assert figures["failed"] == figures["lost"] == figures["duplicates"] == figures["keys out of order"] == 0, load.failed[:3]
