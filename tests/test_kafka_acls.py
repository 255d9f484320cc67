"""ACLs as code (module_utils/kafka_acls.py): validation, AclCommand's listing, and the plan, without a cluster.
The listing below is in the form Kafka 4.3.1's AclCommand --list prints (recorded in the secure scenario)."""

from __future__ import annotations

from kafka_acls import Binding, canonical_operation, command_groups, declared_problems, expand, parse_acl_list, pascal_operation, plan_acls

LISTING = (
    "Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=celery.tasks, patternType=LITERAL)`:\n"
    "\t(principal=User:celery, host=*, operation=READ, permissionType=ALLOW)\n"
    "\t(principal=User:celery, host=*, operation=DESCRIBE, permissionType=ALLOW)\n"
    "\t(principal=User:app-client, host=*, operation=WRITE, permissionType=ALLOW)\n"
    "\n"
    "Current ACLs for resource `ResourcePattern(resourceType=GROUP, name=secure-verify, patternType=PREFIXED)`:\n"
    "\t(principal=User:verifier, host=*, operation=READ, permissionType=ALLOW)\n"
    "\t(principal=User:intruder, host=10.0.0.9, operation=READ, permissionType=DENY)\n"
)

WORKER = [
    {"principal": "User:celery", "resource_type": "topic", "name": "celery.tasks", "operations": ["Read", "Describe"]},
    {"principal": "User:celery", "resource_type": "group", "name": "celery.tasks.workers", "operations": ["read"]},
]


def test_operation_spellings():
    assert canonical_operation("DescribeConfigs") == canonical_operation("describe_configs") == "DESCRIBE_CONFIGS"
    assert canonical_operation("IdempotentWrite") == "IDEMPOTENT_WRITE"
    assert pascal_operation("DESCRIBE_CONFIGS") == "DescribeConfigs"


def test_listing_is_parsed_into_allow_and_deny_bindings():
    allow, deny = parse_acl_list(LISTING)
    assert Binding("User:celery", "topic", "celery.tasks", "literal", "READ") in allow
    assert Binding("User:verifier", "group", "secure-verify", "prefixed", "READ") in allow
    assert len(allow) == 4
    assert deny == {Binding("User:intruder", "group", "secure-verify", "prefixed", "READ", "10.0.0.9")}


def test_declared_acls_already_present_plan_nothing_and_others_are_left_alone():
    allow, _ = parse_acl_list(LISTING)
    desired = expand(WORKER[:1])
    plan = plan_acls(desired, allow, {"User:celery"})
    assert (plan.add, plan.remove) == ([], [])


def test_missing_bindings_are_added_and_undeclared_ones_of_a_managed_principal_removed():
    allow, _ = parse_acl_list(LISTING)
    declared = [WORKER[0] | {"operations": ["Read"]}, WORKER[1]]
    plan = plan_acls(expand(declared), allow, {"User:celery"})
    assert plan.add == [Binding("User:celery", "group", "celery.tasks.workers", "literal", "READ")]
    assert plan.remove == [Binding("User:celery", "topic", "celery.tasks", "literal", "DESCRIBE")]


def test_one_tool_call_per_principal_and_resource_pattern():
    cluster = {"principal": "User:x", "resource_type": "cluster", "operations": ["IdempotentWrite"]}
    calls = [" ".join(call) for call in command_groups(sorted(expand([*WORKER, cluster])))]
    assert calls == [
        "--allow-principal User:celery --allow-host * --operation Read --group celery.tasks.workers --resource-pattern-type literal",
        "--allow-principal User:celery --allow-host * --operation Describe --operation Read --topic celery.tasks"
        " --resource-pattern-type literal",
        "--allow-principal User:x --allow-host * --operation IdempotentWrite --cluster --resource-pattern-type literal",
    ]


def test_declarations_kafka_would_refuse_are_named():
    problems = declared_problems(
        [
            {"principal": "celery", "resource_type": "topic", "name": "t", "operations": ["Read"]},
            {"principal": "User:a", "resource_type": "group", "name": "g", "operations": ["Write"]},
            {"principal": "User:a", "resource_type": "queue", "name": "q", "operations": ["Read"]},
            {"principal": "User:a", "resource_type": "topic", "operations": ["Read"]},
            {"principal": "User:a", "resource_type": "topic", "name": "t", "pattern_type": "regex", "operations": []},
        ]
    )
    assert problems[0] == "kafka_acls[0]: principal 'celery' is not User:<name>"
    assert problems[1].startswith("kafka_acls[1]: Write not allowed on a group (allowed: All, Delete, Describe, Read)")
    assert "resource_type 'queue'" in problems[2]
    assert "a topic ACL needs a name" in problems[3]
    assert "pattern_type 'regex'" in problems[4] and "kafka_acls[4]: no operations" in problems
    assert declared_problems(WORKER) == []
