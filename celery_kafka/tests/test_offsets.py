from celery_kafka.offsets import Commit, PartitionPositions, decode_metadata, encode_metadata


def store(positions: PartitionPositions, commit: Commit | None) -> Commit | None:
    """What the transport does with a commit: store it (here: remember it was stored)."""
    if commit is not None:
        positions.stored_as(commit)
    return commit


def test_single_message_in_flight_commits_its_attempt_then_the_next_offset():
    positions = PartitionPositions()
    commit = store(positions, positions.delivered(10, attempt=1))
    assert commit == Commit(10, ((10, 1),))
    assert commit.metadata() == "attempt=1"
    assert store(positions, positions.acked(10)) == Commit(11)


def test_a_redelivery_of_the_same_offset_stores_the_new_attempt():
    positions, attempts = PartitionPositions.resumed(10, "attempt=1")
    assert attempts == {10: 1}
    assert positions.delivered(10, attempt=2) == Commit(10, ((10, 2),))


def test_commit_never_passes_a_message_still_in_flight():
    positions = PartitionPositions()
    store(positions, positions.delivered(5, attempt=1))  # a long task, or an ETA task held back
    commit = store(positions, positions.delivered(6, attempt=1))
    assert commit == Commit(5, ((5, 1), (6, 1)))  # 6's attempt is recorded too
    commit = store(positions, positions.acked(6))
    assert commit is not None and commit.offset == 5 and commit.done == (6,)
    assert store(positions, positions.acked(5)) == Commit(7)


def test_skipped_messages_move_the_position_only_when_nothing_older_is_in_flight():
    positions = PartitionPositions()
    store(positions, positions.delivered(1, attempt=1))
    assert store(positions, positions.skipped(2)).offset == 1
    assert store(positions, positions.acked(1)) == Commit(3)
    assert store(positions, positions.skipped(3)) == Commit(4)


def test_concurrent_commit_metadata_round_trips():
    commit = Commit(100, ((100, 2), (105, 1)), (101, 102, 103, 104, 106))
    metadata = encode_metadata(commit)
    assert metadata == "attempts=100:2,105:1;done=101-104,106"
    assert decode_metadata(100, metadata) == ({100: 2, 105: 1}, {101, 102, 103, 104, 106})


def test_unreadable_metadata_records_nothing():
    assert decode_metadata(5, "attempts=5:x") == ({}, set())
    assert decode_metadata(5, "something else") == ({}, set())
    assert decode_metadata(5, None) == ({}, set())


def test_metadata_stays_under_kafkas_limit_by_dropping_the_newest_finished_offsets():
    commit = Commit(0, ((0, 1),), tuple(range(2, 4000, 2)))
    metadata = encode_metadata(commit)
    assert len(metadata) <= 3000
    attempts, done = decode_metadata(0, metadata)
    assert attempts == {0: 1} and 2 in done and 3998 not in done


def test_a_worker_killed_mid_flight_resumes_with_every_attempt_and_skips_what_finished():
    """Three tasks in flight in a pool, two finished after the oldest: the worker is killed. Its successor knows the
    attempt of each task that was running and runs none of the finished ones again."""
    before = PartitionPositions()
    for offset in range(100, 106):
        store(before, before.delivered(offset, attempt=1))
    for offset in (101, 102, 104):
        store(before, before.acked(offset))
    last = before.stored
    assert last == Commit(100, ((100, 1), (103, 1), (105, 1)), (101, 102, 104))

    after, attempts = PartitionPositions.resumed(last.offset, last.metadata())
    assert attempts == {100: 1, 103: 1, 105: 1}
    assert after.committed == 100
    store(after, after.delivered(100, attempt=attempts[100] + 1))
    assert after.finished_before_restart(101) and after.finished_before_restart(102)
    store(after, after.skipped(101))
    store(after, after.skipped(102))
    assert not after.finished_before_restart(103)
    store(after, after.delivered(103, attempt=attempts[103] + 1))
    assert after.stored == Commit(100, ((100, 2), (103, 2)), (101, 102, 104))
    for offset in (100, 103):
        store(after, after.acked(offset))
    assert after.stored == Commit(105)
    assert after.finished_before_restart(104)
    assert after.skipped(104) is None  # already past it: nothing new to store


def test_the_position_never_moves_back_when_finished_offsets_are_read_again():
    positions, _ = PartitionPositions.resumed(5, "attempts=5:1,9:1;done=6-8")
    store(positions, positions.delivered(5, attempt=2))
    assert store(positions, positions.acked(5)).offset == 9
    for offset in (6, 7, 8):
        assert positions.finished_before_restart(offset)
        assert positions.skipped(offset) is None
    assert store(positions, positions.delivered(9, attempt=2)) == Commit(9, ((9, 2),))
