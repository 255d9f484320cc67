#!/usr/bin/env python3
"""Tasks per second per worker node, and publish latency, through the partitioned Kafka transport.

Starts a throwaway single-node Kafka on 127.0.0.1 (the archive `make artifacts` builds). Phase 1 publishes N keyed
tasks with the workers stopped (publish rate and apply_async latency, acks=all). Phase 2 starts W real worker
processes, one per partition, on that backlog; each worker's rate is taken from its own records (first to last task
finished), so start-up time is not counted. Prints a table and appends it to benchmarks/results/. Not a test.

    python benchmarks/worker_throughput.py --tasks 3000 --workers 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from celery_kafka.app import create_app
from celery_kafka.localkafka import LocalKafka, Worker
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import send_keyed

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--keys", type=int, default=30)
    parser.add_argument("--archive", type=Path, default=REPO / ".cache" / "artifacts" / "kafka_2.13-4.3.1.tgz")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    with LocalKafka(args.archive, args.workers, workdir / "kafka") as kafka:
        app = create_app(WorkerEnvironment(brokers=[kafka.bootstrap]))
        run_id = uuid.uuid4().hex[:8]
        keys = [f"key-{n}" for n in range(args.keys)]
        latencies: list[float] = []
        started = time.perf_counter()
        for seq in range(args.tasks):
            key = keys[seq % len(keys)]
            sent = time.perf_counter()
            send_keyed(app, "celery_kafka.demo.record", key, key, seq, run_id)
            latencies.append(time.perf_counter() - sent)
        publish_seconds = time.perf_counter() - started

        workers = [Worker(kafka.bootstrap, p, workdir, loglevel="WARNING").start() for p in range(args.workers)]
        try:
            drain_started = time.perf_counter()
            while sum(len(w.records(run_id)) for w in workers) < args.tasks:
                time.sleep(0.1)
            drain_seconds = time.perf_counter() - drain_started
            rows = {w.partition: w.records(run_id) for w in workers}
        finally:
            for worker in workers:
                worker.stop()

    rates = {}
    for partition, done in rows.items():
        span = max(r["finished_at"] for r in done) - min(r["finished_at"] for r in done)
        rates[partition] = (len(done) - 1) / span if span > 0 else float("nan")
    lines = [
        f"worker throughput, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.machine()}, "
        f"{os.cpu_count()} cores shared by broker, workers and client",
        f"command: python benchmarks/worker_throughput.py --tasks {args.tasks} --workers {args.workers} --keys {args.keys}",
        "broker: 1 local KRaft node (127.0.0.1); producer acks=all, one acknowledged publish per apply_async; workers: solo pool",
        f"{'tasks':>7} {'workers':>8} {'publish/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'drain s':>8} {'all tasks/s':>12} "
        f"{'tasks/s per worker':>30}",
        f"{args.tasks:>7} {args.workers:>8} {args.tasks / publish_seconds:>10.1f} {statistics.median(latencies) * 1000:>7.2f} "
        f"{percentile(latencies, 0.99) * 1000:>7.2f} {drain_seconds:>8.2f} {args.tasks / drain_seconds:>12.1f} "
        f"{' '.join(f'p{p}={rate:.0f}' for p, rate in sorted(rates.items())):>30}",
        f"tasks per worker: { ({p: len(r) for p, r in rows.items()}) }; drain time includes worker start-up",
    ]
    report = "\n".join(lines)
    print(report)
    out = REPO / "benchmarks" / "results" / f"{dt.date.today():%Y-%m-%d}-worker-throughput.txt"
    with out.open("a") as results:
        results.write(report + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
