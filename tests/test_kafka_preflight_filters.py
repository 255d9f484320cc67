"""The kafka role's preflight filters (roles/kafka/filter_plugins/kafka_preflight.py): what each reports as wrong."""

from __future__ import annotations

from repo_files import load

kafka_preflight = load("roles/kafka/filter_plugins/kafka_preflight.py", "kafka_preflight")


def test_usable_scram_users_have_no_problems() -> None:
    users = [{"name": "broker", "password": "s3cret-Pass"}, {"name": "celery@shop.example", "password": "x.y_z"}]
    assert kafka_preflight.scram_user_problems(users) == {
        "without_password": [],
        "unusable_password": [],
        "bad_name": [],
        "duplicate_name": [],
    }


def test_scram_user_problems_name_each_user_and_never_a_password() -> None:
    users = [
        {"name": "nopass"},
        {"name": "empty", "password": ""},
        {"name": "quote", "password": 'a"b'},
        {"name": "comma", "password": "a,b"},
        {"name": "space", "password": "a b"},
        {"name": "bad name", "password": "fine"},
        {"name": "twice", "password": "fine"},
        {"name": "twice", "password": "fine"},
    ]
    problems = kafka_preflight.scram_user_problems(users)
    assert problems == {
        "without_password": ["nopass", "empty"],
        "unusable_password": ["quote", "comma", "space"],
        "bad_name": ["bad name"],
        "duplicate_name": ["twice"],
    }
    assert 'a"b' not in str(problems) and "a,b" not in str(problems)


def test_hosts_without_own_certificate() -> None:
    files = {"kafka1": "", "kafka2": "/pki/kafka2.crt", "kafka3": ""}
    assert kafka_preflight.hosts_without_own_certificate(files) == ["kafka1", "kafka3"]


def test_deployed_security_protocol_from_server_properties() -> None:
    plaintext = "node.id=1\nlistener.security.protocol.map=INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
    secure = "listener.security.protocol.map=INTERNAL:SASL_SSL,CLIENT:SASL_SSL,CONTROLLER:SSL\nnode.id=1\n"
    assert kafka_preflight.deployed_security_protocol(plaintext) == "PLAINTEXT"
    assert kafka_preflight.deployed_security_protocol(secure) == "SASL_SSL"
    assert kafka_preflight.deployed_security_protocol("") == ""
    assert kafka_preflight.deployed_security_protocol("# listener.security.protocol.map=x\n") == ""
