#!/usr/bin/env python3
"""Our transport against the alternatives, side by side, on this machine, in one run (`make bench`).

Every system runs the same Celery settings (celery_kafka.settings: acks_late, prefetch 1, solo pool, JSON) and the
same task (append a JSON line with its finish time to a results file):

* ours:   partitionedkafka:// on a 3-broker KRaft cluster on 127.0.0.1 (topics: replication 3, min.insync.replicas
          2), workers = real `celery worker` processes bound to one partition each (localkafka.Worker); publishing
          synchronously (default: apply_async returns once acks=all) and in a deferred_acks() block;
* kombu:  kombu's stock confluentkafka:// on the same cluster, its own 3-partition topic, workers in one consumer
          group (subscribe); it publishes with produce() + flush() per message, librdkafka's default producer
          settings (acks=all, no idempotence, linger.ms 5) and acks by an asynchronous commit of the consumer's
          position;
* redis:  redis-server (Debian package) on a free loopback port, no persistence (--save '' --appendonly no);
* rabbitmq: Debian's rabbitmq-server on free loopback ports, the durable setup: durable queues and persistent
          messages (Celery's defaults), publisher confirms; a classic queue, then a quorum queue. Its workers run the
          threads pool with one thread (docs/facts.md: the solo and prefork pools stall on it);
* memory: Celery's memory:// transport, the worker in the publishing process (celery.contrib.testing.worker.
          start_worker: one solo worker thread, as the memory transport cannot be shared between processes): the
          ceiling of Celery itself.

Publish: `--publish` apply_async calls, throughput and per-call latency (p50/p99). Worker throughput: a backlog of
`--tasks` tasks, then the workers start; the rate is taken over the window in which every worker was draining (from
the last worker's first finished task to the first worker's last), so start-up and the tail are not counted.
Each drain also reports the CPU the brokers, the workers and this client used during its window, in cores.
Scaling: ours with 1, 2 and 3 partitions/workers. Commit cost: the latency of one synchronous commit, what a worker
without a journal pays once per task (with the journal, the default, it sends one asynchronous commit per
commit_interval_seconds).
Converge (optional, --converge): site.yml from fresh containers with a `bench-` prefix on their own Docker network,
then an idempotent re-run (changed must be 0), then the containers are removed.

    python benchmarks/compare.py --tasks 10000 --publish 2000 --scaling-tasks 5000 [--converge]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_app
from celery_kafka_testing.charts import comparison
from celery_kafka_testing.localkafka import LocalKafka, Worker, free_port, wait_for_port
from confluent_kafka import Consumer, TopicPartition

from celery_kafka.app import create_app
from celery_kafka.settings import WorkerEnvironment
from celery_kafka.tasks import deferred_acks, send_keyed

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class Row:
    system: str
    publish_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    drain_rate: float | None = None
    notes: list[str] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def publish(count: int, send: Callable[[int], Any], around: Callable[[], Any] | None = None) -> tuple[float, float, float]:
    """(calls per second, p50 ms, p99 ms) of `count` calls of send(seq); `around` wraps them all (deferred_acks)."""
    latencies: list[float] = []
    started = time.perf_counter()
    with around() if around else _nothing():
        for seq in range(count):
            sent = time.perf_counter()
            send(seq)
            latencies.append(time.perf_counter() - sent)
    seconds = time.perf_counter() - started
    return count / seconds, statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def read_rows(files: list[Path], run_id: str) -> list[list[float]]:
    """Finish times per worker."""
    per_worker = []
    for path in files:
        times = []
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row.get("run_id") == run_id:
                        times.append(row["finished_at"])
        per_worker.append(sorted(times))
    return per_worker


def drain_window(per_worker: list[list[float]]) -> tuple[float, float]:
    """From the last worker's first finished task to the first worker's last (see the module docstring)."""
    busy = [times for times in per_worker if len(times) > 1]
    start = max(times[0] for times in busy)
    end = min(times[-1] for times in busy)
    if end - start < 1.0:  # too short a common window (one worker had almost nothing): take the whole span
        everything = sorted(t for times in per_worker for t in times)
        start, end = everything[0], everything[-1]
    return start, end


def drain_rate(per_worker: list[list[float]]) -> tuple[float, str]:
    """Tasks per second while every worker was busy, and a note on the distribution."""
    start, end = drain_window(per_worker)
    counts = [len(times) for times in per_worker]
    done = sum(1 for times in per_worker for t in times if start <= t <= end)
    return done / (end - start), f"tasks per worker {counts}, window {end - start:.1f} s"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """CPU time (user + system, all threads) of a process and, with `children`, of its children still running (a
    broker started through a shell script, a prefork pool)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat.parent.name) == pid or (children and int(fields[1]) == pid):  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


@dataclass
class CpuSampler:
    """CPU time of process groups (brokers, workers, client), sampled while a backlog drains."""

    groups: dict[str, list[int]]
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def sample(self) -> None:
        # The client is this process alone: the brokers and workers it started are its children.
        used = {name: sum(cpu_seconds(pid, children=name != "client") for pid in pids) for name, pids in self.groups.items()}
        self.samples.append((time.time(), used))

    def cores(self, start: float, end: float) -> str:
        """Cores each group used between the samples nearest the window's start and end."""
        inside = [s for s in self.samples if start - 0.25 <= s[0] <= end + 0.25] or self.samples[-2:]
        (first, before), (last, after) = inside[0], inside[-1]
        if last - first < 0.2:
            return "CPU: window too short to sample"
        used = ", ".join(f"{name} {(after[name] - before[name]) / (last - first):.2f}" for name in self.groups)
        return f"CPU in cores (of {os.cpu_count()}) over {last - first:.1f} s: {used}"


def wait_for_count(files: list[Path], run_id: str, expected: int, timeout: float, sampler: CpuSampler | None = None) -> list[list[float]]:
    deadline = time.monotonic() + timeout
    marker = f'"run_id": "{run_id}"'.encode()
    while True:
        if sampler is not None:
            sampler.sample()
        # Counting is cheap; parsing every row on each poll would take CPU from the workers being measured.
        if sum(path.read_bytes().count(marker) for path in files if path.exists()) >= expected:
            return read_rows(files, run_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(len(t) for t in read_rows(files, run_id))} of {expected} tasks finished after {timeout} s")
        time.sleep(0.2)


class CeleryWorker:
    """A `celery -A bench_app worker` process (same flags as localkafka.Worker) for the other brokers."""

    def __init__(
        self,
        broker_url: str,
        queue: str,
        results: Path,
        log: Path,
        transport_options: dict[str, Any],
        conf: dict[str, Any],
        pool: str = "solo",
    ) -> None:
        self.results, self.log = results, log
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
            "BENCH_BROKER_URL": broker_url,
            "BENCH_QUEUE": queue,
            "BENCH_RESULTS_FILE": str(results),
            "BENCH_TRANSPORT_OPTIONS": json.dumps(transport_options),
            "BENCH_CELERY_CONF": json.dumps(conf),
        }
        self.queue, self.pool = queue, pool
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench_app", "worker", f"--pool={self.pool}", "--concurrency=1",
                 "--loglevel=WARNING", "-Q", self.queue, "-n", f"{uuid.uuid4().hex[:6]}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def drain(workers: list[Any], files: list[Path], run_id: str, expected: int, timeout: float, brokers: list[int]) -> tuple[float, str]:
    """Start the workers on a backlog, wait until `expected` tasks finished; (tasks/s, note with the CPU use of the
    brokers' processes, the workers and this client during the drain window)."""
    for worker in workers:
        worker.start()
    sampler = CpuSampler({"brokers": brokers, "workers": [w.process.pid for w in workers], "client": [os.getpid()]})
    try:
        rows = wait_for_count(files, run_id, expected, timeout, sampler)
    finally:
        for worker in workers:
            worker.stop()
    rate, note = drain_rate(rows)
    return rate, f"{note}; {sampler.cores(*drain_window(rows))}"


def bench_ours(kafka: LocalKafka, args: argparse.Namespace, workdir: Path) -> tuple[list[Row], dict[int, float], list[str]]:
    notes: list[str] = []
    run_id = uuid.uuid4().hex[:8]
    keys = [f"key-{n}" for n in range(args.keys)]
    app = create_app(WorkerEnvironment(brokers=kafka.bootstrap.split(",")))

    def send(seq: int) -> None:
        key = keys[seq % len(keys)]
        send_keyed(app, "demo_app.tasks.record", key, key, seq, run_id)

    for seq in range(args.warmup):  # connections, metadata, producer id: not part of the figures
        send(seq)
    with deferred_acks(app):
        for seq in range(args.warmup):
            send(seq)
    sync = Row("ours partitionedkafka, synchronous (default)", *publish(args.publish, send))
    deferred = Row("ours partitionedkafka, deferred_acks() block", *publish(args.publish, send, lambda: deferred_acks(app)))
    deferred.notes.append("latency = apply_async call; throughput includes waiting for every ack at the block's exit")
    published = 2 * args.warmup + 2 * args.publish
    with deferred_acks(app):
        for seq in range(max(0, args.tasks - published)):
            send(seq)
    backlog = max(args.tasks, published)
    workers = [Worker(kafka.bootstrap, p, workdir / "ours", loglevel="WARNING") for p in range(args.workers)]
    (workdir / "ours").mkdir()
    brokers = [p.pid for p in kafka.processes]
    rate, note = drain(workers, [w.results for w in workers], run_id, backlog, args.timeout, brokers)
    sync.drain_rate = deferred.drain_rate = rate
    notes.append(f"ours, {args.workers} workers on a backlog of {backlog}: {note}")

    scaling = {args.workers: rate}
    for count in range(1, args.workers):
        topic = f"bench.p{count}"
        scale_app = create_app(WorkerEnvironment(brokers=kafka.bootstrap.split(","), task_topic=topic))
        scale_run = uuid.uuid4().hex[:8]
        tasks = args.scaling_tasks * count
        with deferred_acks(scale_app):
            for seq in range(tasks):
                key = keys[seq % len(keys)]
                send_keyed(scale_app, "demo_app.tasks.record", key, key, seq, scale_run)
        (workdir / topic).mkdir()
        workers = [Worker(kafka.bootstrap, p, workdir / topic, loglevel="WARNING", task_topic=topic) for p in range(count)]
        scaling[count], note = drain(workers, [w.results for w in workers], scale_run, tasks, args.timeout, brokers)
        notes.append(f"ours, {count} worker(s) on a backlog of {tasks}: {note}")

    # Before and after in one run: the same workers without their journal commit synchronously before every task.
    topic, before_run, tasks = "bench.nojournal", uuid.uuid4().hex[:8], args.scaling_tasks
    before_app = create_app(WorkerEnvironment(brokers=kafka.bootstrap.split(","), task_topic=topic))
    with deferred_acks(before_app):
        for seq in range(tasks):
            send_keyed(before_app, "demo_app.tasks.record", keys[seq % len(keys)], keys[seq % len(keys)], seq, before_run)
    (workdir / topic).mkdir()
    workers = [
        Worker(kafka.bootstrap, p, workdir / topic, loglevel="WARNING", task_topic=topic, journal=False) for p in range(args.workers)
    ]
    before = Row("ours, no journal (sync commit per task: before)")
    before.drain_rate, note = drain(workers, [w.results for w in workers], before_run, tasks, args.timeout, brokers)
    before.notes.append(f"{args.workers} workers on a backlog of {tasks}: {note}")
    return [sync, deferred, before], scaling, notes


def bench_other(
    name: str,
    broker_url: str,
    queue: str,
    options: dict[str, Any],
    args: argparse.Namespace,
    workdir: Path,
    brokers: list[int],
    conf: dict[str, Any] | None = None,
    pool: str = "solo",
) -> Row:
    run_id = uuid.uuid4().hex[:8]
    app = bench_app.create(broker_url, queue, transport_options=options, conf=conf)

    def send(seq: int) -> None:
        app.send_task(bench_app.TASK, args=(f"key-{seq % args.keys}", seq, run_id))

    for seq in range(args.warmup):
        send(seq)
    row = Row(name, *publish(args.publish, send))
    published = args.warmup + args.publish
    for seq in range(max(0, args.tasks - published)):
        send(seq)
    backlog = max(args.tasks, published)
    directory = workdir / queue.replace("/", "_")
    directory.mkdir(parents=True)
    workers = [
        CeleryWorker(broker_url, queue, directory / f"results-{n}.jsonl", directory / f"worker-{n}.log", options, conf or {}, pool)
        for n in range(args.workers)
    ]
    row.drain_rate, note = drain(workers, [w.results for w in workers], run_id, backlog, args.timeout, brokers)
    row.notes.append(f"{args.workers} workers on a backlog of {backlog}: {note}")
    app.close()
    return row


def bench_memory(args: argparse.Namespace, workdir: Path) -> Row:
    from celery.contrib.testing.worker import start_worker

    run_id = uuid.uuid4().hex[:8]
    results = workdir / "memory-results.jsonl"
    bench_app.RESULTS = results
    app = bench_app.create("memory://", "bench.tasks")

    def send(seq: int) -> None:
        app.send_task(bench_app.TASK, args=(f"key-{seq % args.keys}", seq, run_id))

    for seq in range(args.warmup):
        send(seq)
    row = Row("celery memory:// (in-process, 1 worker thread)", *publish(args.publish, send))
    published = args.warmup + args.publish
    for seq in range(max(0, args.tasks - published)):
        send(seq)
    backlog = max(args.tasks, published)
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30):
        rows = wait_for_count([results], run_id, backlog, args.timeout)
    row.drain_rate, note = drain_rate(rows)
    row.notes.append(f"1 worker thread on a backlog of {backlog}: {note}")
    return row


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (make bench installs it with apt-get)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=(workdir / "redis.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def rabbitmq_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """Debian's RabbitMQ as a throwaway node: own ports on 127.0.0.1, own data and log directories, no plugins."""
    binary = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if not binary.exists():
        raise FileNotFoundError("rabbitmq-server is not installed (make bench installs it with apt-get)")
    base = workdir / "rabbitmq"
    base.mkdir()
    (base / "enabled_plugins").write_text("[].\n")
    port, epmd_port = free_port(), free_port()
    env = {
        **os.environ,
        "HOME": str(base),  # the Erlang cookie goes here
        "RABBITMQ_NODENAME": f"bench{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
    }
    # Disk alarm off: a machine with little free disk would block publishers, which is not what is measured.
    (base / "rabbitmq.conf").write_text("disk_free_limit.absolute = 1MB\n")
    process = subprocess.Popen([str(binary)], env=env, stdout=(base / "server.log").open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=180)
        yield f"amqp://guest:guest@127.0.0.1:{port}//", process.pid
    finally:
        process.terminate()
        process.wait(60)
        subprocess.run(["epmd", "-port", str(epmd_port), "-kill"], env=env, capture_output=True, check=False)


def java_round_trip(kafka: LocalKafka, count: int = 300) -> str:
    """The floor of a synchronous publish here: Kafka's own Java producer (ProducerPerformance, from the same archive)
    with acks=all, idempotence and linger.ms 0, paced at 50 records/s so that each record travels alone."""
    assert kafka.home is not None
    command = [
        shutil.which("java") or "java",
        "-cp",
        f"{kafka.home}/libs/*",
        f"-Dlog4j2.configurationFile={kafka.home}/config/tools-log4j2.yaml",
        "org.apache.kafka.tools.ProducerPerformance",
        *("--topic", "bench.java", "--num-records", str(count), "--record-size", "600", "--throughput", "50"),
        *("--producer-props", f"bootstrap.servers={kafka.bootstrap}", "acks=all", "enable.idempotence=true", "linger.ms=0"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    summary = [line for line in result.stdout.splitlines() if "records sent" in line]
    return summary[-1] if summary else f"failed (exit {result.returncode}): {result.stderr[-300:]}"


def commit_latency(kafka: LocalKafka, count: int = 200) -> tuple[float, float]:
    """p50/p99 ms of one synchronous offset commit with metadata, as the worker does once per task."""
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "bench.commit-probe", "enable.auto.commit": False})
    try:
        latencies = []
        for n in range(count + 10):
            started = time.perf_counter()
            consumer.commit(offsets=[TopicPartition("celery.tasks", 0, n, metadata=f"attempt={n}")], asynchronous=False)
            if n >= 10:
                latencies.append(time.perf_counter() - started)
        return statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
    finally:
        consumer.close()


def converge(workdir: Path) -> list[str]:
    """site.yml on fresh `bench-` containers (own network, no published ports), then a re-run; then remove them."""
    extra = json.dumps(
        {
            "ansible_host": "bench-{{ inventory_hostname }}",
            "local_containers_prefix": "bench-",
            "local_containers_network": "kcs-bench",
            "local_containers_published": {},
        }
    )
    env = {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories" / "local-vault-password")}
    base = ["ansible-playbook", "-i", str(REPO / "inventories" / "local"), "-e", extra]
    log = workdir / "converge.log"

    def play(playbook: str, *more: str) -> tuple[float, str]:
        started = time.monotonic()
        with log.open("a") as out:
            out.write(f"\n=== {playbook} {' '.join(more)}\n")
            out.flush()
            result = subprocess.run([*base, str(REPO / playbook), *more], env=env, cwd=REPO, capture_output=True, text=True)
            out.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"{playbook} failed (exit {result.returncode}); see {log}\n{result.stdout[-3000:]}")
        return time.monotonic() - started, result.stdout

    def changed(recap: str) -> int:
        tail = recap[recap.rfind("PLAY RECAP") :]
        return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", tail))

    lines = []
    try:
        created, _ = play("playbooks/local-containers.yml")
        first, out = play("site.yml")
        lines.append(f"converge: containers {created:.0f} s; site.yml from nothing {first:.0f} s ({changed(out)} changed)")
        second, out = play("site.yml")
        again = changed(out)
        lines.append(f"converge: idempotent re-run {second:.0f} s, {again} changed" + ("" if again == 0 else "  <-- NOT IDEMPOTENT"))
    finally:
        play("playbooks/local-containers.yml", "-e", "local_containers_state=absent")
    return lines


def ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}x"


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row]) -> list[str]:
    redis = next((row for row in rows if row.system.startswith("redis")), None)
    memory = rows[-1]
    header = (
        f"{'system':<48} {'publish/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'tasks/s':>8} "
        f"{'pub/redis':>9} {'run/redis':>9} {'pub/mem':>8} {'run/mem':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.system:<48} {number(row.publish_rate):>9} {number(row.p50_ms, 2):>7} {number(row.p99_ms, 2):>7} "
            f"{number(row.drain_rate):>8} {ratio(row.publish_rate, redis and redis.publish_rate):>9} "
            f"{ratio(row.drain_rate, redis and redis.drain_rate):>9} "
            f"{ratio(row.publish_rate, memory.publish_rate):>8} {ratio(row.drain_rate, memory.drain_rate):>8}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10000, help="backlog the workers drain, per system")
    parser.add_argument("--publish", type=int, default=2000, help="apply_async calls timed per system and mode")
    parser.add_argument("--scaling-tasks", type=int, default=5000, help="backlog per worker for the 1- and 2-worker runs")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--converge", action="store_true", help="also time site.yml on fresh bench- containers (minutes)")
    parser.add_argument("--name", default="compare", help="results file: benchmarks/results/<date>-<name>.txt")
    parser.add_argument("--archive", type=Path, default=REPO / ".cache" / "artifacts" / "kafka_2.13-4.3.1.tgz")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    # librdkafka logs connection noise to stderr (brokers stopping at the end): keep it in a file.
    saved_stderr = os.dup(2)
    noise = (workdir / "client-stderr.log").open("w")
    os.dup2(noise.fileno(), 2)
    started = time.monotonic()
    notes: list[str] = []
    try:
        topics = {
            "kombu.tasks": args.workers,
            "bench.nojournal": args.workers,
            "bench.java": 1,
            **{f"bench.p{n}": n for n in range(1, args.workers)},
        }
        with LocalKafka(args.archive, args.workers, workdir / "kafka", nodes=3, extra_topics=topics) as kafka:
            rows, scaling, ours_notes = bench_ours(kafka, args, workdir)
            notes += ours_notes
            commit_p50, commit_p99 = commit_latency(kafka)
            java_floor = java_round_trip(kafka)
            kombu_url = f"confluentkafka://{kafka.bootstrap.split(',')[0]}"
            kombu_options = {"wait_time_seconds": 1}
            brokers = [p.pid for p in kafka.processes]
            kombu = "kombu confluentkafka (stock), same cluster"
            rows.append(bench_other(kombu, kombu_url, "kombu.tasks", kombu_options, args, workdir, brokers))
        with redis_server(workdir) as (redis_url, pid):
            rows.append(bench_other("redis (redis-server, no persistence)", redis_url, "bench.tasks", {}, args, workdir, [pid]))
        # The durable choice a RabbitMQ user makes: durable queues, persistent messages (Celery's defaults) and
        # publisher confirms (apply_async returns once the broker has the message); then the replicated queue type.
        # Workers: the threads pool with one thread (one task at a time, as ours). With the solo or prefork pool,
        # Celery's event loop leaves a delivered message unread until its next timer (10 s; docs/facts.md).
        with rabbitmq_server(workdir) as (amqp_url, pid):
            confirms = {"confirm_publish": True}
            quorum = {"task_default_queue_type": "quorum"}
            for name, queue, conf in (
                ("rabbitmq classic durable, confirms", "bench.classic", None),
                ("rabbitmq quorum queue, confirms", "bench.quorum", quorum),
            ):
                rows.append(bench_other(name, amqp_url, queue, confirms, args, workdir, [pid], conf, pool="threads"))
        rows.append(bench_memory(args, workdir))
        converged = ["converge: skipped (BENCH_CONVERGE=0)"]
        if args.converge:
            try:
                converged = converge(workdir)
            except Exception as error:  # the broker figures are still worth printing
                converged = [f"converge: FAILED: {str(error)[:2000]}"]
    except BaseException:
        os.dup2(saved_stderr, 2)
        print(f"benchmark failed; logs in {workdir}", file=sys.stderr)
        raise
    os.dup2(saved_stderr, 2)

    per_task_ms = 1000 / (rows[0].drain_rate / args.workers)
    lines = [
        f"comparison, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.machine()}, "
        f"{os.cpu_count()} cores shared by brokers, workers and client (and whatever else runs on the machine)",
        f"command: python benchmarks/compare.py --tasks {args.tasks} --publish {args.publish} --scaling-tasks "
        f"{args.scaling_tasks} --workers {args.workers} --keys {args.keys}{' --converge' if args.converge else ''}",
        "kafka: 3 combined KRaft nodes on 127.0.0.1, topics replication 3, min.insync.replicas 2; all workers: "
        "acks_late, prefetch 1, solo pool, JSON; tasks/s = worker throughput on a backlog (start-up excluded)",
        "",
        *table(rows),
        "",
        "pub/redis, run/redis: relative to Redis; pub/mem, run/mem: relative to Celery's memory:// transport (its ceiling)",
        f"scaling (ours): {', '.join(f'{n} worker(s) {rate:.1f} tasks/s' for n, rate in sorted(scaling.items()))}; "
        f"per worker: {', '.join(f'{rate / n:.1f}' for n, rate in sorted(scaling.items()))}",
        f"consumer commit (synchronous, with metadata, from an otherwise idle consumer): p50 {commit_p50:.2f} ms, "
        f"p99 {commit_p99:.2f} ms: what a worker without a journal pays once per task (a task takes ~{per_task_ms:.2f} ms "
        "of a worker at 3 workers); with the journal (default) it sends one asynchronous commit per second instead",
        f"synchronous publish floor, Kafka's Java producer (acks=all, idempotent, linger.ms 0, one record at a time, "
        f"same cluster): {java_floor}",
        *converged,
        *(f"note: {row.system}: {note}" for row in rows for note in row.notes),
        *(f"note: {note}" for note in notes),
        f"total {time.monotonic() - started:.0f} s; logs in {workdir}",
    ]
    report = "\n".join(lines)
    print(report)
    out = REPO / "benchmarks" / "results" / f"{dt.date.today():%Y-%m-%d}-{args.name}.txt"
    with out.open("a") as results:
        results.write(report + "\n\n")
    chart = comparison(
        out.with_suffix(".png"),
        [(row.system, row.drain_rate, row.publish_rate) for row in rows],
        scaling,
        f"make bench, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores shared by brokers, workers and client",
    )
    print(f"(appended to {out.relative_to(REPO)}; chart {chart.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
