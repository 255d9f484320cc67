"""Scale-out, last because it changes the topology, in the two ways the inventory allows (docs/runbooks.md):

1. a new partition: celery3 takes partition 3 as well (celery_worker_partitions: [2, 3]), and playbooks/celery.yml
   raises the task topic to 4 partitions before the node starts its second worker. Keys that now hash to partition 3
   start over there: fine while nothing is queued, not order-preserving under load;
2. a new node, order-preserving: the spare container joins the inventory and takes partition 3 over from celery3,
   under a continuous keyed load. The partition count stays 4, so no key changes partition; celery3's worker of
   partition 3 stops (warm, its position committed) before the new node's starts. The new node takes celery beat over
   too: the old beat host stops its beat and loses the unit.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict

import requests

from celery_kafka.partitioning import partition_for_key
from celery_kafka.tasks import send_keyed
from verify_support import (
    TASK_TOPIC,
    address,
    all_records,
    client,
    host,
    inventory,
    key_on,
    output,
    partitions,
    poll,
    records,
    run_playbook,
    unit_property,
)

SPARE = inventory().group("celery_spare")[0]
# The node that owns partition 2 and, for a while, partition 3 too.
SHARED = next(name for name, partition in inventory().workers.items() if partition == 2)
BEAT = next(name for name in inventory().workers if inventory().hostvars[name].get("celery_worker_beat"))
# The transport refreshes its topic metadata every 30 s (topic.metadata.refresh.interval.ms).
METADATA_REFRESH = 30


def layered_inventory(tmp_path, name: str, hosts: dict) -> str:
    """An inventory file laid over the scenario's: these worker hosts with these variables."""
    extra = tmp_path / f"{name}.yml"
    extra.write_text(json.dumps({"all": {"children": {"celery_workers": {"hosts": hosts}}}}))
    return str(extra)


def test_a_second_partition_on_a_node_raises_the_topic_and_runs_beside_the_first(tmp_path):
    app = client()
    # The long-lived client sends a task first, so it holds metadata of the 3-partition topic.
    run_id = uuid.uuid4().hex[:8]
    send_keyed(app, "demo_app.tasks.record", "warm-up", "warm-up", 0, run_id)
    # When did the fourth partition appear? Watched while the playbook runs, so the wait for the client's metadata
    # refresh below counts from that moment rather than from the end of the run.
    grown: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and "at" not in grown:
            if len(partitions(TASK_TOPIC)) == 4:
                grown["at"] = time.monotonic()
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # null: the scenario's inventory gives celery3 celery_worker_partition 2, and a layer can only unset it so.
    shared = {"celery_worker_partition": None, "celery_worker_partitions": [2, 3]}
    second = layered_inventory(tmp_path, "second-partition", {SHARED: shared})
    try:
        run = run_playbook("playbooks/celery.yml", inventories=(second,))
    finally:
        done.set()
        watcher.join()
    assert run.returncode == 0, output(run)[-4000:]
    assert "raise celery.tasks partitions from 3 to 4" in run.stdout
    assert len(partitions(TASK_TOPIC)) == 4 and "at" in grown
    node = host(SHARED)
    assert node.service("celery-worker@2").is_running and node.service("celery-worker@3").is_running
    # Each worker serves its own metrics: the node's second partition on the next port.
    served = requests.get(f"http://{address(SHARED)}:9809/metrics", timeout=10).text
    assert f'celery_kafka_worker_partition{{topic="{TASK_TOPIC}"}} 3.0' in served
    # The long-lived client that sent the earlier task picks up the new partition by itself, within the transport's
    # metadata refresh interval, without a restart.
    time.sleep(max(0.0, grown["at"] + METADATA_REFRESH + 5 - time.monotonic()))
    key = key_on(3, partitions=4, prefix="fourth")
    for seq in range(5):
        send_keyed(app, "demo_app.tasks.record", key, key, seq, run_id)

    def keyed() -> list[dict] | None:
        rows = [row for row in records(node, run_id) if row["key"] == key]
        return rows if len(rows) >= 5 else None

    rows = poll(keyed, timeout=120, message="tasks on partition 3")
    assert {(row["partition"], row["worker_partition"]) for row in rows} == {(3, 3)} and [row["seq"] for row in rows] == list(range(5))
    # What a second partition on a node costs: one more worker process, in a cgroup of its own.
    memory = {unit: int(unit_property(node, f"{unit}.service", "MemoryCurrent")) / 2**20 for unit in ("celery-worker@2", "celery-worker@3")}
    print(f"\n{SHARED} runs two workers: " + ", ".join(f"{unit} {mib:.0f} MiB" for unit, mib in memory.items()))


def test_a_new_node_takes_a_partition_over_under_a_keyed_load_without_reordering_a_key(tmp_path):
    """Every task of the load runs once, and each key's tasks run in the order sent, across the move: partition 3's
    last task on celery3 comes before its first on the new node, which resumes at the next offset."""
    app = client()
    run_id = uuid.uuid4().hex[:8]
    workers = {**inventory().workers, SPARE: 3}
    keys = [key_on(partition, partitions=4, prefix=f"move{partition}-{n}") for partition in range(4) for n in range(3)]
    sent: dict[str, tuple[str, int]] = {}
    stop = threading.Event()

    def load() -> None:
        seq = 0
        while not stop.is_set():
            key = keys[seq % len(keys)]
            sent[send_keyed(app, "demo_app.tasks.record", key, key, seq, run_id).id] = (key, seq)
            seq += 1
            time.sleep(0.05)

    # The inventory change an operator makes: the new host takes partition 3, celery3 keeps partition 2 only; beat
    # moves to the new host.
    moved = layered_inventory(
        tmp_path, "new-node", {SPARE: {"celery_worker_partition": 3, "celery_worker_beat": True}, BEAT: {"celery_worker_beat": False}}
    )
    # Limited to the new node, the run could not stop partition 3 on celery3 first: refused before any change.
    limited = run_playbook("playbooks/celery.yml", "--limit", SPARE, inventories=(moved,))
    assert limited.returncode != 0 and "may still be running: two consumers of one partition" in output(limited), output(limited)[-3000:]
    assert not host(SPARE).service("celery-worker@3").is_running and host(SHARED).service("celery-worker@3").is_running
    assert not host(SPARE).file("/opt/celery-worker").exists, "the refused run changed the new node"
    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    try:
        time.sleep(5)
        run = run_playbook("playbooks/celery.yml", inventories=(moved,))
        time.sleep(5)
    finally:
        stop.set()
        sender.join(timeout=60)
    assert run.returncode == 0, output(run)[-4000:]
    assert "raise celery.tasks partitions" not in run.stdout and len(partitions(TASK_TOPIC)) == 4
    assert not host(SHARED).service("celery-worker@3").is_running and host(SHARED).service("celery-worker@2").is_running
    assert host(SPARE).service("celery-worker@3").is_running
    assert host(SPARE).service("celery-beat").is_running
    assert not host(BEAT).service("celery-beat").is_running and not host(BEAT).file("/etc/systemd/system/celery-beat.service").exists

    def all_ran() -> dict[str, list[dict]] | None:
        found = all_records(run_id, workers)
        return found if {row["task_id"] for rows in found.values() for row in rows} >= set(sent) else None

    found = poll(all_ran, timeout=300, message=f"all {len(sent)} tasks of the load recorded")
    runs = sorted((row for rows in found.values() for row in rows), key=lambda row: row["finished_at"])
    assert len(runs) == len({row["task_id"] for row in runs}), "a task ran twice"
    by_key: dict[str, list[int]] = defaultdict(list)
    for row in runs:
        assert row["partition"] == partition_for_key(row["key"], 4), f"{row['key']} left its partition: {row}"
        by_key[row["key"]].append(row["seq"])
    out_of_order = {key: seqs for key, seqs in by_key.items() if seqs != sorted(seqs)}
    assert out_of_order == {}, f"keys ran out of order: {out_of_order}"
    before = [row for row in found[SHARED] if row["partition"] == 3]
    after = [row for row in found[SPARE] if row["partition"] == 3]
    assert before and after, f"partition 3 ran {len(before)} tasks on {SHARED} and {len(after)} on {SPARE}: the move was not under load"
    assert max(row["offset"] for row in before) < min(row["offset"] for row in after)
    assert max(row["finished_at"] for row in before) < min(row["finished_at"] for row in after)
    pause = min(row["finished_at"] for row in after) - max(row["finished_at"] for row in before)
    print(
        f"\nscale-out in order: {len(sent)} tasks sent over {len(keys)} keys, 0 lost, 0 duplicates, 0 keys out of order;"
        f" partition 3 moved {SHARED} -> {SPARE} ({len(before)} tasks before, {len(after)} after), its keys paused {pause:.1f} s"
    )
