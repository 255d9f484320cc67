"""A worker node's journal of what happened to the messages of its partition since the last offset commit.

A worker owns its partition (static assignment), so a restarted worker on the same node reads its own journal. Two
kinds of line, appended as things happen:

* ``a <offset> <attempt>``: the message goes to the worker for the attempt-th time (written before the task runs);
* ``d <offset>``: the message is done (acked, dead-lettered, or skipped).

Writing a line is a write(2) into the page cache, without fsync: it outlives the worker process, killed by its memory
limit or by SIGKILL, because the page cache belongs to the kernel; it does not outlive the machine. That is what lets
the offset commits to Kafka (replicated, the slow part) run asynchronously and in batches: after a process kill the
journal says how often the running message was tried and which messages after the committed offset are already done.
With the journal lost too (the node crashed or was replaced), the worker falls back to the last commit: the messages
done since then run again (at most `commit_interval_seconds` of work) and the running one counts as a first attempt.

The journal is rewritten (compacted) once a commit is confirmed, keeping only what is after it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

# Rewrite the file once it holds this many lines and a commit lets most of them go.
COMPACT_AFTER_LINES = 20000


def replay(lines: Iterable[str], committed: int) -> tuple[dict[int, int], set[int]]:
    """(attempt by offset, offsets done) from journal lines, for messages at or after the `committed` offset.
    A line that cannot be read (the last one, cut off by a crash) is ignored."""
    attempts: dict[int, int] = {}
    done: set[int] = set()
    for line in lines:
        fields = line.split()
        try:
            if len(fields) == 3 and fields[0] == "a":
                offset, attempt = int(fields[1]), int(fields[2])
                if offset >= committed:
                    attempts[offset] = max(attempt, attempts.get(offset, 0))
            elif len(fields) == 2 and fields[0] == "d":
                offset = int(fields[1])
                if offset >= committed:
                    done.add(offset)
        except ValueError:
            continue
    for offset in done:
        attempts.pop(offset, None)
    return attempts, done


class Journal:
    """The journal file of one owned partition. Thread-safe: acks of a threads pool arrive from its threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="ascii")

    @classmethod
    def for_partition(cls, directory: str | os.PathLike[str], topic: str, partition: int) -> Journal:
        return cls(Path(directory) / f"{topic}-{partition}.journal")

    def read(self, committed: int) -> tuple[dict[int, int], set[int]]:
        with self._lock, self.path.open(encoding="ascii", errors="replace") as source:
            lines = source.readlines()
        self._lines = len(lines)
        return replay(lines, committed)

    def _append(self, line: str) -> None:
        with self._lock:
            self._file.write(line)
            self._file.flush()
            self._lines += 1

    def delivered(self, offset: int, attempt: int) -> None:
        self._append(f"a {offset} {attempt}\n")

    def done(self, offset: int) -> None:
        self._append(f"d {offset}\n")

    def compact(self, attempts: dict[int, int], done: Iterable[int]) -> None:
        """Replace the file by what is still needed after a confirmed commit: the attempts of the messages in flight
        and the offsets after it that are done. Written beside and renamed, so a crash leaves one whole file."""
        with self._lock:
            if self._lines < COMPACT_AFTER_LINES:
                return
            lines = [f"a {offset} {attempt}\n" for offset, attempt in sorted(attempts.items())]
            lines += [f"d {offset}\n" for offset in sorted(done)]
            fresh = self.path.with_suffix(".journal.new")
            fresh.write_text("".join(lines), encoding="ascii")
            fresh.replace(self.path)
            self._file.close()
            self._file = self.path.open("a", encoding="ascii")
            self._lines = len(lines)

    def close(self) -> None:
        with self._lock:
            self._file.close()
