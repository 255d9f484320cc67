"""Which offset a worker may commit for its partition.

The committed offset is where a restarted worker resumes, so it must never pass a message that was handed to the
worker but not yet acknowledged. Usually one message is in flight and the rule reduces to "commit offset + 1 after the
ack"; with messages held back (Celery ETA/countdown tasks) later messages can finish first, and the commit then stays
at the oldest message still in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Commit:
    offset: int
    # Delivery attempt of the message at `offset`, when that message is in flight (stored in the commit metadata).
    attempt: int | None = None


@dataclass
class PartitionPositions:
    committed: int | None = None
    next_offset: int | None = None
    in_flight: dict[int, int] = field(default_factory=dict)  # offset -> attempt

    def _target(self) -> Commit | None:
        if self.in_flight:
            oldest = min(self.in_flight)
            return Commit(oldest, self.in_flight[oldest])
        return None if self.next_offset is None else Commit(self.next_offset)

    def _advance(self, forced: bool = False) -> Commit | None:
        target = self._target()
        if target is None or (not forced and target.offset == self.committed):
            return None
        self.committed = target.offset
        return target

    def delivered(self, offset: int, attempt: int) -> Commit | None:
        """A message goes to the worker. Returns the commit that records its attempt, if it is the oldest in flight."""
        self.in_flight[offset] = attempt
        self.next_offset = max(self.next_offset or 0, offset + 1)
        oldest = min(self.in_flight)
        # The attempt must be stored even when the position does not move (a redelivery of the same offset).
        return self._advance(forced=oldest == offset)

    def acked(self, offset: int) -> Commit | None:
        self.in_flight.pop(offset, None)
        return self._advance()

    def skipped(self, offset: int) -> Commit | None:
        """A message that never reaches the worker (dead-lettered on arrival)."""
        self.next_offset = max(self.next_offset or 0, offset + 1)
        return self._advance()

    def rewound(self, offset: int) -> None:
        """A message given back to be read again from its own offset: no longer in flight, and nothing after it is."""
        self.in_flight = {o: a for o, a in self.in_flight.items() if o < offset}
        self.next_offset = offset
