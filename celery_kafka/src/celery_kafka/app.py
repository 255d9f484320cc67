"""Apply the Kafka side to a Celery application: your own (`configure`) or a new one (`create_app`).

    from celery import Celery
    import celery_kafka

    app = Celery("myshop", include=["myshop.tasks"])
    celery_kafka.configure(app)          # brokers, topics, security from CELERY_KAFKA_* (the worker unit sets them)

Nothing here connects to Kafka: the transport opens its connections when the app first sends or consumes.
"""

from __future__ import annotations

from celery import Celery

import celery_kafka.transport  # noqa: F401  (registers the partitionedkafka:// scheme)
from celery_kafka.settings import WorkerEnvironment, celery_settings
from celery_kafka.tasks import DeadLetteringTask


class ConfigureError(RuntimeError):
    """The app cannot be configured any more (its tasks already exist with another base class)."""


def configure(app: Celery, env: WorkerEnvironment | None = None) -> Celery:
    """Make `app` run on Kafka: the partitionedkafka:// broker settings and delivery guarantees (settings.py), the
    dead-lettering task base, and on worker nodes the metrics endpoint and the solo pool's time limit (worker.py).
    Call it right after `Celery(...)`, before the app is finalized. `env` defaults to the CELERY_KAFKA_* variables
    (settings.WorkerEnvironment); pass one to configure a client in code."""
    env = env or WorkerEnvironment.from_environ()
    if "Task" in app.__dict__ and not issubclass(app.Task, DeadLetteringTask):
        raise ConfigureError(
            f"configure({app.main!r}) comes too late: the app's task class is already built. Call "
            "celery_kafka.configure(app) right after Celery(...), and derive custom task bases from "
            "celery_kafka.DeadLetteringTask."
        )
    app.task_cls = DeadLetteringTask
    app.conf.update(celery_settings(env))
    app.conf.update(celery_kafka_environment=env)
    # The worker-side signal handlers (metrics endpoint, time limit, recycling); harmless in a client process.
    import celery_kafka.worker  # noqa: F401

    return app


def create_app(env: WorkerEnvironment | None = None, *, main: str = "celery_kafka", include: list[str] | None = None) -> Celery:
    """A new Celery app configured for Kafka, with the task modules in `include` (none: a client that sends tasks by
    name, as the dead-letter CLI does)."""
    return configure(Celery(main, include=include or []), env)
