# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Run Kafka's Java admin tools for the Kafka modules.

The modules run on a Kafka node and call the tools straight from the release's libs/ directory, so they work with an
official release and with an archive assembled from Maven Central alike, and need nothing but Java on the node.
What each module does with the output is in its own module_utils file (kafka_topics, kafka_cluster_health,
kafka_scram_users, kafka_acls): pure functions, unit-tested without a cluster.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
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


def with_command_config(args: list[str], command_config: str | None) -> list[str]:
    """Tool arguments plus `--command-config` when a client properties file is given (secured listeners)."""
    return [*args, "--command-config", command_config] if command_config else list(args)


def run_admin_tool(module: Any, main_class: str, args: list[str]) -> str:
    """Run one of Kafka's admin tools against the brokers for an Ansible module whose parameters include java,
    kafka_home, bootstrap_servers and command_config; its output, or the module fails naming the call."""
    return run_admin_tools(module, [(main_class, args)])[0]


def run_java_tools(module: Any, calls: list[tuple[str, list[str]]]) -> list[tuple[int, str, str]]:
    """run_java_tool for each (main class, arguments) side by side: each starts a JVM, which one core does alone.
    The answers in the order of `calls`; the caller decides what a failure means."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: run_java_tool(module, *call), calls))


def run_admin_tools(module: Any, calls: list[tuple[str, list[str]]]) -> list[str]:
    """Run several of Kafka's admin tools against the brokers side by side; their outputs in the order of `calls`, or
    the module fails naming the first call that failed (from this thread, once all ended)."""
    params = module.params
    commands = [
        (main_class, with_command_config(["--bootstrap-server", params["bootstrap_servers"], *args], params["command_config"]))
        for main_class, args in calls
    ]
    answers = run_java_tools(module, commands)
    for (main_class, args), (rc, out, err) in zip(commands, answers, strict=True):
        if rc != 0:
            tool = main_class.rsplit(".", 1)[-1]
            module.fail_json(msg=f"{tool} {' '.join(args[2:])} failed (rc={rc}): {(err or out).strip()[-600:]}", rc=rc)
    return [out for _rc, out, _err in answers]


def quorum_describe_args(bootstrap_controllers: str, command_config: str | None, flag: str) -> list[str]:
    """MetadataQuorumCommand arguments for `describe <flag>`. Its options, `--command-config` among them, must come
    before the `describe` subcommand: after it, 4.3.1 stops with "unrecognized arguments: '--command-config'"."""
    return [*with_command_config(["--bootstrap-controller", bootstrap_controllers], command_config), "describe", flag]
