"""Fixtures for the kafka scenario: hosts, addresses and Kafka tool runners."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "module_utils"))

KAFKA_HOME = "/opt/kafka/current"
BROKERS = ["kafka1", "kafka2", "kafka3"]


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="session")
def hosts() -> dict:
    return {name: _host(name) for name in BROKERS}


@pytest.fixture(scope="session")
def addresses(hosts) -> dict[str, str]:
    """Container addresses: the CLIENT listener advertises them, so clients on the controller reach each broker."""
    return {name: host.interface("eth0").addresses[0] for name, host in hosts.items()}


@pytest.fixture(scope="session")
def bootstrap(addresses) -> str:
    return ",".join(f"{ip}:9092" for ip in addresses.values())


def kafka_tool(host, main_class: str, args: str) -> str:
    """Run one of Kafka's admin tools inside a container and return its stdout (fails the test on error)."""
    result = host.run(f"java -cp '{KAFKA_HOME}/libs/*' {main_class} {args}")
    assert result.rc == 0, f"{main_class} {args} failed: {result.stderr[-2000:]}"
    return result.stdout
