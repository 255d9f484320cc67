"""Fixtures for the Kafka scenarios: the topology read from the scenario's inventory, hosts, addresses, tool runners.

The same tests serve the combined scenario (`kafka`: three broker+controller nodes) and the dedicated one
(`kafka_dedicated`: three brokers, three controllers), so nothing here assumes a topology.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "module_utils"))

KAFKA_HOME = "/opt/kafka/current"
# The scenario's inventory directory: the generated file plus the linked hosts.yml and group_vars.
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)


@dataclass(frozen=True)
class Topology:
    brokers: list[str]
    controllers: list[str]
    node_ids: dict[str, int]

    @property
    def dedicated(self) -> bool:
        return set(self.controllers) != set(self.brokers)

    @property
    def nodes(self) -> list[str]:
        return self.brokers + [name for name in self.controllers if name not in self.brokers]

    def ids(self, names: list[str]) -> list[int]:
        return sorted(self.node_ids[name] for name in names)


def read_topology() -> Topology:
    listing = json.loads(
        subprocess.run(
            [str(Path(sys.executable).parent / "ansible-inventory"), "-i", INVENTORY, "--list"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )

    def group(name: str) -> list[str]:
        return sorted(listing.get(name, {}).get("hosts", []))

    brokers = group("kafka")
    controllers = group("kafka_controller") or brokers
    hostvars = listing["_meta"]["hostvars"]
    return Topology(brokers, controllers, {name: int(hostvars[name]["kafka_node_id"]) for name in set(brokers + controllers)})


TOPOLOGY = read_topology()


@pytest.fixture(scope="session")
def topology() -> Topology:
    return TOPOLOGY


@pytest.fixture(scope="session")
def hosts() -> dict:
    return {
        name: testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]) for name in TOPOLOGY.nodes
    }


@pytest.fixture(scope="session")
def addresses(hosts) -> dict[str, str]:
    """Container addresses: the CLIENT listener advertises them, so clients on the controller reach each broker."""
    return {name: host.interface("eth0").addresses[0] for name, host in hosts.items()}


@pytest.fixture(scope="session")
def bootstrap(addresses) -> str:
    return ",".join(f"{addresses[name]}:9092" for name in TOPOLOGY.brokers)


def kafka_tool(host, main_class: str, args: str) -> str:
    """Run one of Kafka's admin tools inside a container and return its stdout (fails the test on error)."""
    result = host.run(f"java -cp '{KAFKA_HOME}/libs/*' {main_class} {args}")
    assert result.rc == 0, f"{main_class} {args} failed: {result.stderr[-2000:]}"
    return result.stdout
