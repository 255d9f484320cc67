"""The chaos scenario's accounting: lost, duplicated, dead-lettered and out-of-order task ids, and the load's retries."""

from __future__ import annotations

import json

from celery_kafka_testing.chaos import Completion, LoadGenerator, Row, Sent, account, format_table, parse_results


def sent(*ids_keys_seqs: tuple[str, str, int]) -> dict[str, Sent]:
    return {task_id: Sent(key, seq) for task_id, key, seq in ids_keys_seqs}


def ran(task_id: str, key: str, seq: int, line: int, node: str = "n1") -> Completion:
    return Completion(task_id=task_id, key=key, seq=seq, node=node, line=line)


def test_every_acknowledged_id_completed_once():
    acked = sent(("a", "k", 0), ("b", "k", 1), ("c", "j", 0))
    tally = account(acked, [ran("a", "k", 0, 0), ran("c", "j", 0, 1), ran("b", "k", 1, 2)], [])
    assert (tally.sent, tally.completed, tally.duplicates, tally.dead_lettered, tally.lost) == (3, 3, 0, 0, [])
    assert tally.ok and tally.order_violations == [] and tally.reruns_after_newer == 0


def test_missing_id_is_lost_unless_dead_lettered():
    acked = sent(("a", "k", 0), ("b", "k", 1), ("c", "k", 2))
    tally = account(acked, [ran("a", "k", 0, 0)], ["c", "not-ours"])
    assert tally.lost == ["b"] and not tally.ok
    assert tally.dead_lettered == 1 and tally.completed == 1


def test_a_dead_lettered_id_that_also_completed_counts_as_completed():
    tally = account(sent(("a", "k", 0)), [ran("a", "k", 0, 0)], ["a"])
    assert (tally.completed, tally.dead_lettered, tally.lost) == (1, 0, [])


def test_redelivery_reruns_are_duplicates_not_order_violations():
    acked = sent(("a", "k", 0), ("b", "k", 1), ("c", "k", 2))
    # The worker ran a, b, c, then restarted from the offset of b (its ack was never committed) and ran b, c again.
    rows = [ran("a", "k", 0, 0), ran("b", "k", 1, 1), ran("c", "k", 2, 2), ran("b", "k", 1, 3), ran("c", "k", 2, 4)]
    tally = account(acked, rows, [])
    assert tally.duplicates == 2 and tally.lost == [] and tally.order_violations == []
    assert tally.reruns_after_newer == 1  # b again after c; c again right after b is in order


def test_first_runs_out_of_send_order_are_violations():
    acked = sent(("a", "k", 0), ("b", "k", 1))
    tally = account(acked, [ran("b", "k", 1, 0), ran("a", "k", 0, 1)], [])
    assert tally.order_violations == ["k: seq 0 first ran after seq 1"]


def test_a_key_on_two_nodes_is_a_violation_and_unknown_ids_are_counted_apart():
    acked = sent(("a", "k", 0), ("b", "k", 1))
    tally = account(acked, [ran("a", "k", 0, 0, "n1"), ran("b", "k", 1, 0, "n2"), ran("zz", "k", 5, 1)], [])
    assert any("several nodes" in v for v in tally.order_violations) and tally.unknown_completions == 1


def test_parse_results_keeps_only_the_run_and_the_line_order():
    lines = [
        {"task_id": "x", "key": "k", "seq": 0, "run_id": "other"},
        {"task_id": "a", "key": "k", "seq": 0, "run_id": "r1"},
        {"task_id": "b", "key": "k", "seq": 1, "run_id": "r1"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    assert parse_results(text, "r1", "n1") == [ran("a", "k", 0, 1), ran("b", "k", 1, 2)]


def test_parse_results_skips_a_record_still_being_written():
    done = json.dumps({"task_id": "a", "key": "k", "seq": 0, "run_id": "r1"})
    assert parse_results(done + '\n{"task_id": "b", "key": ', "r1", "n1") == [ran("a", "k", 0, 0)]


def test_load_retries_a_failed_publish_with_the_same_id():
    calls: list[tuple[str, str, int]] = []

    def flaky_publish(task_id: str, key: str, seq: int) -> None:
        calls.append((task_id, key, seq))
        if len(calls) in (2, 3):
            raise RuntimeError("leader moved")

    load = LoadGenerator(flaky_publish, total=4, rate=1000, keys=2, retry_pause=0, run_id="r")
    load.start().join(10)
    assert load.publish_retries == 2 and load.unacknowledged == []
    assert [c[0] for c in calls] == ["r-000000", "r-000001", "r-000001", "r-000001", "r-000002", "r-000003"]
    assert load.acknowledged == {
        "r-000000": Sent("r-k0", 0),
        "r-000001": Sent("r-k1", 0),
        "r-000002": Sent("r-k0", 1),
        "r-000003": Sent("r-k1", 1),
    }


def test_load_gives_up_on_an_id_after_its_deadline():
    def broken(task_id: str, key: str, seq: int) -> None:
        raise RuntimeError("no brokers")

    load = LoadGenerator(broken, total=1, rate=1000, give_up_seconds=0.05, retry_pause=0.01, run_id="r")
    load.start().join(10)
    assert load.unacknowledged == ["r-000000"] and load.acknowledged == {} and load.publish_retries >= 2


def test_table_lists_every_column():
    tally = account(sent(("a", "k", 0)), [ran("a", "k", 0, 0), ran("a", "k", 0, 1)], [])
    table = format_table([Row("kill -9 broker", tally, 12.4, "NRestarts 0")])
    header, line = table.splitlines()
    assert header.split(" | ")[0].strip() == "fault" and "drain s" in header
    assert [cell.strip() for cell in line.split(" | ")] == ["kill -9 broker", "1", "0", "1", "0", "1", "0", "12", "NRestarts 0"]
