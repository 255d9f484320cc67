"""Celery on Kafka with one worker node per partition: transport, settings, dead letters, metrics.

A library: apply it to your own Celery app with `configure(app)` (or make one with `create_app`); send keyed tasks
with `send_keyed`. Importing it connects to nothing.
"""

from celery_kafka.app import ConfigureError, configure, create_app
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import DeadLetteringTask, deferred_acks, send_keyed

__version__ = "0.1.0"
__all__ = ["ConfigureError", "DeadLetteringTask", "WorkerEnvironment", "configure", "create_app", "deferred_acks", "send_keyed"]
