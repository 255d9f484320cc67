from celery_kafka.offsets import Commit, PartitionPositions


def test_single_message_in_flight_commits_its_attempt_then_the_next_offset():
    positions = PartitionPositions()
    assert positions.delivered(10, attempt=1) == Commit(10, 1)
    assert positions.acked(10) == Commit(11)


def test_a_redelivery_of_the_same_offset_stores_the_new_attempt():
    positions = PartitionPositions(committed=10)
    assert positions.delivered(10, attempt=2) == Commit(10, 2)


def test_commit_never_passes_a_message_still_in_flight():
    positions = PartitionPositions()
    positions.delivered(5, attempt=1)  # held back, e.g. an ETA task
    assert positions.delivered(6, attempt=1) is None  # position stays at 5
    assert positions.acked(6) is None  # 6 is done, but 5 is not
    assert positions.acked(5) == Commit(7)


def test_skipped_messages_move_the_position_only_when_nothing_older_is_in_flight():
    positions = PartitionPositions()
    positions.delivered(1, attempt=1)
    assert positions.skipped(2) is None
    assert positions.acked(1) == Commit(3)
    assert positions.skipped(3) == Commit(4)


def test_rewind_forgets_later_deliveries():
    positions = PartitionPositions()
    positions.delivered(7, attempt=1)
    positions.rewound(7)
    assert positions.delivered(7, attempt=2) == Commit(7, 2)
