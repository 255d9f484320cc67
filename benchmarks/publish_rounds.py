#!/usr/bin/env python3
"""Publish rates of ours and Redis in alternating rounds, with both servers up the whole time.

One `make bench` run measures each system's publishing once, and on this 2-core machine a single figure swings up to
2x between runs (benchmarks/results/2026-12-02-compare.txt against 2026-12-03-compare.txt). This script repeats the
measurement: each round times `--publish` calls of ours (synchronous, then inside a deferred_acks() block, which
includes waiting for every acknowledgement at the block's exit) and of Redis (no persistence), one right after the
other, so a busy moment of the machine hits both. It prints every round, the medians and their ratios.

    python benchmarks/publish_rounds.py --rounds 7 --publish 2000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_app
from celery_kafka_testing.localkafka import LocalKafka
from compare import REPO, publish, redis_server

from celery_kafka.app import create_app
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import deferred_acks, send_keyed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--publish", type=int, default=2000, help="apply_async calls per system and mode, per round")
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--archive", type=Path, default=REPO / ".cache" / "artifacts" / "kafka_2.13-4.3.1.tgz")
    parser.add_argument("--name", default="publish-rounds", help="results file: benchmarks/results/<date>-<name>.txt")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    saved_stderr = os.dup(2)
    noise = (workdir / "client-stderr.log").open("w")  # librdkafka's connection noise; kept open until the end
    os.dup2(noise.fileno(), 2)
    keys = [f"key-{n}" for n in range(args.keys)]
    rates: dict[str, list[float]] = {"ours, synchronous": [], "ours, deferred_acks()": [], "redis": []}
    load_before = os.getloadavg()
    try:
        with LocalKafka(args.archive, 3, workdir / "kafka", nodes=3) as kafka, redis_server(workdir) as (redis_url, _):
            ours = create_app(WorkerEnvironment(brokers=kafka.bootstrap.split(",")))
            redis = bench_app.create(redis_url, "bench.tasks")
            run_id = uuid.uuid4().hex[:8]

            def send_ours(seq: int) -> None:
                key = keys[seq % len(keys)]
                send_keyed(ours, "demo_app.tasks.record", key, key, seq, run_id)

            def send_redis(seq: int) -> None:
                redis.send_task(bench_app.TASK, args=(keys[seq % len(keys)], seq, run_id))

            for seq in range(20):  # connections, metadata, producer ids
                send_ours(seq)
                send_redis(seq)
            with deferred_acks(ours):
                for seq in range(20):
                    send_ours(seq)
            for _ in range(args.rounds):
                rates["ours, synchronous"].append(publish(min(args.publish, 500), send_ours)[0])
                rates["ours, deferred_acks()"].append(publish(args.publish, send_ours, lambda: deferred_acks(ours))[0])
                rates["redis"].append(publish(args.publish, send_redis)[0])
            redis.close()
            ours.close()
    finally:
        os.dup2(saved_stderr, 2)
    load_after = os.getloadavg()

    redis_median = statistics.median(rates["redis"])
    lines = [
        f"publish rounds, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after",
        f"command: python benchmarks/publish_rounds.py --rounds {args.rounds} --publish {args.publish} --keys {args.keys}",
        "kafka: 3 combined KRaft nodes on 127.0.0.1 (replication 3, min.insync.replicas 2, acks=all); redis: no "
        "persistence; both up during every round; synchronous rounds time min(--publish, 500) calls",
        "",
        f"{'system':<24} {'median/s':>9} {'vs redis':>9}  rounds (calls per second)",
    ]
    for name, values in rates.items():
        median = statistics.median(values)
        rounds = " ".join(f"{value:,.0f}" for value in values)
        lines.append(f"{name:<24} {median:>9,.1f} {median / redis_median:>8.2f}x  {rounds}")
    deferred_wins = sum(d >= r for d, r in zip(rates["ours, deferred_acks()"], rates["redis"], strict=True))
    lines.append(f"rounds in which deferred_acks() published at least as fast as Redis: {deferred_wins} of {args.rounds}")
    text = "\n".join(lines) + "\n"
    print(text)
    results = REPO / "benchmarks" / "results" / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}-{args.name}.txt"
    with results.open("a") as out:
        out.write(text + "\n")
    print(f"appended to {results.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
