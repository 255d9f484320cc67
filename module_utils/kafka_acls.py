# Copyright: kafka-celery-stack contributors
# Apache License 2.0
"""Kafka ACLs as code: validate the declared bindings, parse what AclCommand lists, plan the difference.

Pure functions, so the planning can be unit-tested without a cluster; library/kafka_acls.py runs the tool.
A binding is one (principal, host, operation) allowed on one resource pattern, the unit Kafka stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACL_COMMAND_CANDIDATES = ("org.apache.kafka.tools.AclCommand", "kafka.admin.AclCommand")

# The operations Kafka accepts on each resource type (Kafka's "Operations and Resources on Protocols" table).
OPERATIONS_BY_RESOURCE = {
    "topic": {"ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"},
    "group": {"ALL", "READ", "DESCRIBE", "DELETE"},
    "cluster": {
        "ALL",
        "CREATE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
        "ALTER",
        "DESCRIBE",
        "CREATE_TOKENS",
        "DESCRIBE_TOKENS",
    },
    "transactional_id": {"ALL", "DESCRIBE", "WRITE"},
}
PATTERN_TYPES = ("literal", "prefixed")
# AclCommand's option for each resource type; the cluster has no name.
RESOURCE_OPTIONS = {"topic": "--topic", "group": "--group", "cluster": "--cluster", "transactional_id": "--transactional-id"}
CLUSTER_NAME = "kafka-cluster"


class AclError(Exception):
    """A declared ACL that Kafka would refuse or that cannot be what was meant."""


@dataclass(frozen=True, order=True)
class Binding:
    principal: str
    resource_type: str  # topic | group | cluster | transactional_id
    name: str
    pattern_type: str  # literal | prefixed
    operation: str  # READ, DESCRIBE_CONFIGS, ...
    host: str = "*"

    def describe(self) -> str:
        return f"{self.principal} {self.operation} on {self.resource_type} {self.name} ({self.pattern_type}) from {self.host}"


def canonical_operation(name: str) -> str:
    """'DescribeConfigs', 'describe_configs' or 'DESCRIBE_CONFIGS' -> 'DESCRIBE_CONFIGS'."""
    snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name.strip()).replace("-", "_")
    return snake.upper()


def pascal_operation(operation: str) -> str:
    """'DESCRIBE_CONFIGS' -> 'DescribeConfigs', the spelling AclCommand's --operation takes."""
    return "".join(part.capitalize() for part in operation.split("_"))


def declared_problems(declared: list[dict]) -> list[str]:
    """Everything wrong with the declared ACLs, one sentence each (empty when they can all be applied)."""
    problems: list[str] = []
    for index, acl in enumerate(declared):
        label = f"kafka_acls[{index}]"
        principal = str(acl.get("principal", ""))
        resource_type = str(acl.get("resource_type", ""))
        if not re.fullmatch(r"User:\S+", principal):
            problems.append(f"{label}: principal '{principal}' is not User:<name>")
        if resource_type not in OPERATIONS_BY_RESOURCE:
            problems.append(f"{label}: resource_type '{resource_type}' is not one of {', '.join(OPERATIONS_BY_RESOURCE)}")
            continue
        if resource_type != "cluster" and not str(acl.get("name") or ""):
            problems.append(f"{label}: a {resource_type} ACL needs a name (or '*' for every {resource_type})")
        if acl.get("pattern_type", "literal") not in PATTERN_TYPES:
            problems.append(f"{label}: pattern_type '{acl.get('pattern_type')}' is not literal or prefixed")
        operations = acl.get("operations") or []
        if not operations:
            problems.append(f"{label}: no operations")
        allowed = OPERATIONS_BY_RESOURCE[resource_type]
        wrong = [str(op) for op in operations if canonical_operation(str(op)) not in allowed]
        if wrong:
            problems.append(
                f"{label}: {', '.join(wrong)} not allowed on a {resource_type} "
                f"(allowed: {', '.join(pascal_operation(op) for op in sorted(allowed))})"
            )
    return problems


def expand(declared: list[dict]) -> set[Binding]:
    """The bindings the declarations ask for: one per operation."""
    bindings: set[Binding] = set()
    for acl in declared:
        resource_type = acl["resource_type"]
        name = CLUSTER_NAME if resource_type == "cluster" else str(acl["name"])
        for operation in acl["operations"]:
            bindings.add(
                Binding(
                    principal=acl["principal"],
                    resource_type=resource_type,
                    name=name,
                    pattern_type=acl.get("pattern_type") or "literal",
                    operation=canonical_operation(str(operation)),
                    host=acl.get("host") or "*",
                )
            )
    return bindings


_RESOURCE = re.compile(r"ResourcePattern\(resourceType=(?P<type>\w+), name=(?P<name>.*), patternType=(?P<pattern>\w+)\)")
_ENTRY = re.compile(
    r"\(principal=(?P<principal>[^,]+), host=(?P<host>[^,]+), operation=(?P<operation>\w+), permissionType=(?P<permission>\w+)\)"
)


def parse_acl_list(output: str) -> tuple[set[Binding], set[Binding]]:
    """`AclCommand --list` output -> (ALLOW bindings, DENY bindings)."""
    allow: set[Binding] = set()
    deny: set[Binding] = set()
    resource: re.Match | None = None
    for line in output.splitlines():
        found = _RESOURCE.search(line)
        if found:
            resource = found
            continue
        entry = _ENTRY.search(line)
        if entry and resource:
            binding = Binding(
                principal=entry["principal"].strip(),
                resource_type=resource["type"].lower(),
                name=resource["name"],
                pattern_type=resource["pattern"].lower(),
                operation=entry["operation"].upper(),
                host=entry["host"].strip(),
            )
            (allow if entry["permission"].upper() == "ALLOW" else deny).add(binding)
    return allow, deny


@dataclass
class AclPlan:
    add: list[Binding]
    remove: list[Binding]


def plan_acls(desired: set[Binding], current: set[Binding], managed_principals: set[str]) -> AclPlan:
    """Add what is declared and missing; remove the ALLOW bindings of a managed principal that are no longer declared.
    Principals that are not declared are left alone (their ACLs may be managed elsewhere)."""
    stale = {binding for binding in current if binding.principal in managed_principals} - desired
    return AclPlan(add=sorted(desired - current), remove=sorted(stale))


def command_groups(bindings: list[Binding]) -> list[list[str]]:
    """AclCommand arguments for the bindings, one call per principal, host and resource pattern (each call starts a
    JVM, so the operations on one resource go together)."""
    grouped: dict[tuple[str, str, str, str, str], list[str]] = {}
    for binding in bindings:
        key = (binding.principal, binding.host, binding.resource_type, binding.name, binding.pattern_type)
        grouped.setdefault(key, []).append(binding.operation)
    calls: list[list[str]] = []
    for (principal, host, resource_type, name, pattern_type), operations in sorted(grouped.items()):
        args = ["--allow-principal", principal, "--allow-host", host]
        for operation in sorted(operations):
            args += ["--operation", pascal_operation(operation)]
        args += [RESOURCE_OPTIONS[resource_type]] if resource_type == "cluster" else [RESOURCE_OPTIONS[resource_type], name]
        args += ["--resource-pattern-type", pattern_type]
        calls.append(args)
    return calls
