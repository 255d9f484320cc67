"""Which offset a worker may commit for its partition, and what the commit records about the messages around it.

The committed offset is where a restarted worker resumes, so it must never pass a message that was handed to the
worker but not yet acknowledged: it stays at the oldest message still in flight. An ordered queue has one message in
flight and the rule reduces to "commit offset + 1 after the ack". A concurrent queue (a pool of several processes)
has several, finishing in any order; the commit then also records, in its metadata:

* the delivery attempt of every message in flight, so a worker killed mid-task knows how often each was tried (and
  dead-letters the one that keeps killing it, not its neighbours);
* the offsets after the committed one that already finished, so a restart skips them instead of running them again.

Metadata is `attempt=N` (only the committed offset in flight: what an ordered queue writes) or
`attempts=100:2,105:1;done=101-104`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ATTEMPT_PREFIX = "attempt="
ATTEMPTS_PREFIX = "attempts="
DONE_PREFIX = "done="
# Kafka's offset.metadata.max.bytes is 4096; finished offsets beyond what fits run again after a crash.
MAX_METADATA_CHARS = 3000


@dataclass(frozen=True)
class Commit:
    offset: int
    # (offset, attempt) of each message in flight, oldest first; the first is `offset` itself when it is in flight.
    attempts: tuple[tuple[int, int], ...] = ()
    # Offsets after `offset` that already finished.
    done: tuple[int, ...] = ()

    @property
    def attempt(self) -> int | None:
        """Delivery attempt of the message at the committed offset, when that message is in flight."""
        return dict(self.attempts).get(self.offset)

    def metadata(self) -> str:
        return encode_metadata(self)


def _ranges(offsets: tuple[int, ...]) -> list[str]:
    runs: list[list[int]] = []
    for offset in offsets:
        if runs and offset == runs[-1][1] + 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return [str(start) if start == end else f"{start}-{end}" for start, end in runs]


def encode_metadata(commit: Commit) -> str:
    if not commit.done and commit.attempts == ((commit.offset, commit.attempt),):
        return f"{ATTEMPT_PREFIX}{commit.attempt}"
    if not commit.attempts and not commit.done:
        return ""
    attempts = ATTEMPTS_PREFIX + ",".join(f"{offset}:{attempt}" for offset, attempt in commit.attempts)
    ranges = _ranges(commit.done)
    while ranges and len(attempts) + len(DONE_PREFIX) + len(",".join(ranges)) + 1 > MAX_METADATA_CHARS:
        ranges.pop()
    return attempts + (f";{DONE_PREFIX}{','.join(ranges)}" if ranges else "")


def decode_metadata(offset: int, metadata: str | None) -> tuple[dict[int, int], set[int]]:
    """(attempts by offset, finished offsets) recorded with a commit at `offset`; whatever cannot be read counts as
    nothing recorded (the message then counts as delivered for the first time, and runs again)."""
    attempts: dict[int, int] = {}
    done: set[int] = set()
    try:
        if metadata and metadata.startswith(ATTEMPT_PREFIX):
            attempts[offset] = int(metadata[len(ATTEMPT_PREFIX) :])
        elif metadata and metadata.startswith(ATTEMPTS_PREFIX):
            for part in metadata.split(";"):
                if part.startswith(ATTEMPTS_PREFIX):
                    for pair in filter(None, part[len(ATTEMPTS_PREFIX) :].split(",")):
                        message, attempt = pair.split(":")
                        attempts[int(message)] = int(attempt)
                elif part.startswith(DONE_PREFIX):
                    for run in filter(None, part[len(DONE_PREFIX) :].split(",")):
                        start, _, end = run.partition("-")
                        done.update(range(int(start), int(end or start) + 1))
    except ValueError:
        return {}, set()
    return attempts, {o for o in done if o > offset}


@dataclass
class PartitionPositions:
    committed: int | None = None
    next_offset: int | None = None
    in_flight: dict[int, int] = field(default_factory=dict)  # offset -> attempt
    # Finished offsets after the oldest message in flight.
    done: set[int] = field(default_factory=set)
    # Offsets the worker finished before it restarted (from the commit it resumed from): skip them when read again.
    done_before_restart: set[int] = field(default_factory=set)
    stored: Commit | None = None

    @classmethod
    def resumed(cls, offset: int, metadata: str | None) -> tuple[PartitionPositions, dict[int, int]]:
        """Positions of a worker resuming from a commit, and the attempts that commit recorded by offset."""
        attempts, done = decode_metadata(offset, metadata)
        positions = cls(committed=offset, next_offset=offset, done=set(done), done_before_restart=set(done))
        positions.stored = positions.snapshot()
        return positions, attempts

    def restore_done(self, offsets: set[int]) -> None:
        """Offsets the node's journal records as finished after the commit resumed from: skip them when read again."""
        self.done |= offsets
        self.done_before_restart |= offsets

    def snapshot(self) -> Commit | None:
        """What a commit now would store."""
        if self.in_flight:
            position = min(self.in_flight)
        else:
            known = [o for o in (self.next_offset, self.committed) if o is not None]
            if not known:
                return None
            # Nothing in flight: past everything read and stored, and past what already finished.
            position = max(known)
            while position in self.done:
                position += 1
        return Commit(
            position,
            tuple(sorted(self.in_flight.items())),
            tuple(sorted(o for o in self.done if o > position)),
        )

    def pending(self) -> Commit | None:
        """The commit that would record a change since the last one stored, if anything changed."""
        commit = self.snapshot()
        return None if commit is None or commit == self.stored else commit

    def stored_as(self, commit: Commit) -> None:
        self.stored, self.committed = commit, commit.offset
        self.done = {o for o in self.done if o > commit.offset}

    def delivered(self, offset: int, attempt: int) -> Commit | None:
        """A message goes to the worker (again, for a redelivery). Returns the commit recording its attempt: store
        it before the task runs."""
        self.in_flight[offset] = attempt
        self.next_offset = max(self.next_offset or 0, offset + 1)
        return self.pending()

    def finished_before_restart(self, offset: int) -> bool:
        """True (once) for an offset the worker finished before it restarted: skip it."""
        if offset in self.done_before_restart:
            self.done_before_restart.discard(offset)
            return True
        return False

    def acked(self, offset: int) -> Commit | None:
        self.in_flight.pop(offset, None)
        self.done.add(offset)
        return self.pending()

    def skipped(self, offset: int) -> Commit | None:
        """A message that never reaches (or never returns to) the worker: dead-lettered, or finished before a
        restart."""
        self.next_offset = max(self.next_offset or 0, offset + 1)
        return self.acked(offset)
