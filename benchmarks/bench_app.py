"""The Celery app the comparison benchmark runs on other brokers (kombu's confluentkafka, Redis, memory).

Same Celery settings as a worker node of ours (celery_kafka.settings: acks_late, prefetch 1, solo pool, JSON) and a
task that does what demo_app.tasks.record does (append a JSON line with its finish time to a results file); only
the broker URL and queue differ. Worker processes: `celery -A bench_app worker` with BENCH_BROKER_URL, BENCH_QUEUE and
BENCH_RESULTS_FILE in the environment.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from celery import Celery

from celery_kafka.settings import WorkerEnvironment, celery_settings

TASK = "bench.record"
# Where the task writes: a module global, not the app's, because Celery reaches a task name's first registered
# callable when several apps of one process define it (the in-process memory worker).
_results = os.environ.get("BENCH_RESULTS_FILE")
RESULTS: Path | None = Path(_results) if _results else None


def create(broker_url: str, queue: str, transport_options: dict[str, Any] | None = None, conf: dict[str, Any] | None = None) -> Celery:
    settings = celery_settings(WorkerEnvironment(brokers=["unused:9092"], task_topic=queue))
    settings["broker_url"] = broker_url
    # partition, dead-letter topic and redelivery limit are options of our transport only.
    settings["broker_transport_options"] = transport_options or {}
    # What a broker's users would set besides (RabbitMQ: the queue type).
    settings.update(conf or {})
    app = Celery("bench", set_as_current=False)
    app.conf.update(settings)

    @app.task(bind=True, name=TASK)
    def record(self: Any, key: str, seq: int, run_id: str = "") -> None:
        results = RESULTS
        if results is None:
            return
        entry = {"task_id": self.request.id, "node": socket.gethostname(), "key": key, "seq": seq, "run_id": run_id}
        entry["finished_at"] = time.time()
        with results.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    return app


app = create(
    os.environ.get("BENCH_BROKER_URL", "memory://"),
    os.environ.get("BENCH_QUEUE", "bench.tasks"),
    json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS", "{}")),
    json.loads(os.environ.get("BENCH_CELERY_CONF", "{}")),
)
