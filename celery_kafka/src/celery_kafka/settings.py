"""Celery settings that fit Kafka as a broker, and the environment a worker node reads them from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from celery_kafka.security import KafkaSecurity
from celery_kafka.transport import SCHEME

# solo: an ordered queue (one task at a time, in partition order); prefork, threads: a concurrent queue.
POOLS = ("solo", "prefork", "threads")


@dataclass(frozen=True)
class WorkerEnvironment:
    """What a worker node (or a client) needs to know, from CELERY_KAFKA_* environment variables."""

    brokers: list[str]
    task_topic: str = "celery.tasks"
    dead_letter_topic: str = "celery.tasks.dlq"
    # The partition this worker node owns; None for clients that only send tasks.
    partition: int | None = None
    max_deliveries: int = 3
    task_time_limit: int = 300
    # How this node runs its queue's tasks: solo, one at a time in partition order (an ordered queue), or a pool of
    # `concurrency` prefork processes or threads (a queue whose tasks need no order).
    pool: str = "solo"
    concurrency: int = 1
    # A result store of the user's choosing (redis://, db+postgresql://, ...) for AsyncResult.get(); Kafka is none.
    result_backend: str | None = None
    # Where the worker journals its deliveries and acks (journal.py): with it, offsets are committed asynchronously,
    # at most every `commit_interval_seconds`; without it, synchronously before each task runs (slower, same safety
    # against a process kill, no journal to lose with the node).
    journal_dir: str | None = None
    commit_interval_seconds: float = 1.0
    # CELERY_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD, _SSL_CA_LOCATION.
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> WorkerEnvironment:
        env = os.environ if environ is None else environ
        brokers = [b.strip() for b in env.get("CELERY_KAFKA_BROKERS", "localhost:9092").split(",") if b.strip()]
        partition = env.get("CELERY_KAFKA_PARTITION", "")
        return cls(
            brokers=brokers,
            task_topic=env.get("CELERY_KAFKA_TASK_TOPIC", cls.task_topic),
            dead_letter_topic=env.get("CELERY_KAFKA_DEAD_LETTER_TOPIC", cls.dead_letter_topic),
            partition=int(partition) if partition.strip() else None,
            max_deliveries=int(env.get("CELERY_KAFKA_MAX_DELIVERIES", cls.max_deliveries)),
            task_time_limit=int(env.get("CELERY_KAFKA_TASK_TIME_LIMIT", cls.task_time_limit)),
            pool=env.get("CELERY_KAFKA_POOL", "").strip() or cls.pool,
            concurrency=int(env.get("CELERY_KAFKA_CONCURRENCY", "").strip() or cls.concurrency),
            result_backend=env.get("CELERY_KAFKA_RESULT_BACKEND", "").strip() or None,
            journal_dir=env.get("CELERY_KAFKA_JOURNAL_DIR", "").strip() or None,
            commit_interval_seconds=float(env.get("CELERY_KAFKA_COMMIT_INTERVAL_SECONDS", "").strip() or cls.commit_interval_seconds),
            security=KafkaSecurity.from_environ(env),
        )

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"CELERY_KAFKA_POOL is {self.pool!r}: one of {', '.join(POOLS)}")
        if self.concurrency < 1 or (self.pool == "solo" and self.concurrency != 1):
            raise ValueError(f"CELERY_KAFKA_CONCURRENCY is {self.concurrency}: 1 with the solo pool, at least 1 with a pool")
        if not 0 <= self.commit_interval_seconds <= 60:
            raise ValueError(f"CELERY_KAFKA_COMMIT_INTERVAL_SECONDS is {self.commit_interval_seconds}: between 0 and 60")

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings (security only) every client of this environment uses; bootstrap.servers comes apart."""
        return self.security.client_config()

    @property
    def broker_url(self) -> str:
        """kombu failover syntax: every broker is listed, and the transport bootstraps from all of them."""
        return ";".join(f"{SCHEME}://{broker}" for broker in self.brokers)


def celery_settings(env: WorkerEnvironment) -> dict[str, Any]:
    return {
        "broker_url": env.broker_url,
        "broker_transport_options": {
            "partition": env.partition,
            "dead_letter_topic": env.dead_letter_topic,
            "max_deliveries": env.max_deliveries,
            "wait_time_seconds": 1,
            "journal_dir": env.journal_dir,
            "commit_interval_seconds": env.commit_interval_seconds,
            # Merged into every producer, consumer and admin client the transport creates.
            "kafka_common_config": env.kafka_client_config(),
        },
        "broker_connection_retry_on_startup": True,
        # JSON only: a message can always be decoded (and dead-lettered, shown, replayed) without running code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Kafka is not a result store: results are kept only when a backend of the user's own is given.
        "task_ignore_result": env.result_backend is None,
        "result_backend": env.result_backend,
        "task_default_queue": env.task_topic,
        "task_default_exchange": env.task_topic,
        "task_default_routing_key": env.task_topic,
        # Ack (= commit the offset) only after the task finished, and give the message back if the worker dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # An ordered queue takes one message at a time per worker node: partition order is task order. A concurrent
        # queue takes one per pool process; its commits stay below the oldest task still running (offsets.py).
        # The pool is set here, not only on the command line: Celery treats `--pool=prefork` as "not given".
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": env.concurrency,
        "worker_pool": env.pool,
        "task_time_limit": env.task_time_limit,
        # The Kafka transport has no fanout exchange, so remote control (celery inspect/control), gossip, mingle and
        # events cannot work on it; turn them off rather than have them fail. Metrics come from each worker's own
        # HTTP endpoint instead (metrics.py).
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
    }
