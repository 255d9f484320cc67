"""Worker-node behaviour wired through Celery signals: metrics, a hard time limit for the solo pool, recycling.

The solo pool runs each task in the worker process itself (one at a time, in partition order), so Celery's own time
limits (which need prefork children) do not apply; a SIGALRM in the same process enforces the limit instead. A
concurrent queue's prefork pool has Celery's own limits, and its children count tasks in the metrics through
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the worker unit). The worker can also exit
after a number of tasks (like prefork's max-tasks-per-child); systemd starts it again.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from celery import signals
from celery.exceptions import TimeLimitExceeded
from prometheus_client import multiprocess, start_http_server

from celery_kafka import metrics

logger = logging.getLogger(__name__)

_started: dict[str, float] = {}
_completed = 0
# Only the solo pool needs (and allows) the SIGALRM time limit: threads cannot take signals, prefork has its own.
_alarm_time_limit = True


def _time_limit_reached(signum: int, frame: Any) -> None:
    raise TimeLimitExceeded(f"task ran longer than {os.environ.get('CELERY_KAFKA_TASK_TIME_LIMIT', '?')} s")


@signals.worker_init.connect
def start_metrics_endpoint(sender: Any = None, **kwargs: Any) -> None:
    global _alarm_time_limit
    _alarm_time_limit = "solo" in str(getattr(sender, "pool_cls", "solo")).lower()
    port = int(os.environ.get("CELERY_KAFKA_METRICS_PORT", "0") or 0)
    if port:
        start_http_server(port, addr=os.environ.get("CELERY_KAFKA_METRICS_ADDRESS", "0.0.0.0"), registry=metrics.served_registry())
        logger.info("metrics on :%s/metrics", port)


@signals.worker_process_shutdown.connect
def forget_pool_child(pid: int | None = None, **kwargs: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())


def queue_of(request: Any) -> str:
    """The queue a task came from: the routing key its message was published with (the topic's name)."""
    return str((getattr(request, "delivery_info", None) or {}).get("routing_key") or "unknown")


@signals.task_received.connect
def count_received(request: Any = None, **kwargs: Any) -> None:
    metrics.TASKS_RECEIVED.labels(queue_of(request), request.name if request is not None else "unknown").inc()


@signals.task_prerun.connect
def before_task(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    metrics.TASKS_IN_FLIGHT.inc()
    _started[task_id] = time.monotonic()
    limit = int(task.app.conf.task_time_limit or 0) if task is not None else 0
    if limit and _alarm_time_limit:
        signal.signal(signal.SIGALRM, _time_limit_reached)
        signal.alarm(limit)


@signals.task_postrun.connect
def after_task(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    global _completed
    if _alarm_time_limit:
        signal.alarm(0)
    metrics.TASKS_IN_FLIGHT.dec()
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        metrics.TASK_RUNTIME.labels(queue_of(task.request), task.name).observe(time.monotonic() - started)
    _completed += 1
    limit = int(os.environ.get("CELERY_KAFKA_MAX_TASKS_PER_WORKER", "0") or 0)
    if limit and _completed >= limit:
        logger.info("%s tasks done: warm shutdown so systemd starts a fresh worker", _completed)
        os.kill(os.getpid(), signal.SIGTERM)


@signals.task_success.connect
def count_success(sender: Any = None, **kwargs: Any) -> None:
    metrics.TASKS_SUCCEEDED.labels(queue_of(sender.request), sender.name).inc()


@signals.task_retry.connect
def count_retry(sender: Any = None, **kwargs: Any) -> None:
    metrics.TASKS_RETRIED.labels(queue_of(sender.request), sender.name).inc()


@signals.task_failure.connect
def count_failure(sender: Any = None, **kwargs: Any) -> None:
    metrics.TASKS_FAILED.labels(queue_of(sender.request), sender.name).inc()
