from pathlib import Path

from celery_kafka import journal as journal_module
from celery_kafka.journal import Journal, replay
from celery_kafka.offsets import PartitionPositions


def test_replay_keeps_the_highest_attempt_and_forgets_attempts_of_finished_messages():
    lines = ["a 10 1\n", "d 10\n", "a 11 1\n", "a 11 2\n", "a 12 1\n", "d 12\n", "a 13 1\n"]
    attempts, done = replay(lines, committed=10)
    assert attempts == {11: 2, 13: 1}
    assert done == {10, 12}


def test_replay_ignores_what_the_commit_already_covers_and_a_line_cut_off_by_a_crash():
    attempts, done = replay(["a 4 3\n", "d 5\n", "a 9 1\n", "d 9\n", "a 10 2\n", "d 1"], committed=9)
    assert attempts == {10: 2}
    assert done == {9}
    assert replay(["a 10", "x 1 2\n", "a ten 1\n", "d\n"], committed=0) == ({}, set())


def test_a_journal_survives_its_writer_and_tells_a_restarted_worker_what_ran(tmp_path: Path):
    first = Journal.for_partition(tmp_path, "celery.tasks", 2)
    first.delivered(100, 1)
    first.done(100)
    first.delivered(101, 1)
    # The process is killed here: no close(), no commit since offset 100.
    second = Journal.for_partition(tmp_path, "celery.tasks", 2)
    attempts, done = second.read(committed=100)
    assert (attempts, done) == ({101: 1}, {100})

    positions, _ = PartitionPositions.resumed(100, "attempt=1")
    positions.restore_done(done)
    assert positions.finished_before_restart(100), "a finished task must not run again after a process kill"
    assert not positions.finished_before_restart(101)


def test_compaction_keeps_only_what_comes_after_the_confirmed_commit(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "COMPACT_AFTER_LINES", 4)
    journal = Journal.for_partition(tmp_path, "t", 0)
    for offset in range(3):
        journal.delivered(offset, 1)
        journal.done(offset)
    journal.delivered(3, 2)
    journal.compact({3: 2}, {5})
    journal.done(4)
    assert journal.path.read_text() == "a 3 2\nd 5\nd 4\n"
    assert Journal(journal.path).read(committed=3) == ({3: 2}, {4, 5})


def test_compaction_waits_until_the_file_is_long_enough(tmp_path: Path):
    journal = Journal.for_partition(tmp_path, "t", 0)
    journal.delivered(1, 1)
    journal.compact({}, set())
    assert journal.path.read_text() == "a 1 1\n"
