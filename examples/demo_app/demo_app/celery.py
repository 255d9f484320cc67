"""The application's Celery app, as any team writes one, with the Kafka side applied by celery_kafka.configure."""

from __future__ import annotations

import os

from celery import Celery

import celery_kafka

# demo_app.faults (tasks that crash a worker on purpose) only where the tests ask for them.
FAULT_TASKS = ["demo_app.faults"] if os.environ.get("DEMO_APP_FAULT_TASKS") == "1" else []
app = Celery("demo_app", include=["demo_app.tasks", *FAULT_TASKS])
celery_kafka.configure(app)
# Two queues, each a Kafka topic with its own worker hosts: the default one (celery.tasks), ordered per key, and
# "exports", whose tasks need no order and run several at a time on a node (a prefork pool, celery_worker_concurrency).
app.conf.task_routes = {"demo_app.tasks.export": {"queue": "exports"}}
# Periodic tasks, sent by `celery beat` on the one worker host with celery_worker_beat (keyed by the entry name).
app.conf.beat_schedule = {"tick": {"task": "demo_app.tasks.tick", "schedule": 10.0}}
