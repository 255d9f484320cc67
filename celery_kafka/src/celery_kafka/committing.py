"""What a worker records about the partitions it owns, and how it stores it in Kafka and in its journal.

A worker's transport channel hands messages out and takes them back (transport.py); this is the bookkeeping beneath:
each delivery attempt is recorded before the task runs, each ack moves the position (offsets.py) and is stored, and
a restart resumes from the committed offset, its metadata and the node's journal (journal.py).

Without a journal every record is a synchronous commit. With one, the journal line is the record and the offset is
committed without waiting, at most every ``commit_interval`` seconds; the journal is compacted once a commit is
confirmed. An ack's commit rides on the next attempt's commit, or is stored by ``flush`` after an empty poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from celery_kafka.journal import Journal
from celery_kafka.offsets import Commit, PartitionPositions

logger = logging.getLogger(__name__)

Owned = tuple[str, int]

# Answers a fresh cluster gives while the group coordinator (__consumer_offsets) is still being set up.
COORDINATOR_NOT_READY = (
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
)


def retry_while_coordinator_moves(
    call: Callable[[], Any],
    retriable: tuple[int, ...],
    timeout: float = 120,
    pause: float = 1,
    waiting: str = "commit waits",
    log_level: int = logging.WARNING,
) -> Any:
    """Run `call` (an offset commit or read), again while it fails with one of the `retriable` error codes and
    `timeout` has not passed. The group coordinator moves when its broker restarts (rolling restart, crash); a commit
    then fails with COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR for a few seconds, and on a fresh cluster it is
    not set up yet. Committing the same offset twice is harmless. Each retry is logged as `waiting` at `log_level`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exception:
            error = exception.args[0]
            if not isinstance(error, KafkaError) or error.code() not in retriable or time.monotonic() > deadline:
                raise
            logger.log(log_level, "%s for the group coordinator: %s", waiting, error)
        time.sleep(pause)


class PartitionCommits:
    """The positions, attempts and journals of the partitions one channel owns. `consumer_for(topic)` is the
    channel's consumer of a topic, the one that commits for it. Acks of a threads pool arrive from its threads while
    the consuming thread reads the next message: the state is guarded by one lock."""

    def __init__(self, consumer_for: Callable[[str], Consumer], journal_dir: str | None, commit_interval: float) -> None:
        self._consumer_for = consumer_for
        self._journal_dir = journal_dir
        self._commit_interval = commit_interval
        self._positions: dict[Owned, PartitionPositions] = {}
        # Attempts read at a restart, for messages not delivered again yet.
        self._attempts: dict[tuple[str, int, int], int] = {}
        # Partitions with acks whose commit waits for the partition's next poll.
        self._unstored_acks: set[Owned] = set()
        # With a journal: the journal of each owned partition, the last commit sent without waiting, and when.
        self._journals: dict[Owned, Journal] = {}
        self._sent_commits: dict[Owned, Commit] = {}
        self._last_commit_at: dict[Owned, float] = {}
        self._lock = threading.RLock()

    def positions(self, topic: str, partition: int) -> PartitionPositions:
        return self._positions.setdefault((topic, partition), PartitionPositions())

    def snapshot(self) -> dict[Owned, PartitionPositions]:
        with self._lock:
            return dict(self._positions)

    # --- a restart -----------------------------------------------------------------------------------------------
    def resume(self, topic: str, partition: int, committed: TopicPartition) -> None:
        """Delivery attempts and finished offsets recorded before the worker stopped, or was killed: in the commit's
        metadata and, newer, in the node's journal."""
        attempts: dict[int, int] = {}
        if committed.offset != OFFSET_INVALID:
            positions, attempts = PartitionPositions.resumed(committed.offset, committed.metadata)
            self._positions[(topic, partition)] = positions
        if self._journal_dir:
            journal = Journal.for_partition(self._journal_dir, topic, partition)
            self._journals[(topic, partition)] = journal
            journaled, done = journal.read(committed.offset if committed.offset != OFFSET_INVALID else 0)
            self.positions(topic, partition).restore_done(done)
            for offset, attempt in journaled.items():
                attempts[offset] = max(attempt, attempts.get(offset, 0))
            if journaled or done:
                logger.info("journal of %s[%s]: %d attempts, %d finished after the commit", topic, partition, len(journaled), len(done))
        for offset, attempt in attempts.items():
            self._attempts[(topic, partition, offset)] = attempt

    def attempt_of(self, topic: str, partition: int, offset: int) -> int:
        """The attempt a record read now is: one more than those recorded before a restart."""
        return self._attempts.pop((topic, partition, offset), 0) + 1

    # --- what happens to a message ----------------------------------------------------------------------------
    def delivered(self, topic: str, partition: int, offset: int, attempt: int) -> None:
        """Record an attempt before the task runs: if the worker dies, the restart sees it (the offset stays here)."""
        with self._lock:
            commit = self.positions(topic, partition).delivered(offset, attempt)
        journal = self._journals.get((topic, partition))
        if journal is None:
            self._commit(topic, partition, commit)
        else:
            journal.delivered(offset, attempt)
            self._commit_soon(topic, partition)

    def finished_before_restart(self, topic: str, partition: int, offset: int) -> bool:
        """Skip a record that finished before the worker restarted (in the commit it resumed from, or its journal)."""
        positions = self.positions(topic, partition)
        if not positions.finished_before_restart(offset):
            return False
        with self._lock:
            commit = positions.skipped(offset)
        if (topic, partition) in self._journals:
            self._unstored_acks.add((topic, partition))
            self._commit_soon(topic, partition)
        else:
            self._commit(topic, partition, commit)
        return True

    def acked(self, topic: str, partition: int, offset: int) -> None:
        """Move the position past an acked message; stored with the partition's next commit (see flush)."""
        journal = self._journals.get((topic, partition))
        if journal is not None:
            journal.done(offset)
        with self._lock:
            if self.positions(topic, partition).acked(offset):
                self._unstored_acks.add((topic, partition))

    def skipped(self, topic: str, partition: int, offset: int) -> None:
        """Move past a message that will not run here (it was dead-lettered), and store that at once."""
        journal = self._journals.get((topic, partition))
        if journal is not None:
            journal.done(offset)
        with self._lock:
            commit = self.positions(topic, partition).skipped(offset)
        self._commit(topic, partition, commit)

    def flush(self, topic: str | None = None) -> None:
        """Store every deferred ack (of one topic, or all)."""
        for owned_topic, partition in list(self._unstored_acks):
            if topic is None or owned_topic == topic:
                self._commit(owned_topic, partition, None)

    # --- storing ------------------------------------------------------------------------------------------------
    def _commit_soon(self, topic: str, partition: int) -> None:
        """With a journal: send the partition's commit without waiting, at most every commit_interval seconds (the
        journal holds what happened since)."""
        owned = (topic, partition)
        now = time.monotonic()
        if now - self._last_commit_at.get(owned, 0.0) < self._commit_interval:
            return
        with self._lock:
            commit = self.positions(topic, partition).pending()
            if commit is None:
                return
            self.positions(topic, partition).stored_as(commit)
            self._unstored_acks.discard(owned)
        self._last_commit_at[owned] = now
        self._sent_commits[owned] = commit
        owned_at = TopicPartition(topic, partition, commit.offset, metadata=commit.metadata())
        self._consumer_for(topic).commit(offsets=[owned_at], asynchronous=True)

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's on_commit callback: the result of a commit sent without waiting."""
        for owned in partitions:
            key = (owned.topic, owned.partition)
            if error is not None or owned.error is not None:
                # Sent again with the next commit; until then the journal holds what it would have stored.
                logger.warning("commit of %s[%s] at %s failed: %s", owned.topic, owned.partition, owned.offset, error or owned.error)
                with self._lock:
                    self.positions(*key).stored = None
                    self._unstored_acks.add(key)
                continue
            sent = self._sent_commits.get(key)
            if sent is not None and sent.offset == owned.offset:
                self._compact_journal(key)

    def _compact_journal(self, owned: Owned) -> None:
        """Once the latest commit is confirmed, the journal keeps only what comes after it."""
        journal = self._journals.get(owned)
        if journal is None:
            return
        with self._lock:
            positions = self.positions(*owned)
            if positions.stored is None or positions.stored != self._sent_commits.get(owned):
                return  # a newer commit is on its way (or the last one failed): compact after that one
            # Attempts read at the restart for messages not delivered again yet are kept too.
            waiting = {offset: attempt for (topic, partition, offset), attempt in self._attempts.items() if (topic, partition) == owned}
            journal.compact({**waiting, **positions.in_flight}, positions.done | positions.done_before_restart)

    def _commit(self, topic: str, partition: int, commit: Commit | None) -> None:
        """Store a position and what it records (synchronously: a restart must never resume before a finished
        message, nor without the attempt of a message that was running).

        A commit is the partition's whole state, so it also stores any deferred ack; with nothing new to commit, the
        deferred acks are stored now."""
        positions = self.positions(topic, partition)
        with self._lock:
            self._unstored_acks.discard((topic, partition))
            commit = commit or positions.pending()
        if commit is None:
            return
        owned = TopicPartition(topic, partition, commit.offset, metadata=commit.metadata())
        consumer = self._consumer_for(topic)
        retry_while_coordinator_moves(lambda: consumer.commit(offsets=[owned], asynchronous=False), COORDINATOR_NOT_READY)
        with self._lock:
            positions.stored_as(commit)
        self._sent_commits[(topic, partition)] = commit
        self._last_commit_at[(topic, partition)] = time.monotonic()
        self._compact_journal((topic, partition))

    def close(self) -> None:
        for journal in self._journals.values():
            journal.close()
        self._journals.clear()
