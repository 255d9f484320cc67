#!/usr/bin/env python3
"""Where a busy worker's time goes: cProfile of one worker draining a backlog, with the journal (asynchronous offset
commits, the default) and without it (a synchronous commit before every task), side by side on one 3-broker KRaft
cluster on 127.0.0.1 (replication 3, min.insync.replicas 2).

    python benchmarks/profile_worker.py --tasks 3000

Prints and appends to benchmarks/results/<date>-worker-profile.txt: per mode, the drain rate and the functions with
the most time spent in them (own time) and under them (cumulative).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import platform
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path

from celery_kafka_testing.localkafka import LocalKafka, Worker, wait_until

from celery_kafka.app import create_app
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import deferred_acks, send_keyed

REPO = Path(__file__).resolve().parents[1]
MODES = {"journal (asynchronous commits)": True, "no journal (synchronous commit per task)": False}


def profile_mode(kafka: LocalKafka, topic: str, journal: bool, tasks: int, workdir: Path, top: int) -> list[str]:
    app = create_app(WorkerEnvironment(brokers=kafka.bootstrap.split(","), task_topic=topic))
    run_id = uuid.uuid4().hex[:8]
    with deferred_acks(app):
        for seq in range(tasks):
            send_keyed(app, "demo_app.tasks.record", "key", "key", seq, run_id)
    stats_file = workdir / f"{topic}.pstats"
    worker = Worker(kafka.bootstrap, 0, workdir, loglevel="WARNING", task_topic=topic, journal=journal, profile_to=stats_file)
    worker.start()
    try:
        wait_until(lambda: len(worker.records(run_id)) >= tasks, timeout=600, interval=0.2, message=f"{tasks} tasks")
    finally:
        worker.stop()
    finished = sorted(row["finished_at"] for row in worker.records(run_id))
    rate = (len(finished) - 1) / (finished[-1] - finished[0])
    lines = [f"{tasks} tasks, {rate:.0f} tasks/s from the first finished task to the last"]
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(str(stats_file), stream=out).sort_stats(order).print_stats(top)
        body = out.getvalue()
        lines += [f"-- by {order}", body[body.find("   ncalls") :].rstrip()]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--archive", type=Path, default=REPO / ".cache" / "artifacts" / "kafka_2.13-4.3.1.tgz")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="profile-"))
    topics = {f"profile.{n}": 1 for n in range(len(MODES))}
    # librdkafka logs connection noise to stderr (brokers stopping at the end): keep it in a file.
    saved_stderr = os.dup(2)
    noise = (workdir / "client-stderr.log").open("w")
    os.dup2(noise.fileno(), 2)
    report = [
        f"worker profile, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores shared "
        "by 3 brokers, the worker and the client",
        f"command: python benchmarks/profile_worker.py --tasks {args.tasks}; one solo worker, demo_app.tasks.record",
    ]
    started = time.monotonic()
    try:
        with LocalKafka(args.archive, 1, workdir / "kafka", nodes=3, extra_topics=topics) as kafka:
            for topic, (mode, journal) in zip(topics, MODES.items(), strict=True):
                report += ["", f"== {mode}", *profile_mode(kafka, topic, journal, args.tasks, workdir, args.top)]
    finally:
        os.dup2(saved_stderr, 2)
    report.append(f"total {time.monotonic() - started:.0f} s; stats files in {workdir}")
    text = "\n".join(report)
    print(text)
    out = REPO / "benchmarks" / "results" / f"{dt.date.today():%Y-%m-%d}-worker-profile.txt"
    with out.open("a") as results:
        results.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
