"""Pure checks behind the kafka role's preflight (tasks/preflight.yml), as filters: each returns what is wrong, by
name only (never a password), so the preflight's assertions read as a list of conditions.

Unit tests: tests/test_kafka_preflight_filters.py.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A SCRAM password goes into a JAAS line and into kafka-storage's --add-scram list: these would break either.
UNUSABLE_PASSWORD_CHARACTERS = re.compile(r'[",\[\]\\\s]')
USER_NAME = re.compile(r"^[A-Za-z0-9._@-]+$")
SECURITY_PROTOCOL_MAP = re.compile(r"(?m)^listener\.security\.protocol\.map=(.*)$")


def scram_user_problems(users: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The users (by name) that cannot be created as given: no password, a password with characters a JAAS line or
    --add-scram cannot carry, a name with other characters than letters, digits and . _ @ -, a name given twice."""
    names = [str(user.get("name", "")) for user in users]
    return {
        "without_password": [str(user.get("name", "?")) for user in users if not user.get("password")],
        "unusable_password": [
            str(user.get("name", "?"))
            for user in users
            if isinstance(user.get("password"), str) and UNUSABLE_PASSWORD_CHARACTERS.search(user["password"])
        ],
        "bad_name": [name or "(empty)" for name in names if not USER_NAME.match(name)],
        "duplicate_name": sorted(name for name, count in Counter(names).items() if count > 1),
    }


def hosts_without_own_certificate(certificate_files: dict[str, str]) -> list[str]:
    """The hosts, of {host: its kafka_tls_node_cert_file}, that have no certificate of their own (the CA signs one)."""
    return [host for host, path in certificate_files.items() if not path]


def deployed_security_protocol(server_properties: str) -> str:
    """What a node's server.properties runs: 'SASL_SSL', 'PLAINTEXT', or '' when there is none (a new node)."""
    found = SECURITY_PROTOCOL_MAP.search(server_properties or "")
    if found is None or not found.group(1).strip():
        return ""
    return "SASL_SSL" if "SASL_SSL" in found.group(1) else "PLAINTEXT"


def _scram_user_sentence(users: list[dict[str, Any]]) -> str | None:
    problems = scram_user_problems(users)
    if not any(problems.values()):
        return None
    parts = [
        "With kafka_security_protocol=SASL_SSL every SCRAM user needs a name (letters, digits, '.', '_', '@', '-'; each"
        " once) and a non-empty password without quotes, backslashes, commas, brackets or spaces."
    ]
    if problems["without_password"]:
        parts.append(
            f"No password: {', '.join(problems['without_password'])} (the inter-broker user is"
            " kafka_sasl_inter_broker_username, its password kafka_sasl_inter_broker_password; keep them in a vault)."
        )
    if problems["unusable_password"]:
        parts.append(f"Unusable characters in the password of: {', '.join(problems['unusable_password'])}.")
    if problems["bad_name"]:
        parts.append(f"Bad names: {', '.join(problems['bad_name'])}.")
    if problems["duplicate_name"]:
        parts.append(f"Given twice: {', '.join(problems['duplicate_name'])}.")
    parts.append(f"Users: {', '.join(str(user.get('name', '?')) for user in users)}.")
    return " ".join(parts)


def _is_file(path: str) -> bool:
    """Whether a path on the controller names an existing file (Ansible's `is file` test)."""
    return bool(path) and Path(path).is_file()


def _source_problem(settings: Mapping[str, Any], prefix: str, digest: str, digest_pattern: str, what: str, kind: str) -> str | None:
    """What is wrong with where a download comes from: `<prefix>_source` url with its `<prefix>_<digest>` checksum
    (`what`, a sentence end with {url}), or local with `<prefix>_local_path` an existing `kind` of file on the controller."""
    if settings[f"{prefix}_source"] == "url":
        if re.fullmatch(digest_pattern, str(settings[f"{prefix}_{digest}"] or "")):
            return None
        return f"{prefix}_{digest} must be the {what.format(url=settings[f'{prefix}_url'])}."
    local_path = str(settings[f"{prefix}_local_path"] or "")
    if _is_file(local_path):
        return None
    return f"{prefix}_local_path ('{local_path}') must name an existing {kind} on the Ansible controller."


def cluster_problems(
    nodes: Mapping[str, Mapping[str, Any]], brokers: list[str], controllers: list[str], settings: Mapping[str, Any]
) -> list[str]:
    """Everything wrong with the cluster's inventory, each a sentence naming the variables and hosts, checked before
    facts are gathered and before anything on a host changes (an empty list: nothing). `nodes` is every Kafka host's
    variables (hostvars); `settings` the role's variables by name, plus `dedicated_controllers` (the controller group
    has hosts), `secure` (SASL_SSL), `scram_users` (the inter-broker user first) and `inventory_dir`."""
    problems: list[str | None] = []
    names = list(dict.fromkeys([*brokers, *controllers]))
    broker_group, controller_group = settings["kafka_broker_group"], settings["kafka_controller_group"]

    ids = {name: nodes[name].get("kafka_node_id") for name in names}
    problems += [
        f"{name} has no valid kafka_node_id. Give every host of groups {broker_group} and {controller_group} a unique"
        " integer kafka_node_id in the inventory; ids are stored on disk and must never change."
        for name, node_id in ids.items()
        if not re.fullmatch(r"[0-9]+", str(node_id if node_id is not None else ""))
    ]
    valid = [int(node_id) for node_id in ids.values() if re.fullmatch(r"[0-9]+", str(node_id if node_id is not None else ""))]
    if len(set(valid)) != len(valid):
        listed = ", ".join(f"{name}={node_id}" for name, node_id in ids.items())
        problems.append(f"Duplicate kafka_node_id values ({listed}): every Kafka node, broker or controller, needs its own id.")

    if not brokers:
        problems.append(f"Inventory group '{broker_group}' is empty: a Kafka cluster needs at least one broker.")
    if len(controllers) % 2 == 0:
        group = controller_group if settings["dedicated_controllers"] else broker_group
        problems.append(
            "KRaft needs an odd number of controllers for a majority quorum (3 or 5 in production), but"
            f" {len(controllers)} are configured ({', '.join(controllers)}): an even number tolerates no more failures"
            f" than one fewer. Add or remove a host in group '{group}'."
        )
    replication, min_insync = int(settings["kafka_default_replication_factor"]), int(settings["kafka_min_insync_replicas"])
    if replication > len(brokers) or min_insync > replication:
        problems.append(
            f"kafka_default_replication_factor={replication} and kafka_min_insync_replicas={min_insync} do not fit"
            f" {len(brokers)} broker(s): the replication factor may not exceed the broker count and min.insync.replicas"
            " may not exceed the replication factor."
        )

    problems.append(
        _source_problem(
            settings, "kafka_archive", "sha512", "[0-9a-fA-F]{128}", "128-hex-digit sha512 Apache publishes beside {url}", "archive"
        )
    )
    if settings["kafka_jmx_exporter_enabled"]:
        problems.append(_source_problem(settings, "kafka_jmx_exporter", "sha256", "[0-9a-fA-F]{64}", "sha256 of {url}", "jar"))
    metadata_version = settings["kafka_metadata_version"]
    if metadata_version and not re.fullmatch(r"[0-9]+[.][0-9]+", metadata_version):
        problems.append(f"kafka_metadata_version '{metadata_version}' is not a release like 4.3 (empty: leave it alone).")
    cluster_id = settings["kafka_cluster_id"]
    if cluster_id and not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
        problems.append(f"kafka_cluster_id '{cluster_id}' is not a 22-character base64url UUID (kafka-storage random-uuid prints one).")

    problems += _security_problems(nodes, names, settings)
    return [problem for problem in problems if problem]


def _security_problems(nodes: Mapping[str, Mapping[str, Any]], names: list[str], settings: Mapping[str, Any]) -> list[str]:
    protocol, mechanism, ca_source = (
        settings["kafka_security_protocol"],
        settings["kafka_sasl_mechanism"],
        settings["kafka_tls_ca_source"],
    )
    if (
        protocol not in ("PLAINTEXT", "SASL_SSL")
        or mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512")
        or ca_source
        not in (
            "generate",
            "provided",
        )
    ):
        return [
            f"kafka_security_protocol must be PLAINTEXT or SASL_SSL (is '{protocol}'), kafka_sasl_mechanism SCRAM-SHA-256"
            f" or SCRAM-SHA-512 (is '{mechanism}'), kafka_tls_ca_source generate or provided (is '{ca_source}')."
        ]
    if not settings["secure"]:
        if settings["kafka_acls_enabled"]:
            return [
                "kafka_acls_enabled needs kafka_security_protocol=SASL_SSL: without authentication every client is the"
                " same anonymous user, and ACLs cannot tell a worker from anyone else."
            ]
        return []

    problems: list[str | None] = [_scram_user_sentence(settings["scram_users"])]
    own_files = {
        name: (str(nodes[name].get("kafka_tls_node_cert_file") or ""), str(nodes[name].get("kafka_tls_node_key_file") or ""))
        for name in names
    }
    if ca_source == "provided":
        ca_cert, ca_key = settings["kafka_tls_ca_cert_file"], settings["kafka_tls_ca_key_file"]
        to_sign = hosts_without_own_certificate({name: cert for name, (cert, _key) in own_files.items()})
        if not _is_file(ca_cert) or (to_sign and not _is_file(ca_key)):
            problems.append(
                f"kafka_tls_ca_source=provided needs the CA certificate kafka_tls_ca_cert_file ('{ca_cert}') on the"
                f" Ansible controller, and its key kafka_tls_ca_key_file ('{ca_key}') to sign certificates for the hosts"
                f" without their own kafka_tls_node_cert_file/kafka_tls_node_key_file ({', '.join(to_sign)})."
            )
    for name, (cert, key) in own_files.items():
        if (cert or key) and not (cert and key and _is_file(cert) and _is_file(key)):
            problems.append(
                f"{name}: kafka_tls_node_cert_file ('{cert}') and kafka_tls_node_key_file ('{key}') must both name existing"
                " PEM files on the Ansible controller (the key unencrypted PKCS#8), or both be empty to have the CA sign a"
                " certificate."
            )
    tls_dir, inventory_dir = settings["kafka_tls_dir"], settings["inventory_dir"]
    if not tls_dir or (os.path.realpath(tls_dir) + "/").startswith(os.path.realpath(inventory_dir) + "/"):
        problems.append(
            f"kafka_tls_dir ('{tls_dir}') is inside the inventory directory {inventory_dir}: Ansible would try to parse"
            " the certificates and keys there as inventory. Choose a directory outside it."
        )
    return [problem for problem in problems if problem]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kafka_deployed_security_protocol": deployed_security_protocol,
            "kafka_cluster_problems": cluster_problems,
        }
