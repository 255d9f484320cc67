"""The shipped inventories parse to exactly the hosts and groups they mean (no stray file read as an inventory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {
    "local": {
        "kafka": ["kafka1", "kafka2", "kafka3"],
        "celery_workers": ["celery1", "celery2", "celery3"],
        "celery_exports": ["export1"],
        "monitoring": ["monitor1"],
    },
    "example": {
        "kafka": [f"kafka-broker-{n}.example.internal" for n in (1, 2, 3)],
        "kafka_controller": [f"kafka-controller-{n}.example.internal" for n in (1, 2, 3)],
        "celery_workers": [f"worker-{n}.example.internal" for n in (1, 2, 3)],
        "monitoring": ["monitoring-1.example.internal"],
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inventory_has_exactly_its_hosts(name: str) -> None:
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(REPO / "inventories" / name), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    inventory = json.loads(listing.stdout)
    groups = {group: sorted(inventory.get(group, {}).get("hosts", [])) for group in EXPECTED[name]}
    assert groups == {group: sorted(hosts) for group, hosts in EXPECTED[name].items()}
    every_host = set(inventory["_meta"]["hostvars"]) | {h for g in inventory.values() if isinstance(g, dict) for h in g.get("hosts", [])}
    assert every_host == {host for hosts in EXPECTED[name].values() for host in hosts}
    assert "[WARNING]" not in listing.stderr, listing.stderr
