"""Pure checks behind the kafka role's preflight (tasks/preflight.yml), as filters: each returns what is wrong, by
name only (never a password), so the preflight's assertions read as a list of conditions.

Unit tests: tests/test_kafka_preflight_filters.py.
"""

from __future__ import annotations

import re
from collections import Counter
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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kafka_scram_user_problems": scram_user_problems,
            "kafka_hosts_without_own_certificate": hosts_without_own_certificate,
            "kafka_deployed_security_protocol": deployed_security_protocol,
        }
