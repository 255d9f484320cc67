# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Helpers shared by the Kafka modules: run Kafka's Java admin tools and parse what they print.

The modules run on a Kafka node and call the tools straight from the release's libs/ directory, so they work with an
official release and with an archive assembled from Maven Central alike, and need nothing but Java on the node.
Parsing and planning are pure functions so they can be unit-tested without a cluster.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The argument spec every module that runs Kafka's admin tools shares (documented in doc_fragments/kafka_admin_tool.py).
ADMIN_TOOL_OPTIONS: dict[str, dict[str, Any]] = {
    "command_config": {"type": "path"},
    "java": {"type": "path", "default": "/usr/bin/java"},
}

TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
QUORUM_COMMAND = "org.apache.kafka.tools.MetadataQuorumCommand"
# ConfigCommand lives in the broker jar up to 4.3 and moves to kafka-tools later; newest location first.
CONFIG_COMMAND_CANDIDATES = ("org.apache.kafka.tools.ConfigCommand", "kafka.admin.ConfigCommand")


class PlanError(Exception):
    """A requested change that Kafka cannot make, or that would lose data."""


@dataclass
class PartitionState:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]


@dataclass
class TopicState:
    name: str
    partition_count: int
    replication_factor: int
    partitions: list[PartitionState] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)


# A tool runs for about a second: the serial collector and the first JIT tier start faster and burn ~30 % less CPU
# than the JVM's server defaults (G1 with its threads, C2), which pay off only in long-lived processes.
TOOL_JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xmx256m")


# Class data sharing: the first tool run of a release on a node records the classes it loaded in an archive, and later
# runs map it instead of loading them from the jars (a topic describe 0.79 -> 0.37 s, a quorum describe 0.71 -> 0.41 s;
# Java 17, docs/facts.md). The JVM prints its archive warnings on stdout, which the parsers read: only errors are
# logged, on stderr. A truncated archive crashes the JVM, so one is written under a temporary name, loaded once with
# -Xshare:on, and only then renamed; one that crashes a tool later is removed and the tool runs again without it.
# A crash report goes to the temporary directory, not to the module's working directory.
ARCHIVE_LOG_OPTIONS = ("-Xlog:disable", "-Xlog:all=error:stderr", f"-XX:ErrorFile={tempfile.gettempdir()}/kafka-tool-hs_err_pid%p.log")
JVM_CRASH_BANNER = "A fatal error has been detected by the Java Runtime Environment"


def java_tool_argv(java: str, kafka_home: str, main_class: str, args: list[str], archive_options: tuple[str, ...] = ()) -> list[str]:
    """argv that runs one of Kafka's tools with the release's own class path."""
    return [java, *TOOL_JVM_OPTIONS, *archive_options, "-cp", kafka_home.rstrip("/") + "/libs/*", main_class, *args]


def class_archive_path(java: str, kafka_home: str) -> Path:
    """The tools' class archive for this Kafka release and this Java build, inside the release directory."""
    java_binary = Path(shutil.which(java) or java).resolve()
    stat = java_binary.stat()
    build = hashlib.sha1(f"{java_binary}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(kafka_home).resolve() / f"tools-classes-{build}.jsa"


def jvm_crashed(rc: int, out: str, err: str) -> bool:
    return rc != 0 and (JVM_CRASH_BANNER in out or JVM_CRASH_BANNER in err)


def run_java_tool(module: Any, main_class: str, args: list[str]) -> tuple[int, str, str]:
    """Run one of Kafka's tools for a module whose parameters include java and kafka_home, with the release's class
    archive; the first run outside check mode writes it."""
    java, kafka_home = module.params["java"], module.params["kafka_home"]
    archive = class_archive_path(java, kafka_home)

    def run(tool_class: str, tool_args: list[str], *archive_options: str) -> tuple[int, str, str]:
        options = (*ARCHIVE_LOG_OPTIONS, *archive_options) if archive_options else ()
        return module.run_command(java_tool_argv(java, kafka_home, tool_class, tool_args, options))

    if archive.exists():
        answer = run(main_class, args, f"-XX:SharedArchiveFile={archive}")
        if not jvm_crashed(*answer):
            return answer
        archive.unlink(missing_ok=True)
    if module.check_mode or not os.access(archive.parent, os.W_OK):
        return run(main_class, args)
    candidate = archive.with_name(f"{archive.name}.{os.getpid()}.{threading.get_ident()}")
    answer = run(main_class, args, f"-XX:ArchiveClassesAtExit={candidate}")
    if candidate.exists():
        if answer[0] == 0 and run("-version", [], "-Xshare:on", f"-XX:SharedArchiveFile={candidate}")[0] == 0:
            candidate.replace(archive)
        else:
            candidate.unlink()
    return answer


def find_main_class(kafka_home: str, candidates: tuple[str, ...]) -> str | None:
    """First of `candidates` present in the release's Kafka jars, or None."""
    wanted = {name.replace(".", "/") + ".class": name for name in candidates}
    found: set[str] = set()
    for jar in sorted(Path(kafka_home, "libs").glob("kafka*.jar")):
        with zipfile.ZipFile(jar) as archive:
            found.update(wanted[entry] for entry in archive.namelist() if entry in wanted)
    return next((name for name in candidates if name in found), None)


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _fields(line: str) -> dict[str, str]:
    """'Topic: a\tPartition: 0\tLeader: 1' -> {'Topic': 'a', 'Partition': '0', 'Leader': '1'}."""
    result: dict[str, str] = {}
    for chunk in line.strip().split("\t"):
        key, sep, value = chunk.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


def parse_topic_describe(output: str) -> dict[str, TopicState]:
    """Parse `TopicCommand --describe` output into topic states (configs are read separately)."""
    topics: dict[str, TopicState] = {}
    for raw in output.splitlines():
        if not raw.strip():
            continue
        fields = _fields(raw)
        name = fields.get("Topic")
        if name is None:
            continue
        if "Partition" in fields:
            leader = fields.get("Leader", "")
            # Filtered describes (--under-replicated-partitions) print partition lines without a topic header.
            topic = topics.setdefault(name, TopicState(name=name, partition_count=-1, replication_factor=-1))
            topic.partitions.append(
                PartitionState(
                    partition=int(fields["Partition"]),
                    leader=int(leader) if leader.lstrip("-").isdigit() and int(leader) >= 0 else None,
                    replicas=_int_list(fields.get("Replicas", "")),
                    isr=_int_list(fields.get("Isr", "")),
                )
            )
        elif "PartitionCount" in fields:
            topic = topics.setdefault(name, TopicState(name=name, partition_count=-1, replication_factor=-1))
            topic.partition_count = int(fields["PartitionCount"])
            topic.replication_factor = int(fields["ReplicationFactor"])
    return topics


_CONFIG_HEADER = re.compile(r"^(?:Dynamic )?configs for topic (?P<name>\S+) are:$")
_CONFIG_LINE = re.compile(r"^\s+(?P<key>[^=\s]+)=(?P<value>.*?) sensitive=(?:true|false) synonyms=\{.*\}$")


def parse_config_describe(output: str) -> dict[str, dict[str, str]]:
    """Parse `ConfigCommand --describe --entity-type topics`: the dynamic (per-topic) overrides of each topic."""
    configs: dict[str, dict[str, str]] = {}
    current: str | None = None
    for raw in output.splitlines():
        header = _CONFIG_HEADER.match(raw.strip())
        if header:
            current = header.group("name")
            configs.setdefault(current, {})
            continue
        entry = _CONFIG_LINE.match(raw)
        if entry and current is not None:
            configs[current][entry.group("key")] = entry.group("value")
    return configs


def config_value(value: object) -> str:
    """Render a declared config value the way Kafka prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(config_value(item) for item in value)
    return str(value)


@dataclass
class TopicPlan:
    name: str
    create: bool = False
    partitions_from: int | None = None
    partitions_to: int | None = None
    config_changes: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.create or self.partitions_to is not None or bool(self.config_changes)


def plan_topic(desired: dict, current: TopicState | None) -> TopicPlan:
    """Compare one declared topic with the cluster and say what to do; raise PlanError for unsafe requests
    (with the topic's own `hint`, if it declares one, appended)."""
    try:
        return _plan_topic(desired, current)
    except PlanError as error:
        hint = desired.get("hint")
        raise PlanError(f"{error} {hint}" if hint else str(error)) from None


def _plan_topic(desired: dict, current: TopicState | None) -> TopicPlan:
    name = desired["name"]
    partitions = int(desired["partitions"])
    replication = int(desired["replication_factor"])
    declared = {key: config_value(value) for key, value in (desired.get("config") or {}).items()}
    if current is None:
        return TopicPlan(name=name, create=True, partitions_to=partitions, config_changes=declared)
    if partitions < current.partition_count:
        raise PlanError(
            f"topic {name}: refusing to lower partitions from {current.partition_count} to {partitions}. Kafka cannot "
            "remove partitions, and keys would move to other partitions. Keep the declared count at "
            f"{current.partition_count} or more; to really shrink, create a new topic and migrate to it."
        )
    if replication != current.replication_factor:
        direction = "lower" if replication < current.replication_factor else "raise"
        raise PlanError(
            f"topic {name}: refusing to {direction} the replication factor from {current.replication_factor} to "
            f"{replication}. Changing replication moves replicas between brokers; do it with a reviewed "
            "kafka-reassign-partitions plan, then declare the new factor here."
        )
    plan = TopicPlan(name=name)
    if partitions > current.partition_count:
        plan.partitions_from = current.partition_count
        plan.partitions_to = partitions
    plan.config_changes = {key: value for key, value in declared.items() if current.config.get(key) != value}
    return plan


def add_config_argument(changes: dict[str, str]) -> str:
    """`--add-config` value; values holding commas are wrapped in brackets as ConfigCommand requires."""
    return ",".join(f"{key}=[{value}]" if "," in value else f"{key}={value}" for key, value in sorted(changes.items()))


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


# --- SCRAM users ------------------------------------------------------------------------------------------------
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_LINE = re.compile(r"^SCRAM credential configs for user-principal '(?P<name>[^']*)' are (?P<creds>.*)$")


def parse_user_scram_describe(output: str) -> dict[str, set[str]]:
    """`ConfigCommand --describe --entity-type users`: the SCRAM mechanisms each user has credentials for."""
    users: dict[str, set[str]] = {}
    for raw in output.splitlines():
        match = _SCRAM_LINE.match(raw.strip())
        if match:
            mechanisms = {part.split("=", 1)[0].strip() for part in match.group("creds").split(",")}
            users[match.group("name")] = {m for m in mechanisms if m in SCRAM_MECHANISMS}
    return users


def scram_fingerprint(password: str, salt: str, mechanism: str) -> str:
    """Salted, slow hash of a password, kept on the node to notice a changed password without storing it."""
    digest = hashlib.pbkdf2_hmac("sha256", f"{mechanism}:{password}".encode(), bytes.fromhex(salt), 100_000)
    return digest.hex()


def plan_scram_users(
    users: list[dict[str, str]], mechanism: str, existing: dict[str, set[str]], state: dict[str, dict[str, str]]
) -> list[str]:
    """Names of the users whose credential must be (re)set: missing in Kafka for `mechanism`, never set by us, or
    set with another password than the one declared now."""
    todo = []
    for user in users:
        name, password = user["name"], user["password"]
        known = state.get(name)
        if (
            mechanism not in existing.get(name, set())
            or known is None
            or known.get("mechanism") != mechanism
            or scram_fingerprint(password, known["salt"], mechanism) != known.get("fingerprint")
        ):
            todo.append(name)
    return todo


def scram_add_config(mechanism: str, password: str, iterations: int = 8192) -> str:
    """`--add-config-file` line that sets one SCRAM credential. Unlike `--add-config`, the file form takes no brackets
    (ConfigCommand 4.3.1 rejects `SCRAM-SHA-512=[...]` read from a file as an invalid credential property)."""
    return f"{mechanism}=iterations={iterations},password={password}\n"


def with_command_config(args: list[str], command_config: str | None) -> list[str]:
    """Tool arguments plus `--command-config` when a client properties file is given (secured listeners)."""
    return [*args, "--command-config", command_config] if command_config else list(args)


def run_admin_tool(module: Any, main_class: str, args: list[str]) -> str:
    """Run one of Kafka's admin tools against the brokers for an Ansible module whose parameters include java,
    kafka_home, bootstrap_servers and command_config; its output, or the module fails naming the call."""
    params = module.params
    args = with_command_config(["--bootstrap-server", params["bootstrap_servers"], *args], params["command_config"])
    rc, out, err = run_java_tool(module, main_class, args)
    if rc != 0:
        tool = main_class.rsplit(".", 1)[-1]
        module.fail_json(msg=f"{tool} {' '.join(args[2:])} failed (rc={rc}): {(err or out).strip()[-600:]}", rc=rc)
    return out


def quorum_describe_args(bootstrap_controllers: str, command_config: str | None, flag: str) -> list[str]:
    """MetadataQuorumCommand arguments for `describe <flag>`. Its options, `--command-config` among them, must come
    before the `describe` subcommand: after it, 4.3.1 stops with "unrecognized arguments: '--command-config'"."""
    return [*with_command_config(["--bootstrap-controller", bootstrap_controllers], command_config), "describe", flag]
