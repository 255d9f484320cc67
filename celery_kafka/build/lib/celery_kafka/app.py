"""The Celery application of a worker node (`celery -A celery_kafka.app worker`) and of clients that send tasks.

Everything comes from CELERY_KAFKA_* environment variables (settings.WorkerEnvironment), which the systemd unit's
EnvironmentFile provides on worker nodes.
"""

from __future__ import annotations

from celery import Celery

import celery_kafka.transport  # noqa: F401  (registers the partitionedkafka:// scheme)
from celery_kafka.settings import WorkerEnvironment, celery_settings
from celery_kafka.tasks import DeadLetteringTask


def create_app(env: WorkerEnvironment | None = None) -> Celery:
    env = env or WorkerEnvironment.from_environ()
    app = Celery("celery_kafka", task_cls=DeadLetteringTask)
    app.conf.update(celery_settings(env))
    app.conf.update(celery_kafka_environment=env)
    app.conf.include = ["celery_kafka.demo", "celery_kafka.worker"]
    return app


app = create_app()
