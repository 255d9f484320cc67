"""Scale-out, last because it changes the topology: the spare container joins the inventory as a fourth worker
node, and playbooks/celery.yml raises the task topic to 4 partitions before the new node starts on partition 3."""

from __future__ import annotations

import json
import threading
import time
import uuid

from celery_kafka.tasks import send_keyed
from verify_support import TASK_TOPIC, client, host, inventory, key_on, partitions, poll, records, run_playbook

SPARE = inventory().group("celery_spare")[0]
# The transport refreshes its topic metadata every 30 s (topic.metadata.refresh.interval.ms).
METADATA_REFRESH = 30


def test_a_fourth_worker_in_the_inventory_gets_partition_3(tmp_path):
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
    extra = tmp_path / "fourth-worker.yml"
    extra.write_text(json.dumps({"all": {"children": {"celery_workers": {"hosts": {SPARE: {"celery_worker_partition": 3}}}}}}))
    try:
        run = run_playbook("playbooks/celery.yml", inventories=(str(extra),))
    finally:
        done.set()
        watcher.join()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "raise celery.tasks partitions from 3 to 4" in run.stdout
    assert len(partitions(TASK_TOPIC)) == 4 and "at" in grown
    assert host(SPARE).service("celery-worker@3").is_running
    # The long-lived client that sent the earlier task picks up the new partition by itself, within the transport's
    # metadata refresh interval, without a restart.
    time.sleep(max(0.0, grown["at"] + METADATA_REFRESH + 5 - time.monotonic()))
    key = key_on(3, partitions=4, prefix="fourth")
    for seq in range(5):
        send_keyed(app, "demo_app.tasks.record", key, key, seq, run_id)
    rows = poll(lambda: (lambda r: r if len(r) >= 5 else None)(records(host(SPARE), run_id)), timeout=120, message="tasks on partition 3")
    assert {row["partition"] for row in rows} == {3} and [row["seq"] for row in rows] == list(range(5))
