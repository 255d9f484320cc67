#!/usr/bin/env python3
"""`make demo`'s last step: send one keyed task to the local cluster, show where it ran and its metrics.

Hosts come from the inventory (ansible-inventory), container addresses from Docker. The task goes in through the
brokers' CLIENT listeners like any client's; its result is read from the results file of the worker that owns the
key's partition, and the worker's success counter from Prometheus (published on 127.0.0.1:9090).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from celery_kafka.app import create_app
from celery_kafka.partitioning import partition_for_key
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed

RESULTS = "/var/lib/celery-worker/results.jsonl"


def inventory(path: Path) -> dict:
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"], check=True, capture_output=True, text=True
    )
    return json.loads(listing.stdout)


def container_address(name: str) -> str:
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    return subprocess.run(["docker", "inspect", "-f", template, name], check=True, capture_output=True, text=True).stdout.split()[0]


def worker_rows(container: str, run_id: str) -> list[dict]:
    content = subprocess.run(["docker", "exec", container, "cat", RESULTS], capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in content.splitlines() if line.strip()]
    return [row for row in rows if row.get("run_id") == run_id]


def prometheus_count(expr: str) -> float:
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--inventory", type=Path, default=Path("inventories/local"))
    parser.add_argument("--prefix", default="demo-", help="container name prefix (playbooks/local-containers.yml)")
    parser.add_argument("--key", default="demo-order-42")
    args = parser.parse_args()

    groups = inventory(args.inventory)
    brokers = groups["kafka"]["hosts"]
    workers = groups["celery_workers"]["hosts"]
    partitions = {name: int(groups["_meta"]["hostvars"][name].get("celery_worker_partition", index)) for index, name in enumerate(workers)}
    owner = next(name for name, partition in partitions.items() if partition == partition_for_key(args.key, len(workers)))

    app = create_app(WorkerEnvironment(brokers=[f"{container_address(args.prefix + name)}:9092" for name in brokers]))
    run_id = uuid.uuid4().hex[:8]
    expr = f'sum(celery_kafka_tasks_succeeded_total{{instance="{owner}",task="demo_app.tasks.record"}})'
    counted_before = prometheus_count(expr)
    started = time.monotonic()
    send_keyed(app, "demo_app.tasks.record", args.key, args.key, 1, run_id)
    print(f"sent demo_app.tasks.record with key {args.key!r}: partition {partitions[owner]}, owned by {owner}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = worker_rows(args.prefix + owner, run_id)
        if rows:
            print(f"ran on {owner} after {time.monotonic() - started:.2f} s: {json.dumps(rows[0], sort_keys=True)}")
            # Prometheus scrapes every 15 s: wait for the scrape that counts this task.
            deadline = time.monotonic() + 45
            while prometheus_count(expr) <= counted_before and time.monotonic() < deadline:
                time.sleep(1)
            print(f"Prometheus: demo_app.tasks.record tasks succeeded on {owner}: {prometheus_count(expr):.0f}")
            return 0
        time.sleep(0.5)
    print(f"error: the task did not show up in {RESULTS} on {owner} within 60 s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
