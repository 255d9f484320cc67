# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Cluster health for the health gate: parse the KRaft quorum's describe output and name every problem found.

Pure functions, so the assessment can be unit-tested without a cluster; library/kafka_cluster_health.py runs the tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: assess_health reads nothing but a TopicState's partitions
    from kafka_topics import TopicState


def parse_quorum_status(output: str) -> dict[str, str]:
    """`MetadataQuorumCommand describe --status`: 'Key:   value' lines into a dict."""
    status: dict[str, str] = {}
    for raw in output.splitlines():
        key, sep, value = raw.partition(":")
        if sep and key.strip() and " " not in key.strip():
            status[key.strip()] = value.strip()
    return status


@dataclass
class QuorumReplica:
    node_id: int
    log_end_offset: int
    lag: int
    status: str
    last_fetch_ms: int = -1


def parse_quorum_replication(output: str) -> list[QuorumReplica]:
    """`MetadataQuorumCommand describe --replication`: one row per voter and observer."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    replicas = []
    for line in lines[1:]:
        cells = dict(zip(header, line.split(), strict=False))
        if "NodeId" not in cells or not cells["NodeId"].isdigit():
            continue
        replicas.append(
            QuorumReplica(
                node_id=int(cells["NodeId"]),
                log_end_offset=int(cells.get("LogEndOffset", "-1")),
                lag=int(cells.get("Lag", "-1")),
                status=cells.get("Status", ""),
                last_fetch_ms=int(cells.get("LastFetchTimestamp", "-1")),
            )
        )
    return replicas


def assess_health(
    replicas: list[QuorumReplica] | None,
    topics: dict[str, TopicState] | None,
    expected_voters: int | None = None,
    require_node: int | None = None,
    max_lag: int = 100,
    max_fetch_age_ms: int = 15000,
) -> tuple[list[str], list[str], list[str]]:
    """Problems of a cluster from the quorum's `describe --replication` rows and an unfiltered `TopicCommand
    --describe`, with the under-replicated and leaderless topic:partition entries. None skips a side (its tool
    failed, or the partitions were not asked for)."""
    problems: list[str] = []
    voters = [r for r in replicas or [] if r.status in ("Leader", "Follower")]
    if replicas is not None:
        problems.extend(_quorum_problems(replicas, voters, expected_voters, require_node, max_lag, max_fetch_age_ms))
    under_replicated: list[str] = []
    unavailable: list[str] = []
    for name, topic in sorted((topics or {}).items()):
        for partition in topic.partitions:
            entry = f"{name}:{partition.partition}"
            if partition.leader is None:
                unavailable.append(entry)
            elif len(partition.isr) < len(partition.replicas):
                under_replicated.append(entry)
    if under_replicated:
        problems.append(f"{len(under_replicated)} under-replicated partition(s): {', '.join(under_replicated[:10])}")
    if unavailable:
        problems.append(f"{len(unavailable)} partition(s) without a leader: {', '.join(unavailable[:10])}")
    return problems, under_replicated, unavailable


def _quorum_problems(
    replicas: list[QuorumReplica],
    voters: list[QuorumReplica],
    expected_voters: int | None,
    require_node: int | None,
    max_lag: int,
    max_fetch_age_ms: int,
) -> list[str]:
    problems: list[str] = []
    leader = next((r for r in replicas if r.status == "Leader"), None)
    if leader is None:
        problems.append("the KRaft quorum has no leader")
    elif leader.last_fetch_ms > 0:
        # A stopped node keeps its last lag (metadata grows slowly when idle); the leader's clock says it went quiet.
        problems.extend(
            f"node {r.node_id} last fetched from the quorum leader {(leader.last_fetch_ms - r.last_fetch_ms) / 1000:.0f} s ago"
            for r in replicas
            if r is not leader and r.last_fetch_ms > 0 and leader.last_fetch_ms - r.last_fetch_ms > max_fetch_age_ms
        )
    if expected_voters is not None and len(voters) != expected_voters:
        problems.append(f"the quorum has {len(voters)} voters, expected {expected_voters}")
    problems.extend(f"voter {r.node_id} trails the leader by {r.lag} records" for r in voters if r.lag < 0 or r.lag > max_lag)
    if require_node is not None:
        mine = [r for r in replicas if r.node_id == require_node]
        if not mine:
            problems.append(f"node {require_node} is not part of the quorum yet")
        elif mine[0] not in voters and (mine[0].lag < 0 or mine[0].lag > max_lag):
            problems.append(f"node {require_node} trails the leader by {mine[0].lag} records")
    return problems
