"""The example application's tasks, run by `make demo` and the tests: each proves one behaviour of the system.

- tick: the periodic task of the beat schedule (results under run id "beat");
- export: a slow task of the concurrent "exports" queue (records when it started and finished, and in which process);
- record: appends what ran where (key, sequence number, worker node, partition, offset) to a results file on the
  worker node, so tests can check per-key order and partition ownership on the node itself;
- flaky: fails a given number of times, then succeeds (retries work);

The tasks that break things on purpose are in demo_app.faults, registered only where the tests ask for them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from celery_kafka.delivery import delivery_of
from demo_app.celery import app

RESULTS_FILE = Path(os.environ.get("CELERY_KAFKA_RESULTS_FILE", "/var/lib/celery-worker/results.jsonl"))


def _record(task: Any, **fields: Any) -> dict[str, Any]:
    delivery = delivery_of(task.request)
    entry = {
        "task_id": task.request.id,
        "task": task.name,
        "node": socket.gethostname(),
        "worker_partition": app.conf.celery_kafka_environment.partition,
        "partition": delivery.partition if delivery else None,
        "offset": delivery.offset if delivery else None,
        "attempt": delivery.attempt if delivery else None,
        "retries": task.request.retries,
        "finished_at": time.time(),
        **fields,
    }
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS_FILE.open("a") as results:
        results.write(json.dumps(entry) + "\n")
    return entry


@app.task(bind=True)
def record(self: Any, key: str, seq: int, run_id: str = "") -> dict[str, Any]:
    return _record(self, key=key, seq=seq, run_id=run_id)


class TransientError(RuntimeError):
    """A failure that goes away when retried."""


@app.task(bind=True, autoretry_for=(TransientError,), max_retries=5, default_retry_delay=0)
def flaky(self: Any, key: str, failures: int, run_id: str = "") -> dict[str, Any]:
    if self.request.retries < failures:
        raise TransientError(f"failing on purpose, attempt {self.request.retries + 1} of {failures + 1}")
    return _record(self, key=key, run_id=run_id)


@app.task(bind=True)
def export(self: Any, key: str, seq: int, seconds: float = 1.0, run_id: str = "") -> dict[str, Any]:
    """Stand-in for a report or file export: needs no key order, takes a while. Routed to the "exports" queue."""
    started = time.time()
    time.sleep(seconds)
    return _record(self, key=key, seq=seq, run_id=run_id, started_at=started, pid=os.getpid())


@app.task(bind=True)
def tick(self: Any, run_id: str = "beat") -> dict[str, Any]:
    """The periodic task of the app's beat schedule (celery.py): records when each run happened and where."""
    return _record(self, key="tick", seq=0, run_id=run_id)
