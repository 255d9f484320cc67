# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""SCRAM users as code: parse the users ConfigCommand lists and plan whose credential must be (re)set.

Pure functions, so the planning can be unit-tested without a cluster; library/kafka_scram_users.py runs the tool.
"""

from __future__ import annotations

import hashlib
import re

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
