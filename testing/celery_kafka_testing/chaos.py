"""Keyed load under faults, and the end-to-end accounting of every task id (Molecule scenario `chaos`).

A LoadGenerator thread sends `demo_app.tasks.record` tasks at a steady rate over many keys, each with a task id
and a per-key sequence number chosen here. A publish that raises is sent again with the SAME task id (a publish
retry), so an id is either acknowledged by the brokers or reported as never acknowledged. After the fault and the
drain, `account` compares the acknowledged ids with what the workers recorded (results files) and what landed in the
dead-letter topic:

* completed:     acknowledged ids that ran at least once;
* duplicates:    extra runs of an id (at-least-once delivery: reported, not a failure);
* dead-lettered: acknowledged ids that did not run but are in the dead-letter topic;
* lost:          acknowledged ids neither completed nor dead-lettered (must be none);
* order:         per key, the FIRST run of each id must follow the send order. Redelivery (a worker restarted from
                 its committed offset) may run an older id again after newer ones; those re-runs are counted apart
                 (`reruns_after_newer`) because at-least-once redelivery allows them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from celery import Celery

from celery_kafka.envelope import PARTITION_KEY_HEADER

RECORD_TASK = "demo_app.tasks.record"


@dataclass(frozen=True)
class Sent:
    """One task of the load: its key and its place among the tasks of that key."""

    key: str
    seq: int


@dataclass(frozen=True)
class Completion:
    """One run of a task, as a worker recorded it (a row of its results file)."""

    task_id: str
    key: str
    seq: int
    node: str
    # Position of the row in its node's results file: the order in which that node ran its tasks.
    line: int
    # When the task finished (Unix seconds, the node's clock).
    finished_at: float = 0.0


def complete_lines(text: str) -> list[str]:
    """The lines of a results file that a worker finished writing: a read can catch its last record half written."""
    return text[: text.rfind("\n") + 1].splitlines()


def parse_results(text: str, run_id: str, node: str) -> list[Completion]:
    """The completions of `run_id` in a worker's results file (JSON lines written by demo_app.tasks.record)."""
    found = []
    for line_number, line in enumerate(complete_lines(text)):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("run_id") != run_id:
            continue
        found.append(
            Completion(
                task_id=row["task_id"],
                key=row["key"],
                seq=int(row["seq"]),
                node=node,
                line=line_number,
                finished_at=float(row.get("finished_at", 0.0)),
            )
        )
    return found


@dataclass
class Tally:
    """The accounting of one fault's load."""

    sent: int
    publish_retries: int
    unacknowledged: int
    completed: int
    dead_lettered: int
    duplicates: int
    lost: list[str]
    order_violations: list[str]
    reruns_after_newer: int
    unknown_completions: int

    @property
    def ok(self) -> bool:
        return not self.lost


def account(
    acknowledged: Mapping[str, Sent],
    completions: Iterable[Completion],
    dead_lettered: Iterable[str],
    publish_retries: int = 0,
    unacknowledged: int = 0,
) -> Tally:
    """Match acknowledged ids with completions and dead letters (see the module docstring)."""
    runs: dict[str, int] = defaultdict(int)
    by_key: dict[str, list[Completion]] = defaultdict(list)
    unknown = 0
    for completion in completions:
        if completion.task_id not in acknowledged:
            unknown += 1
            continue
        runs[completion.task_id] += 1
        by_key[completion.key].append(completion)
    dead = {task_id for task_id in dead_lettered if task_id in acknowledged}
    completed = set(runs)
    violations: list[str] = []
    reruns = 0
    for key, rows in sorted(by_key.items()):
        rows.sort(key=lambda row: (row.node, row.line))
        seen: set[str] = set()
        last_first_seq = -1
        highest_seq = -1
        for row in rows:
            if row.task_id in seen:
                if row.seq < highest_seq:
                    reruns += 1
                continue
            seen.add(row.task_id)
            if row.seq < last_first_seq:
                violations.append(f"{key}: seq {row.seq} first ran after seq {last_first_seq}")
            last_first_seq = max(last_first_seq, row.seq)
            highest_seq = max(highest_seq, row.seq)
        if len({row.node for row in rows}) > 1:
            violations.append(f"{key}: ran on several nodes {sorted({row.node for row in rows})}")
    return Tally(
        sent=len(acknowledged),
        publish_retries=publish_retries,
        unacknowledged=unacknowledged,
        completed=len(completed),
        dead_lettered=len(dead - completed),
        duplicates=sum(count - 1 for count in runs.values()),
        lost=sorted(set(acknowledged) - completed - dead),
        order_violations=violations,
        reruns_after_newer=reruns,
        unknown_completions=unknown,
    )


Publish = Callable[[str, str, int, str], None]


def celery_publisher(app: Celery, run_id: str) -> Publish:
    """Publish one `record` task with a given id and partition key (as tasks.send_keyed does, but with our own id)."""

    def publish(task_id: str, key: str, seq: int, _run_id: str = run_id) -> None:
        app.send_task(RECORD_TASK, args=(key, seq, _run_id), task_id=task_id, headers={PARTITION_KEY_HEADER: key})

    return publish


@dataclass
class LoadGenerator:
    """Sends `total` tasks at `rate` per second over `keys` keys from a background thread, retrying failed publishes
    with the same task id until `give_up_seconds` have passed for that task."""

    publish: Publish
    total: int = 5000
    rate: float = 100.0
    keys: int = 200
    give_up_seconds: float = 180.0
    retry_pause: float = 0.5
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acknowledged: dict[str, Sent] = field(default_factory=dict)
    publish_retries: int = 0
    unacknowledged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def key(self, index: int) -> str:
        return f"{self.run_id}-k{index % self.keys}"

    def task_id(self, index: int) -> str:
        return f"{self.run_id}-{index:06d}"

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self._run, name=f"load-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"load {self.run_id} still sending after {timeout} s")

    @property
    def sent_so_far(self) -> int:
        return len(self.acknowledged) + len(self.unacknowledged)

    def _send(self, index: int) -> None:
        task_id, key, seq = self.task_id(index), self.key(index), index // self.keys
        first_try = time.monotonic()
        while True:
            try:
                self.publish(task_id, key, seq)
            except Exception as error:  # any failed publish is retried with the same id, and counted
                self.publish_retries += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {task_id}: {type(error).__name__}: {error}")
                if time.monotonic() - first_try > self.give_up_seconds:
                    self.unacknowledged.append(task_id)
                    return
                time.sleep(self.retry_pause)
                continue
            self.acknowledged[task_id] = Sent(key=key, seq=seq)
            return

    def _run(self) -> None:
        self.started_at = time.monotonic()
        for index in range(self.total):
            if self._stop.is_set():
                break
            pause = self.started_at + index / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self._send(index)
        self.finished_at = time.monotonic()


def drain(
    load: LoadGenerator,
    completions: Callable[[], list[Completion]],
    dead_lettered: Callable[[], set[str]],
    timeout: float = 600,
    interval: float = 5,
) -> tuple[Tally, float]:
    """Wait (after the load finished) until every acknowledged id completed or was dead-lettered, or `timeout` passed;
    returns the final tally and the seconds the drain took."""
    start = time.monotonic()
    while True:
        runs = completions()
        done = {completion.task_id for completion in runs}
        missing = set(load.acknowledged) - done
        dead = dead_lettered() if missing else set()
        if not missing - dead or time.monotonic() - start > timeout:
            break
        time.sleep(interval)
    tally = account(load.acknowledged, runs, dead, load.publish_retries, len(load.unacknowledged))
    return tally, time.monotonic() - start


@dataclass
class Row:
    fault: str
    tally: Tally
    drain_seconds: float
    notes: str = ""


COLUMNS = ("fault", "tasks sent", "publish retries", "completed", "dead-lettered", "duplicates", "lost", "drain s", "notes")


def format_table(rows: list[Row]) -> str:
    cells = [
        (
            row.fault,
            str(row.tally.sent),
            str(row.tally.publish_retries),
            str(row.tally.completed),
            str(row.tally.dead_lettered),
            str(row.tally.duplicates),
            str(len(row.tally.lost)),
            f"{row.drain_seconds:.0f}",
            row.notes,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    lines = [" | ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)) for line in [COLUMNS, *cells]]
    return "\n".join(line.rstrip() for line in lines)
